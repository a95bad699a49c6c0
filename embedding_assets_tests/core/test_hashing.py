import subprocess
import sys

import pyarrow as pa
import pytest

from embedding_assets.core.hashing import columns_digest, content_hash, normalize_text, stable_bucket


@pytest.mark.parametrize(
    "variant",
    [
        "Title\r\n\r\nBody text.\r\n",
        "Title  \n\n\n\nBody text.   \n",
        "\n\nTitle\n\nBody text.",
        "Title\n\nBody\x00 text.",
    ],
)
def test_cosmetic_variants_normalise_to_the_same_text(variant: str) -> None:
    assert normalize_text(variant) == "Title\n\nBody text."


def test_unicode_is_composed() -> None:
    assert normalize_text("cafe\u0301") == normalize_text("caf\u00e9") == "caf\u00e9"


def test_content_hash_tells_texts_apart() -> None:
    assert content_hash("a") == content_hash("a")
    assert content_hash("a") != content_hash("b")
    assert len(content_hash("a")) == 32


def test_stable_bucket_is_the_same_in_another_process() -> None:
    keys = ["doc-1", "guide/intro.md", "ünïcødé", ""]
    here = [stable_bucket(k, 1024) for k in keys]
    code = f"from embedding_assets.core.hashing import stable_bucket;print([stable_bucket(k, 1024) for k in {keys!r}])"
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "12345"}
    ).stdout.strip()
    assert str(here) == there
    assert all(0 <= b < 1024 for b in here)


def test_columns_digest_follows_the_values_not_how_arrow_holds_them() -> None:
    values = ["a", "bc", None, "", "ünï"]
    digest = columns_digest("seed", [pa.array(values)])
    assert digest == columns_digest("seed", [pa.chunked_array([values[:2], values[2:]], pa.string())])
    assert digest == columns_digest("seed", [pa.array(["x", *values])[1:]])  # a sliced array
    assert digest == columns_digest("seed", [pa.array(values, pa.large_string())])
    for other in (["ab", "c", None, "", "ünï"], ["a", "bc", "", "", "ünï"], values[::-1]):
        assert columns_digest("seed", [pa.array(other)]) != digest  # boundaries, null vs empty, order
    assert columns_digest("other", [pa.array(values)]) != digest
    assert columns_digest("seed", [pa.array(values[:2]), pa.array(values[2:])]) != digest  # columns delimited
