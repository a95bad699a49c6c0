"""The active models: every model whose table the pipeline keeps equal to the source.

``EMBEDDING_ASSETS_MODELS`` lists them, comma-separated; each entry is a model spec with the settings
that are its own in query form, e.g. ``openai:text-embedding-3-small?dimensions=512&run_budget_usd=5``.
Options that are not the pipeline's own stay in the spec, for the embedder (``core.embedders``).
Without it, ``EMBEDDING_ASSETS_MODEL`` and the index-wide settings describe the one active model.
"""

import re
from dataclasses import dataclass, fields
from urllib.parse import parse_qsl, urlencode

from embedding_assets.core.errors import ConfigError

MAX_ACTIVE_MODELS = 3  # each active model is a table kept fresh: its own embedding cost, forever


@dataclass(frozen=True)
class ModelConfig:
    """One active model: its spec and the settings that are its own."""

    spec: str  # what ``make_embedder`` is given, with the embedder's own options
    dimensions: int | None = None
    tokens_per_minute: int | None = None
    run_budget_usd: float | None = None
    price_per_mtok: float | None = None

    @property
    def slug(self) -> str:
        """The model's name in asset keys, groups, pools and sensor names: ``local_all_minilm_l6_v2``."""
        name = re.sub(r"[^a-z0-9]+", "_", self.spec.partition("?")[0].lower()).strip("_")
        return f"{name}_{self.dimensions}" if self.dimensions else name

    @property
    def entry(self) -> str:
        """The entry that gives this model in ``EMBEDDING_ASSETS_MODELS``."""
        options = [f"{f.name}={getattr(self, f.name)}" for f in _OPTIONS if getattr(self, f.name) is not None]
        model, _, embedder_options = self.spec.partition("?")
        return "?".join([model, "&".join(filter(None, [embedder_options, *options]))]).rstrip("?")


_OPTIONS = [f for f in fields(ModelConfig) if f.name != "spec"]


def parse_models(listed: str) -> list[ModelConfig]:
    """The models an ``EMBEDDING_ASSETS_MODELS`` value lists, in order (the first is live until a promotion)."""
    models = [_parse_entry(entry.strip()) for entry in listed.split(",") if entry.strip()]
    if not models:
        raise ConfigError("EMBEDDING_ASSETS_MODELS lists no model")
    if len(models) > MAX_ACTIVE_MODELS:
        raise ConfigError(
            f"EMBEDDING_ASSETS_MODELS lists {len(models)} models; at most {MAX_ACTIVE_MODELS} are kept fresh at "
            "once (each is a table embedded and refreshed for every change); retire one first"
        )
    slugs = [m.slug for m in models]
    repeated = sorted({s for s in slugs if slugs.count(s) > 1})
    if repeated:
        raise ConfigError(f"EMBEDDING_ASSETS_MODELS lists the same model twice: {', '.join(repeated)}")
    return models


def _parse_entry(entry: str) -> ModelConfig:
    spec, _, query = entry.partition("?")
    known = {f.name: f for f in _OPTIONS}
    try:
        options = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigError(f"EMBEDDING_ASSETS_MODELS entry {entry!r}: settings go as name=value&name=value") from None
    values: dict[str, object] = {}
    for name, raw in options:
        if name not in known:
            continue  # the embedder's own (core.embedders), left in the spec
        number = float if "float" in str(known[name].type) else int
        try:
            value = number(raw)
        except ValueError:
            raise ConfigError(
                f"EMBEDDING_ASSETS_MODELS entry {entry!r}: {name} must be a number, got {raw!r}"
            ) from None
        if value < 0 or (number is int and value == 0):
            raise ConfigError(f"EMBEDDING_ASSETS_MODELS entry {entry!r}: {name} must be positive, got {raw!r}")
        values[name] = value
    rest = urlencode([(name, raw) for name, raw in options if name not in known])
    return ModelConfig(f"{spec.strip()}?{rest}" if rest else spec.strip(), **values)  # type: ignore[arg-type]
