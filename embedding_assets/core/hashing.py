"""Text normalisation and the content hashes that decide what is stale."""

import hashlib
import re
import unicodedata

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
