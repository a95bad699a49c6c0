"""What every contender in `make bench` is given: the same chunks of the same folder, the same edit, and
the same model, plus the bare-model loops that set the limit."""

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedding_assets.core.chunking import Chunk, ChunkingConfig, TokenCounter, chunk_document
from embedding_assets.core.embedders import local_minilm
from embedding_assets.core.embedders.base import Embedder
from embedding_assets.core.hashing import normalize_text
from embedding_assets.core.sources import SourceFolder

EDIT_SUFFIX = "\n\nAn added closing paragraph about memory barriers."


def folder_chunks(folder: Path, chunking: ChunkingConfig, count_tokens: TokenCounter) -> list[Chunk]:
    """The pipeline's chunks of every document in ``folder``, in document order (as run.py has always cut them)."""
    return [
        c
        for d in SourceFolder(folder).files()
        for c in chunk_document(d, normalize_text((folder / d).read_text()), chunking, count_tokens)
    ]


def edit_corpus(folder: Path, added: list[tuple[str, str]]) -> None:
    """The refresh workload: append a paragraph to 1% of the documents (spread evenly), delete the last 3,
    and add ``added`` (3 unseen sections). Deterministic, so each contender's copy gets the same change."""
    from corpus import write_corpus

    files = sorted(folder.iterdir())
    edit_percent(folder)
    for path in files[-3:]:
        path.unlink()
    write_corpus(added, folder)


def edit_percent(folder: Path, offset: int = 0) -> None:
    """Append a paragraph to 1% of the documents, spread evenly, from the ``offset``-th file on."""
    files = sorted(folder.iterdir())
    edits = max(1, len(files) // 100)
    for path in files[offset :: max(1, len(files) // edits)][:edits]:
        path.write_text(path.read_text() + EDIT_SUFFIX)


def keys(chunks: Sequence[Chunk]) -> set[tuple[str, str]]:
    """A chunk is the same chunk only if both its id and its text are unchanged."""
    return {(c.chunk_id, c.text) for c in chunks}


def audit(rows: Sequence[tuple[str, str]], current: Sequence[Chunk]) -> dict[str, int]:
    """Rows a table holds that the folder no longer has (stale, counting duplicates), and chunks it lacks."""
    held = Counter(rows)
    wanted = keys(current)
    stale = sum(n for key, n in held.items() if key not in wanted)
    duplicates = sum(n - 1 for key, n in held.items() if key in wanted)
    return {"stale_rows": stale + duplicates, "duplicate_rows": duplicates, "missing_rows": len(wanted - held.keys())}


class CountingEmbedder:
    """Our embedder as the peers see it: ``embed`` passes through, counting the texts it was given."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.seen: list[str] = []

    @property
    def texts(self) -> int:
        return len(self.seen)

    @property
    def batch_size(self) -> int:
        return getattr(self.embedder, "batch_size", 16)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.extend(texts)
        return self.embedder.embed(list(texts))


def bare_model_embed(texts: Sequence[str], batch_size: int) -> np.ndarray:
    """The model alone, as a user would loop over it: ONNX Runtime's default session, batches of
    ``batch_size`` in document order, one at a time, no length sorting. Each batch is one forward pass,
    padded to its longest text, with the pipeline's tokenizer and pooling."""
    session = local_minilm.new_session(threads=None, spinning=True)
    return np.concatenate(
        [
            local_minilm.forward(session, list(texts[start : start + batch_size]))
            for start in range(0, len(texts), batch_size)
        ]
    )
