"""The retrieval quality gate on each evaluation: a floor on recall@10, and a warning on a drop.

``retrieval_eval`` records the golden set's metrics; this judges them. Below the floor the table
answers badly (a broken table, a wrong model), so the check fails its run. A drop of more than the
eval margin from the previous evaluation of the same model is worth a look, so it warns.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from embedding_assets.core.evaluation import GoldenQuery

RETRIEVAL_QUALITY = "retrieval_quality"
FLOOR_METRIC = "recall@10"
WATCHED_METRICS = ("recall@10", "ndcg@10")  # the metrics a drop is judged on (as promote's gate)


class Verdict(Enum):
    PASSED = "passed"
    WARN = "warn"  # passed the floor, but dropped
    FAILED = "failed"  # under the floor


@dataclass(frozen=True)
class Quality:
    verdict: Verdict
    description: str
    figures: dict[str, float] = field(default_factory=dict)


def metadata_name(metric: str) -> str:
    """How ``retrieval_eval`` names a metric in its metadata (``recall@10`` → ``recall_at_10``)."""
    return metric.replace("@", "_at_")


def uncovered_queries(golden: Sequence[GoldenQuery], indexed: set[str]) -> list[str]:
    """The golden queries none of whose relevant documents is in the table (``indexed``): a golden set
    written for another corpus, which no model could answer here."""
    return [q.query for q in golden if not set(q.relevant) & indexed]


def judge(
    current: Mapping[str, float],
    previous: Mapping[str, float] | None,
    *,
    floor: float,
    margin: float,
    uncovered: int = 0,
) -> Quality:
    """The verdict on ``current`` (metric → value), against ``floor`` (recall@10; 0: none) and against
    ``previous`` (the last evaluation of the same model, None: the first). The floor is not applied
    when ``uncovered`` golden queries name no document of the table: such a set cannot judge it."""
    figures = {metadata_name(m): current[m] for m in WATCHED_METRICS if m in current}
    figures |= {"floor": floor, "margin": margin, "uncovered_queries": float(uncovered)}
    value = current[FLOOR_METRIC]
    drops = {
        metric: previous[metric] - current[metric]
        for metric in WATCHED_METRICS
        if previous is not None and metric in previous and metric in current
    }
    figures |= {f"{metadata_name(m)}_drop": round(d, 4) for m, d in drops.items()}
    if floor > 0 and uncovered:
        floor_note = (
            f"floor not applied: {uncovered} golden queries name no document of this table "
            "(set EMBEDDING_ASSETS_GOLDEN_SET to a golden set of this corpus)"
        )
    elif floor > 0 and value < floor:
        return Quality(
            Verdict.FAILED,
            f"{FLOOR_METRIC} {value:.3f} is under the floor {floor:g} (EMBEDDING_ASSETS_EVAL_FLOOR): the table "
            "answers the golden set badly (a broken table, or the wrong model)",
            figures,
        )
    else:
        floor_note = f"{FLOOR_METRIC} {value:.3f} ≥ floor {floor:g}" if floor > 0 else "no floor (EVAL_FLOOR 0)"
    dropped = [f"{m} fell {d:.3f} to {current[m]:.3f}" for m, d in drops.items() if d > margin]
    if dropped:
        return Quality(
            Verdict.WARN,
            "; ".join(dropped) + f" since the previous evaluation (more than EMBEDDING_ASSETS_EVAL_MARGIN "
            f"{margin:g}); {floor_note}",
            figures,
        )
    since = "first evaluation" if previous is None else f"within {margin:g} of the previous evaluation"
    return Quality(Verdict.PASSED, f"{floor_note}; {since}", figures)
