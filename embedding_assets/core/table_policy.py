"""What happens to a model's table once a run has written its shards: compaction and the first promotion."""

from dataclasses import dataclass, field

from embedding_assets.core.registry import Registry
from embedding_assets.core.store import COMPACT_AFTER_SMALL_FRAGMENTS, VectorStore


@dataclass(frozen=True)
class Settled:
    """What ``settle_table`` did, as lines for the run's log."""

    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def settle_table(
    store: VectorStore,
    registry: Registry,
    model_version: str,
    compact_after: int = COMPACT_AFTER_SMALL_FRAGMENTS,
    *,
    may_go_live: bool = True,
) -> Settled:
    """Compact the table once small fragments have piled up (every shard commit adds some), index the
    rows written since once many are outside the scalar indexes, and make it live if no table is live
    yet and it ``may_go_live`` (the first model listed): the first table answers queries without a
    promote, while other models' tables wait for one."""
    notes, warnings = [], []
    try:
        fragments = store.compact(model_version, min_small_fragments=compact_after)
        folded = store.index_new_rows(model_version)
    except Exception as err:  # a concurrent writer won the commit; the next run compacts
        warnings.append(f"compaction of {model_version} skipped: {err}")
    else:
        if fragments is not None:
            notes.append(f"compacted {model_version}: {fragments} fragments merged")
        if folded is not None:
            notes.append(f"{folded} rows written since were folded into the scalar indexes of {model_version}")
    if may_go_live and registry.state().live is None:
        registry.promote(model_version, "the first table is live")
        notes.append(f"{model_version} is the first table and is now live")
    return Settled(notes, warnings)
