"""Provider faults injected by the local server: the embedder retries them, within bounds, then fails clearly."""

import dagster as dg
import numpy as np
import pytest

from embedding_assets.core.embedders.openai_api import OpenAIEmbedder
from embedding_assets.core.errors import EmbeddingError
from embedding_assets.core.retry import RetryPolicy
from embedding_assets.core.settings import Settings
from embedding_assets_tests.openai_server import call
from embedding_assets_tests.pipeline_helpers import asset_key, materialize, metadata

pytestmark = pytest.mark.slow

MAX_ATTEMPTS, BASE_DELAY = 3, 0.01
TEXTS = ["the cat sat on the mat", "quarterly revenue grew"]

# Each fault kind and what the final error must say about it.
FAULTS = [
    ("429_no_retry_after", "HTTP 429"),
    ("500", "HTTP 500"),
    ("503", "HTTP 503"),
    ("reset", "connection"),
    ("timeout", "timed out"),
    ("malformed", "malformed"),
    ("wrong_count", "returned 1 vectors for 2 inputs"),
    ("wrong_dim", "63 dimensions, expected 64"),
]


@pytest.fixture(autouse=True)
def fresh_server(server_url: str) -> None:
    # retry_after 0.5 is far above any backoff below, so an advised delay would show in the sleeps.
    call(server_url, "/control", {"reset": True, "rate_limit_first": 0, "rate_limit_every": 0, "retry_after": 0.5})


def embedder(url: str, slept: list[float]) -> OpenAIEmbedder:
    policy = RetryPolicy(max_attempts=MAX_ATTEMPTS, base_delay=BASE_DELAY, sleep=slept.append)
    # A known model with a requested dimension, so the embedder knows what length to expect.
    return OpenAIEmbedder(
        "text-embedding-3-small",
        dimensions=64,
        api_key="test-key",
        base_url=url,
        retry_policy=policy,
        timeout_seconds=0.3,
    )


def inject(url: str, kind: str, count: int) -> None:
    call(url, "/control", {"fault": kind, "fault_count": count, "fault_delay": 1.0})


@pytest.mark.parametrize(("kind", "message"), FAULTS)
def test_a_transient_fault_is_retried_with_backoff(server_url: str, kind: str, message: str) -> None:
    inject(server_url, kind, MAX_ATTEMPTS - 1)
    slept: list[float] = []
    e = embedder(server_url, slept)
    vectors = e.embed(TEXTS)
    np.testing.assert_allclose(vectors, embedder(server_url, []).embed(TEXTS), atol=1e-6)  # faults used up
    stats = e.retry_stats
    rate_limited = MAX_ATTEMPTS - 1 if kind.startswith("429") else 0
    assert (stats.requests, stats.retries, stats.rate_limited) == (MAX_ATTEMPTS, MAX_ATTEMPTS - 1, rate_limited)
    assert len(slept) == MAX_ATTEMPTS - 1
    assert all(0 <= s <= BASE_DELAY * 2**i for i, s in enumerate(slept))  # the policy's backoff, nothing advised
    assert call(server_url, "/stats")["faults"] == {kind: MAX_ATTEMPTS - 1}


@pytest.mark.parametrize(("kind", "message"), FAULTS)
def test_a_persistent_fault_fails_clearly_after_max_attempts(server_url: str, kind: str, message: str) -> None:
    inject(server_url, kind, -1)
    e = embedder(server_url, [])
    with pytest.raises(EmbeddingError, match=f"(?i)failed after {MAX_ATTEMPTS} attempt.*{message}"):
        e.embed(TEXTS)
    assert (e.retry_stats.requests, e.retry_stats.retries) == (MAX_ATTEMPTS, MAX_ATTEMPTS - 1)
    stats = call(server_url, "/stats")
    assert stats["requests"] == MAX_ATTEMPTS and stats["faults"] == {kind: MAX_ATTEMPTS}


def test_reset_clears_a_standing_fault(server_url: str) -> None:
    inject(server_url, "500", -1)
    call(server_url, "/control", {"reset": True})
    e = embedder(server_url, [])
    assert e.embed(TEXTS).shape == (2, 64)
    assert e.retry_stats.retries == 0 and call(server_url, "/stats")["faults"] == {}


def test_unknown_fault_kinds_are_refused(server_url: str) -> None:
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as info:
        inject(server_url, "gremlins", 1)
    assert info.value.code == 400


def test_a_step_that_exhausts_its_retries_is_retried_by_dagster_and_succeeds(
    settings: Settings, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", server_url)
    openai_settings = Settings(**{**settings.__dict__, "model": "openai:text-embedding-3-small", "dimensions": 32})
    attempts = RetryPolicy().max_attempts
    call(server_url, "/control", {"fault": "503", "fault_count": attempts})  # the first execution fails for good
    with dg.instance_for_test() as instance:
        result = materialize(openai_settings, instance, partition="s000")
        step = "__".join(asset_key(openai_settings, "embeddings").path)  # the asset's op
        kinds = [e.event_type_value for e in result.all_events if e.step_key == step]
        assert kinds.count("STEP_UP_FOR_RETRY") == 1 and kinds[-1] == "STEP_SUCCESS"
        assert metadata(instance, asset_key(openai_settings, "embeddings"), "s000")["chunks_embedded"] > 0
    assert call(server_url, "/stats")["faults"] == {"503": attempts}
