"""The OpenAI embedder with the real ``openai`` client against the local OpenAI-compatible server."""

import numpy as np
import pytest

from embedding_assets.core.embedders import make_embedder
from embedding_assets.core.embedders.openai_api import OpenAIEmbedder
from embedding_assets.core.errors import ConfigError, EmbeddingError
from embedding_assets.core.retry import RetryPolicy
from embedding_assets_tests.openai_server import call

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def fresh_server(server_url: str) -> None:
    call(server_url, "/control", {"reset": True, "rate_limit_first": 0, "rate_limit_every": 0, "retry_after": 0.05})


def embedder(url: str, model: str = "test-embed-64", slept: list[float] | None = None, **kwargs) -> OpenAIEmbedder:
    policy = RetryPolicy(max_attempts=4, base_delay=0.01, sleep=(slept if slept is not None else []).append)
    return OpenAIEmbedder(model, api_key="test-key", base_url=url, retry_policy=policy, **kwargs)


def test_unit_vectors_in_input_order(server_url: str) -> None:
    e = embedder(server_url)
    texts = ["a long text " * 20, "short", "medium text here", "short"]
    vectors = e.embed(texts)
    assert vectors.shape == (4, 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[1], vectors[3])
    np.testing.assert_allclose(vectors[0], e.embed([texts[0]])[0], atol=1e-6)
    assert e.dimensions == 64
    assert e.model_version == "openai:test-embed-64/native"


def test_dimensions_are_requested_and_part_of_the_model_version(server_url: str) -> None:
    e = embedder(server_url, "text-embedding-3-small", dimensions=256)
    assert e.embed(["hello"]).shape == (1, 256)
    assert e.model_version == "openai:text-embedding-3-small/256d"
    assert embedder(server_url, "text-embedding-3-small").model_version == "openai:text-embedding-3-small/1536d"


def test_requests_stay_within_the_input_count_limit(server_url: str) -> None:
    vectors = embedder(server_url).embed([f"text {i}" for i in range(4500)])
    assert vectors.shape == (4500, 64)
    sizes = call(server_url, "/stats")["batch_sizes"]
    assert sum(sizes) == 4500 and max(sizes) <= 2048


def test_requests_stay_within_the_token_limit(server_url: str) -> None:
    e = embedder(server_url)
    texts = [f"{i} " + "word " * 7900 for i in range(80)]  # about 632k tokens in all
    assert e.embed(texts).shape == (80, 64)
    stats = call(server_url, "/stats")
    assert len(stats["batch_sizes"]) == 3 and stats["tokens"] == sum(e.count_tokens(texts))


def test_rate_limits_are_retried_after_the_advised_delay(server_url: str) -> None:
    call(server_url, "/control", {"rate_limit_first": 2, "retry_after": 0.05})
    slept: list[float] = []
    e = embedder(server_url, slept=slept)
    assert e.embed(["x"]).shape == (1, 64)
    assert slept == pytest.approx([0.05, 0.05])
    assert (e.retry_stats.requests, e.retry_stats.retries, e.retry_stats.rate_limited) == (3, 2, 2)


def test_exhausted_retries_fail_with_a_clear_message(server_url: str) -> None:
    call(server_url, "/control", {"rate_limit_every": 1})
    e = embedder(server_url)
    with pytest.raises(EmbeddingError, match="HTTP 429"):
        e.embed(["x"])
    assert e.retry_stats.requests == 4


def test_bad_requests_are_not_retried(server_url: str) -> None:
    e = embedder(server_url, "text-embedding-3-small", dimensions=4000)
    with pytest.raises(EmbeddingError, match="HTTP 400"):
        e.embed(["x"])
    assert e.retry_stats.requests == 1


def test_inputs_over_the_token_limit_are_refused_before_sending(server_url: str) -> None:
    with pytest.raises(EmbeddingError, match="exceed 8192 tokens"):
        embedder(server_url).embed(["word " * 9000])
    assert call(server_url, "/stats")["requests"] == 0


def test_misconfiguration_fails_fast() -> None:
    keyless = make_embedder("openai:text-embedding-3-small", api_key=None)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        keyless.check_credentials()
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        keyless.embed(["x"])
    with pytest.raises(ConfigError, match="dimensions"):
        make_embedder("openai:text-embedding-ada-002", api_key="k", dimensions=256)
    with pytest.raises(ConfigError, match="unknown embedding model 'local:bert'"):
        make_embedder("local:bert")
