import pyarrow as pa

from embedding_assets.core.reconcile import ExpectedChunk, diff_shard

MODEL = "toy:hashing@1/4d"


def stored(*rows: tuple[str, str, str, str, str]) -> pa.Table:
    names = ["chunk_id", "doc_id", "chunk_hash", "doc_hash", "model_version"]
    return pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in rows])


EXPECTED = {
    "a#0": ExpectedChunk("a", "h0", "da"),
    "a#1": ExpectedChunk("a", "h1", "da"),
    "b#0": ExpectedChunk("b", "h2", "db"),
}


def test_an_exact_table_matches() -> None:
    diff = diff_shard(
        "s000",
        EXPECTED,
        stored(("a#0", "a", "h0", "da", MODEL), ("a#1", "a", "h1", "da", MODEL), ("b#0", "b", "h2", "db", MODEL)),
        MODEL,
    )
    assert diff.matches and diff.describe() == "s000: 3 rows match the source"


def test_every_kind_of_difference_is_listed() -> None:
    diff = diff_shard(
        "s000",
        EXPECTED,
        stored(
            ("a#0", "a", "h0", "da", MODEL),
            ("a#1", "a", "stale", "da", MODEL),  # text changed, vector not refreshed
            ("b#0", "b", "h2", "db", "other:model/4d"),  # embedded by another model
            ("c#0", "c", "h9", "dc", MODEL),  # document deleted from the source
            ("c#0", "c", "h9", "dc", MODEL),  # ... and duplicated
        ),
        MODEL,
    )
    assert not diff.matches
    assert (diff.missing, diff.extra, diff.changed, diff.wrong_model) == ([], ["c#0", "c#0"], ["a#1"], ["b#0"])
    assert "1 changed ['a#1']" in diff.describe() and "1 wrong model ['b#0']" in diff.describe()


def test_a_missing_table_misses_everything() -> None:
    diff = diff_shard("s001", EXPECTED, None, MODEL)
    assert diff.missing == ["a#0", "a#1", "b#0"] and diff.stored == 0
