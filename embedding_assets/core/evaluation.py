"""Retrieval quality against a golden set: recall@k, MRR and nDCG@10, at the document level.

A golden set is JSONL, one query per line:
``{"query": "...", "relevant": ["doc_id", ...], "grades": {"doc_id": 2}}`` (grades optional, default 1).
Chunk hits are collapsed to documents in rank order (a document ranks where its best chunk does).
"""

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

K_VALUES = (1, 5, 10)
NDCG_AT = 10
CHUNKS_PER_QUERY = 50  # enough chunk hits to fill 10 distinct documents


@dataclass(frozen=True)
class GoldenQuery:
    query: str
    relevant: tuple[str, ...]
    grades: dict[str, float] = field(default_factory=dict)

    def grade(self, doc_id: str) -> float:
        return self.grades.get(doc_id, 1.0) if doc_id in self.relevant else 0.0


def load_golden(path: str | Path) -> list[GoldenQuery]:
    """Parse a golden set, failing with the line number on anything malformed."""
    queries = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            query = GoldenQuery(
                str(item["query"]), tuple(item["relevant"]), {k: float(v) for k, v in item.get("grades", {}).items()}
            )
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{path}:{number}: not a golden query ({err})") from None
        if not query.relevant or set(query.grades) - set(query.relevant):
            raise ValueError(f"{path}:{number}: 'relevant' must be non-empty and include every graded id")
        queries.append(query)
    if not queries:
        raise ValueError(f"{path}: no queries")
    return queries


def recall_at(ranked: Sequence[str], query: GoldenQuery, k: int) -> float:
    return len(set(ranked[:k]) & set(query.relevant)) / len(query.relevant)


def reciprocal_rank(ranked: Sequence[str], query: GoldenQuery) -> float:
    return next((1.0 / rank for rank, doc in enumerate(ranked, start=1) if doc in query.relevant), 0.0)


def ndcg_at(ranked: Sequence[str], query: GoldenQuery, k: int = NDCG_AT) -> float:
    """Normalised discounted cumulative gain with graded relevance (gain = 2^grade - 1)."""

    def dcg(grades: Sequence[float]) -> float:
        return sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(grades[:k]))

    ideal = dcg(sorted((query.grade(d) for d in query.relevant), reverse=True))
    return dcg([query.grade(d) for d in ranked]) / ideal if ideal else 0.0


def distinct_in_order(doc_ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(doc_ids))


@dataclass(frozen=True)
class EvalReport:
    model_version: str
    queries: int
    metrics: dict[str, float]  # recall@1, recall@5, recall@10, mrr, ndcg@10

    def __getitem__(self, name: str) -> float:
        return self.metrics[name]


def evaluate(
    model_version: str, golden: Sequence[GoldenQuery], search: Callable[[Sequence[str]], list[list[str]]]
) -> EvalReport:
    """Average metrics over ``golden``; ``search`` maps query texts to ranked chunk doc ids per query."""
    rankings = [distinct_in_order(hits) for hits in search([q.query for q in golden])]
    totals = {f"recall@{k}": 0.0 for k in K_VALUES} | {"mrr": 0.0, f"ndcg@{NDCG_AT}": 0.0}
    for query, ranked in zip(golden, rankings, strict=True):
        for k in K_VALUES:
            totals[f"recall@{k}"] += recall_at(ranked, query, k)
        totals["mrr"] += reciprocal_rank(ranked, query)
        totals[f"ndcg@{NDCG_AT}"] += ndcg_at(ranked, query)
    return EvalReport(model_version, len(golden), {k: v / len(golden) for k, v in totals.items()})


def comparison_table(reports: Sequence[EvalReport], live: str | None) -> str:
    """A Markdown table of the reports side by side, live first."""
    ordered = sorted(reports, key=lambda r: r.model_version != live)
    names = list(ordered[0].metrics) if ordered else []
    lines = ["| model version | role | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for report in ordered:
        role = "live" if report.model_version == live else "candidate"
        lines.append(f"| {report.model_version} | {role} | " + " | ".join(f"{report[n]:.3f}" for n in names) + " |")
    return "\n".join(lines)
