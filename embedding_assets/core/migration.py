"""Side-by-side model migration: evaluate tables, gate promotion, and name the table that answers.

Each model version has its own table. A candidate may become live only when every shard reflects
the source (none missing or stale) and, unless forced, its recall@10 and nDCG@10 are not worse
than the live table's by more than a margin.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from embedding_assets.core.embedders import Embedder, make_embedder
from embedding_assets.core.errors import ConfigError
from embedding_assets.core.evaluation import CHUNKS_PER_QUERY, EvalReport, GoldenQuery, comparison_table, evaluate
from embedding_assets.core.registry import Registry
from embedding_assets.core.store import TableInfo, VectorStore

GATED_METRICS = ("recall@10", "ndcg@10")
EmbedderFor = Callable[[TableInfo], Embedder]


def table_embedder(info: TableInfo, *, api_key: str | None = None, base_url: str | None = None) -> Embedder:
    """The embedder that produced a table (from the spec in its metadata), to embed queries for it."""
    embedder = make_embedder(info.model_spec, dimensions=info.requested_dimensions, api_key=api_key, base_url=base_url)
    if embedder.model_version != info.model_version:
        raise ConfigError(
            f"table {info.name} was built by {info.model_version}, but {info.model_spec!r} now "
            f"gives {embedder.model_version}; install the model version the table was built with"
        )
    return embedder


def evaluate_table(
    store: VectorStore, model_version: str, golden: Sequence[GoldenQuery], embedder_for: EmbedderFor
) -> EvalReport:
    info = store.info(model_version)
    if info is None:
        raise LookupError(f"no table for {model_version} in {store.uri}")
    embedder = embedder_for(info)

    def search(queries: Sequence[str]) -> list[list[str]]:
        return [
            store.search(model_version, vector, CHUNKS_PER_QUERY).column("doc_id").to_pylist()
            for vector in embedder.embed(list(queries))
        ]

    return evaluate(model_version, golden, search)


def gate(candidate: EvalReport, live: EvalReport, margin: float) -> list[str]:
    """Why ``candidate`` may not replace ``live`` (empty: it may)."""
    return [
        f"{metric} {candidate[metric]:.3f} is worse than live {live[metric]:.3f} by more than {margin:.3f}"
        for metric in GATED_METRICS
        if live[metric] - candidate[metric] > margin
    ]


@dataclass(frozen=True)
class PromotionCheck:
    candidate: str
    live: str | None
    stale: list[str] = field(default_factory=list)
    reports: list[EvalReport] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    def comparison(self) -> str:
        return comparison_table(self.reports, self.live) if self.reports else ""


def check_promotion(
    store: VectorStore,
    stale: Sequence[str],
    candidate: str,
    golden: Sequence[GoldenQuery],
    margin: float,
    embedder_for: EmbedderFor,
) -> PromotionCheck:
    """Everything ``promote`` decides on: completeness against the source (``stale``: the candidate's
    shards that do not reflect it), then the eval gate."""
    if store.info(candidate) is None:
        raise LookupError(f"no table for {candidate}; materialize the pipeline with that model first")
    live = Registry(store.db).state().live
    if live is None or live == candidate:
        return PromotionCheck(candidate, live, list(stale))
    reports = [evaluate_table(store, v, golden, embedder_for) for v in (live, candidate)]
    return PromotionCheck(candidate, live, list(stale), reports, gate(reports[1], reports[0], margin))
