"""OpenAI (or any OpenAI-compatible server) through the official ``openai`` client.

Requests are cut to the API's limits (2,048 inputs, 300k tokens per request, 8,192 tokens per
input), counted with ``cl100k_base``, and retried with backoff that honours ``Retry-After``. The
client's own retries are off so that every retry and every 429 is counted here. Rate limits, 5xx,
dropped connections, timeouts, bodies that are not JSON and answers with the wrong number or length
of vectors are all retried, within the same policy.

A model another server serves is described by its spec's options (``core.embedders.spec``): its
``tokenizer`` (``core.embedders.counting``), ``max_input_tokens`` and ``max_inputs`` per request. Its
dimensions come from its first answer.
"""

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypedDict, cast

import numpy as np

from embedding_assets.core.batching import length_sorted_batches
from embedding_assets.core.embedders.base import Embedder, model_version, unit_rows
from embedding_assets.core.embedders.counting import tokenizer as named_tokenizer
from embedding_assets.core.errors import ConfigError, EmbeddingError
from embedding_assets.core.pacing import TokenBucket
from embedding_assets.core.retry import Retryable, RetryPolicy, call_with_retries

if TYPE_CHECKING:
    from openai import OpenAI

MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_REQUEST = 300_000
MAX_TOKENS_PER_INPUT = 8192
REQUEST_TIMEOUT_SECONDS = 60.0
NATIVE_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


class _EmbeddingOptions(TypedDict, total=False):
    """Optional arguments of ``embeddings.create``; a key is sent only when it is set."""

    dimensions: int


class OpenAIEmbedder(Embedder):
    """Embeddings from ``POST {base_url}/embeddings``; ``dimensions`` shortens text-embedding-3 vectors."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None,
        base_url: str | None = None,
        dimensions: int | None = None,
        revision: str = "",
        retry_policy: RetryPolicy | None = None,
        tokens_per_minute: float | None = None,
        timeout_seconds: float = REQUEST_TIMEOUT_SECONDS,
        tokenizer: str = "cl100k_base",
        max_input_tokens: int = MAX_TOKENS_PER_INPUT,
        max_inputs: int = MAX_INPUTS_PER_REQUEST,
    ) -> None:
        super().__init__()
        if dimensions is not None and model in NATIVE_DIMENSIONS and not model.startswith("text-embedding-3"):
            raise ConfigError(f"{model} does not accept a dimensions setting (only text-embedding-3-* do)")
        self.model = model
        self.revision = revision
        self._requested_dimensions = dimensions
        self._dimensions = dimensions or NATIVE_DIMENSIONS.get(model)
        self.retry_policy = retry_policy or RetryPolicy()
        self.pacing = TokenBucket(tokens_per_minute) if tokens_per_minute else None
        self._api_key = api_key
        self._base_url = base_url
        self._timeout_seconds = timeout_seconds
        self._tokenizer = named_tokenizer(tokenizer)
        self.max_input_tokens = max_input_tokens
        self._max_inputs = max_inputs
        self._client: OpenAI | None = None

    @property
    def model_version(self) -> str:
        return model_version(
            "openai", self.model, self._requested_dimensions or NATIVE_DIMENSIONS.get(self.model), self.revision
        )

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:  # a model we do not know: ask the server once
            self._dimensions = int(self.embed(["dimension probe"]).shape[1])
        return self._dimensions

    @property
    def tokenizer_id(self) -> str:
        return self._tokenizer.id

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self._tokenizer.count(texts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        counts = self.count_tokens(texts)
        too_long = [i for i, n in enumerate(counts) if n > self.max_input_tokens]
        if too_long:
            raise EmbeddingError(
                f"{len(too_long)} input(s) exceed {self.max_input_tokens} tokens "
                f"(first: {counts[too_long[0]]} tokens); chunk smaller"
            )
        rows: list[np.ndarray | None] = [None] * len(texts)
        for batch in length_sorted_batches(counts, max_items=self._max_inputs, max_tokens=MAX_TOKENS_PER_REQUEST):
            if self.pacing is not None:
                self.retry_stats.paced_seconds += self.pacing.acquire(sum(counts[i] for i in batch))
            vectors = self._request([texts[i] for i in batch])
            for i, vector in zip(batch, vectors, strict=True):
                rows[i] = vector
        if not texts:
            return np.zeros((0, self._dimensions or 0), dtype=np.float32)
        # The batches partition range(len(texts)), so every row has been filled.
        return unit_rows(np.vstack(cast(list[np.ndarray], rows)))

    def check_credentials(self) -> None:
        if not self._api_key:
            raise ConfigError(f"model openai:{self.model} needs an API key: set OPENAI_API_KEY")

    def _request(self, inputs: list[str]) -> np.ndarray:
        if self._client is None:
            self.check_credentials()
            from openai import OpenAI

            self._client = OpenAI(
                api_key=self._api_key, base_url=self._base_url, max_retries=0, timeout=self._timeout_seconds
            )
        client = self._client
        extra: _EmbeddingOptions = {"dimensions": self._requested_dimensions} if self._requested_dimensions else {}

        def call() -> np.ndarray:
            response = client.embeddings.create(model=self.model, input=inputs, **extra)
            return _vectors(response, len(inputs), self._dimensions)

        requests_before = self.retry_stats.requests
        try:
            return call_with_retries(call, _classify, self.retry_policy, self.retry_stats)
        except Exception as err:
            attempts = self.retry_stats.requests - requests_before
            raise EmbeddingError(
                f"embedding request to {self.model} failed after {attempts} attempt(s): "
                f"{_describe(err, self._timeout_seconds)}"
            ) from err


class _InvalidResponse(Exception):
    """A well-formed answer that does not fit the request (vector count or length); worth a retry."""


def _vectors(response: object, n_inputs: int, expected_dims: int | None) -> np.ndarray:
    """The response's vectors in input order, checked against the request.

    Raises:
        _InvalidResponse: not exactly one vector per input, or vectors of the wrong or uneven length.
    """
    data = getattr(response, "data", None)
    if not isinstance(data, list):  # the client hands back raw text when the body is not JSON-typed
        raise _InvalidResponse(f"malformed response: expected an embeddings list, got {type(response).__name__}")
    if len(data) != n_inputs:
        raise _InvalidResponse(f"returned {len(data)} vectors for {n_inputs} inputs")
    lengths = sorted({len(d.embedding) for d in data})
    if len(lengths) > 1 or (expected_dims and lengths != [expected_dims]):
        raise _InvalidResponse(
            f"returned vectors of {'/'.join(map(str, lengths))} dimensions, expected {expected_dims or 'one length'}"
        )
    return np.array([d.embedding for d in sorted(data, key=lambda d: d.index)], dtype=np.float32)


def _classify(err: Exception) -> Retryable | None:
    """What is worth retrying: rate limits, server errors, dropped connections and timeouts, malformed or
    mismatched answers (usually a proxy in trouble). Bad requests, auth and the like are not."""
    import openai

    if isinstance(err, openai.RateLimitError):
        return Retryable(err, delay=_retry_after(err.response.headers), rate_limited=True)
    # APITimeoutError is an APIConnectionError; a body that is not JSON surfaces as a bare
    # json.JSONDecodeError from the client (or APIResponseValidationError with strict validation).
    if isinstance(
        err,
        openai.InternalServerError
        | openai.APIConnectionError
        | openai.APIResponseValidationError
        | json.JSONDecodeError
        | _InvalidResponse,
    ):
        return Retryable(err)
    if isinstance(err, openai.APIStatusError) and err.status_code in (408, 409):
        return Retryable(err)
    return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` wins over ``retry-after``)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) * scale
        except ValueError:
            continue
    return None


def _describe(err: Exception, timeout_seconds: float) -> str:
    import openai

    if isinstance(err, openai.APIStatusError):
        return f"HTTP {err.status_code}: {err.message}"
    if isinstance(err, openai.APITimeoutError):
        return f"request timed out after {timeout_seconds:g}s"
    if isinstance(err, openai.APIConnectionError):
        return f"connection error ({type(err.__cause__).__name__}: {err.__cause__})" if err.__cause__ else str(err)
    if isinstance(err, json.JSONDecodeError):
        return f"malformed response: the body is not valid JSON ({err})"
    if isinstance(err, openai.APIResponseValidationError):
        return f"malformed response: {err}"
    return str(err) if isinstance(err, _InvalidResponse) else f"{type(err).__name__}: {err}"
