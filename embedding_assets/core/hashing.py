"""Text normalisation and the content hashes that decide what is stale."""

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """Canonical form of a document's text, so cosmetic edits (CRLF, NFC, trailing blanks) hash the same."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\x00", "")
    text = _TRAILING_SPACE.sub("\n", text + "\n")
    return _MANY_BLANK_LINES.sub("\n\n", text).strip()


def content_hash(text: str) -> str:
    """Hex digest (128 bits) identifying a text's exact content."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


_SET_HASH_BITS = 128


def pair_hash(first: str, second: str) -> int:
    """A 128-bit hash of a pair of strings: the unit that ``set_hash`` adds up."""
    digest = hashlib.blake2b(f"{first}\x00{second}".encode(), digest_size=_SET_HASH_BITS // 8).digest()
    return int.from_bytes(digest, "big")


def set_hash(pairs: Iterable[tuple[str, str]]) -> str:
    """Order-independent digest of a set of pairs: the sum of their hashes modulo 2^128, so it can be
    kept up to date one pair at a time (add on arrival, subtract on departure)."""
    return set_hash_hex(sum(pair_hash(first, second) for first, second in pairs))


def set_hash_hex(total: int) -> str:
    """A running ``set_hash`` total as its digest."""
    return f"{total % (1 << _SET_HASH_BITS):032x}"


def stable_bucket(key: str, buckets: int) -> int:
    """A bucket in ``range(buckets)`` for ``key`` that never changes across processes or machines."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % buckets


class Hasher:
    """An order-sensitive hash of a sequence of strings (each one delimited, so ("ab", "c") != ("a", "bc"))."""

    def __init__(self) -> None:
        self._digest = hashlib.blake2b(digest_size=16)

    def update(self, *parts: str) -> "Hasher":
        for part in parts:
            encoded = part.encode("utf-8")
            self._digest.update(len(encoded).to_bytes(8, "big") + encoded)
        return self

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def columns_digest(seed: str, columns: Sequence[pa.Array | pa.ChunkedArray]) -> str:
    """An order-sensitive hash of string columns, each value delimited by its byte length (-1: null),
    computed over Arrow's buffers: what ``Hasher`` does row by row, at C speed for a whole shard."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(seed.encode("utf-8"))
    for column in columns:
        values = pc.fill_null(column, "").cast(pa.string())  # 32-bit offsets, read below
        values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        lengths = pc.fill_null(pc.binary_length(column), -1).to_numpy(zero_copy_only=False).astype("<i8")
        digest.update(len(values).to_bytes(8, "big") + lengths.tobytes())
        if len(values):
            offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[
                values.offset : values.offset + len(values) + 1
            ]
            digest.update(memoryview(values.buffers()[2])[offsets[0] : offsets[-1]])
    return digest.hexdigest()
