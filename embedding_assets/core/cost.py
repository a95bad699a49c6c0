"""What embedding costs: prices per model, estimates before spending, the per-run budget, and the daily
cost of keeping a table fresh (the corpus's churn)."""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from embedding_assets.core import progress
from embedding_assets.core.chunking import ChunkingConfig, chunk_document
from embedding_assets.core.embedders import Embedder
from embedding_assets.core.embedders.spec import parse_spec
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.shards import shard_keys
from embedding_assets.core.sources import Document, Item
from embedding_assets.core.store import VectorStore

# USD per 1M input tokens, OpenAI's published prices; local models cost nothing, and so does a model
# neither listed here nor priced by its spec (``openai:<model>?price_per_mtok=0.05``).
# EMBEDDING_ASSETS_PRICE_PER_MTOK overrides the configured model's price.
PRICES_PER_MTOK = {
    "openai:text-embedding-3-small": 0.02,
    "openai:text-embedding-3-large": 0.13,
    "openai:text-embedding-ada-002": 0.10,
}


def price_per_mtok(spec: str, override: float | None = None) -> float:
    """USD per 1M tokens of ``spec``: the override, else the spec's own price, else the table's (else 0)."""
    if override is not None:
        return override
    parsed = parse_spec(spec)
    given = parsed.price_per_mtok()
    return given if given is not None else PRICES_PER_MTOK.get(parsed.model, 0.0)


def cost_usd(tokens: float, price: float) -> float:
    return round(tokens * price / 1_000_000, 6)


@dataclass(frozen=True)
class Estimate:
    model_version: str
    shards: int
    documents: int
    chunks: int
    tokens: int
    price_per_mtok: float

    @property
    def cost_usd(self) -> float:
        return cost_usd(self.tokens, self.price_per_mtok)


DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class Churn:
    """What keeping a table fresh took: ``tokens`` embedded by ``refreshes`` shard refreshes over the last
    ``days``. That is the ``window_days`` asked for, or less when the history is shorter (0: none yet)."""

    window_days: float
    days: float
    refreshes: int
    tokens: int

    @property
    def tokens_per_day(self) -> float | None:
        """The churn's daily rate (None: no history to measure it from)."""
        return self.tokens / self.days if self.days > 0 else None

    def cost_usd_per_day(self, price: float) -> float | None:
        """The daily cost of embedding the same churn at ``price`` USD per 1M tokens."""
        per_day = self.tokens_per_day
        return None if per_day is None else cost_usd(per_day, price)


def measure_churn(
    refresh_tokens: Iterable[int], *, history_start: float | None, now: float, window_days: float
) -> Churn:
    """The churn from the tokens each refresh in the window embedded (a shard's first embedding is no
    refresh: it is the backfill), where ``history_start`` is when the table's history begins (None: it
    has none) and ``now`` and it are Unix times. The window is cut to the history, so a table younger
    than the window is not averaged over days it did not exist."""
    if window_days <= 0:
        raise ConfigError(f"the churn window must be a positive number of days, got {window_days}")
    tokens = list(refresh_tokens)
    start = now if history_start is None else min(now, max(now - window_days * DAY_SECONDS, history_start))
    return Churn(window_days, (now - start) / DAY_SECONDS, len(tokens), sum(tokens))


def check_budget(tokens: int, price: float, budget_usd: float | None, what: str) -> None:
    """Refuse, before any request, work that would cost more than ``budget_usd``."""
    if budget_usd is not None and cost_usd(tokens, price) > budget_usd:
        raise ConfigError(
            f"{what} would embed {tokens:,} tokens for ${cost_usd(tokens, price):.4f}, over the "
            f"run budget of ${budget_usd:.4f} (EMBEDDING_ASSETS_RUN_BUDGET_USD); run fewer shards "
            "or raise the budget"
        )


def estimate(
    documents_of: Callable[[str], Iterable[Item]],
    shard_count: int,
    config: ChunkingConfig,
    embedder: Embedder,
    store: VectorStore | None = None,
    shards: Sequence[str] | None = None,
    price_override: float | None = None,
) -> Estimate:
    """Documents, chunks and tokens the model would embed, counted with its own tokenizer, without
    calling it; ``documents_of(shard)`` gives a shard's documents. With ``store``, chunks whose text the
    model's table already holds for the shard are left out (what a refresh would really send);
    ``shards`` limits the count to those shards."""
    documents = chunks = tokens = 0
    selected = list(shards) if shards is not None else list(shard_keys(shard_count))
    for shard in selected:
        before = (documents, chunks, tokens)
        stored = store.shard_rows(embedder.model_version, shard, ["chunk_hash"]) if store else None
        known = set(stored.column("chunk_hash").to_pylist()) if stored is not None else set()
        for doc in documents_of(shard):
            if isinstance(doc, Document):
                documents += 1
                new = [
                    c
                    for c in chunk_document(doc.doc_id, doc.text, config, embedder.count_tokens)
                    if c.chunk_hash not in known
                ]
                chunks += len(new)
                tokens += sum(c.token_count for c in new)
        progress.advance(
            "estimate", shard, documents=documents - before[0], chunks=chunks - before[1], tokens=tokens - before[2]
        )
    return Estimate(
        embedder.model_version, len(selected), documents, chunks, tokens, price_per_mtok(embedder.spec, price_override)
    )
