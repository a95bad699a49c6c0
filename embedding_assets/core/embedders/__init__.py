"""Embedders, chosen by a model spec such as ``local:all-MiniLM-L6-v2`` or ``openai:text-embedding-3-small``
(options after ``?`` describe a model another OpenAI-compatible server serves: ``core.embedders.spec``)."""

from typing import Any, NamedTuple

from embedding_assets.core.embedders.base import Embedder, model_version
from embedding_assets.core.embedders.spec import ModelSpec, parse_spec
from embedding_assets.core.errors import ConfigError

LOCAL_MODELS = ("all-MiniLM-L6-v2",)

__all__ = ["LOCAL_MODELS", "Embedder", "make_embedder", "model_version"]


def make_embedder(
    spec: str,
    *,
    dimensions: int | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    batch_size: int = 16,
    batch_tokens: int = 256,
    tokens_per_minute: float | None = None,
    threads: int | None = None,
) -> Embedder:
    """Build the embedder a model spec names; unknown specs fail with the list of valid ones. The batch
    sizes and ``threads`` (batches in flight, None: one per core) are the local model's."""
    local = LocalOptions(batch_size, batch_tokens, threads)
    embedder = _build(spec, dimensions, api_key, base_url, tokens_per_minute, local)
    embedder.spec, embedder.requested_dimensions = spec, dimensions
    return embedder


class LocalOptions(NamedTuple):
    """The local model's arguments, passed through ``_build`` as one typed value."""

    batch_size: int
    batch_tokens: int
    threads: int | None


def _build(
    spec: str,
    dimensions: int | None,
    api_key: str | None,
    base_url: str | None,
    tokens_per_minute: float | None,
    local: LocalOptions,
) -> Embedder:
    parsed = parse_spec(spec)
    provider, name = parsed.provider, parsed.name
    if provider == "local" and name in LOCAL_MODELS:
        if dimensions not in (None, 384):
            raise ConfigError(f"{spec} has 384 dimensions; it cannot produce {dimensions}")
        from embedding_assets.core.embedders.local_minilm import LocalMiniLM

        return LocalMiniLM(local.batch_size, local.batch_tokens, local.threads)
    if provider == "openai" and name:
        from embedding_assets.core.embedders.openai_api import OpenAIEmbedder

        return OpenAIEmbedder(
            name,
            api_key=api_key,
            base_url=base_url,
            dimensions=dimensions,
            tokens_per_minute=tokens_per_minute,
            **_described(parsed),
        )
    if provider == "toy" and name == "hashing":
        from embedding_assets.core.embedders.toy import ToyEmbedder

        return ToyEmbedder(dimensions or 32)
    known = ", ".join([f"local:{m}" for m in LOCAL_MODELS] + ["openai:<model>[?options]", "toy:hashing"])
    raise ConfigError(f"unknown embedding model {spec!r}; expected one of: {known}")


def _described(spec: ModelSpec) -> dict[str, Any]:
    """The ``OpenAIEmbedder`` arguments a spec's options give (the rest keep OpenAI's own values)."""
    described: dict[str, Any] = {"tokenizer": spec.options.get("tokenizer")}
    described |= {key: spec.positive_int(key) for key in ("max_input_tokens", "max_inputs")}
    return {key: value for key, value in described.items() if value is not None}
