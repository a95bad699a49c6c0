"""Model specs: ``provider:name``, then optionally ``?key=value&...`` to describe a model the code cannot
know, such as one an OpenAI-compatible server serves (its tokenizer, input limits and price).

The options travel with the spec (into each table's metadata), so a table's model is rebuilt for its
queries exactly as it was configured; they never change the model version, which names the vectors.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from embedding_assets.core.errors import ConfigError

# What each provider's models may be told; a model the code knows needs none of it.
OPTIONS: Mapping[str, tuple[str, ...]] = {
    "openai": ("tokenizer", "max_input_tokens", "max_inputs", "price_per_mtok"),
}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec: ``model`` is ``provider:name``; ``options`` are the ones given, as text."""

    spec: str
    provider: str
    name: str
    options: Mapping[str, str]

    @property
    def model(self) -> str:
        return f"{self.provider}:{self.name}"

    def positive_int(self, key: str) -> int | None:
        """Option ``key`` as a positive integer (None when not given)."""
        raw = self.options.get(key)
        if raw is None:
            return None
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"model {self.spec!r}: {key} must be a positive integer, got {raw!r}")
        return int(raw)

    def price_per_mtok(self) -> float | None:
        """The ``price_per_mtok`` option (USD per 1M input tokens), None when not given."""
        raw = self.options.get("price_per_mtok")
        if raw is None:
            return None
        try:
            price = float(raw)
        except ValueError:
            price = -1.0
        if not price >= 0:  # also refuses nan
            raise ConfigError(f"model {self.spec!r}: price_per_mtok must be a number of USD, at least 0, got {raw!r}")
        return price


def parse_spec(spec: str) -> ModelSpec:
    """Split ``spec`` and check its options: each at most once, each one its provider takes."""
    model, _, query = spec.partition("?")
    provider, _, name = model.partition(":")
    try:
        pairs = parse_qsl(query, strict_parsing=True) if query else []
    except ValueError:
        raise ConfigError(f"model {spec!r}: options must be key=value pairs joined by '&'") from None
    options = dict(pairs)
    if len(options) < len(pairs):
        raise ConfigError(f"model {spec!r}: an option is given twice")
    allowed = OPTIONS.get(provider, ())
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = f"takes {', '.join(allowed)}" if allowed else "takes no options"
        raise ConfigError(f"model {spec!r}: unknown option {', '.join(unknown)}; a {provider}: model {takes}")
    parsed = ModelSpec(spec, provider, name, options)
    parsed.price_per_mtok()  # a bad price fails here, with the spec, not later in an estimate
    return parsed
