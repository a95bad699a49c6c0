"""A deterministic hashing embedder: fast and dependency-free, for unit tests of unrelated logic only."""

import re
from collections.abc import Sequence

import numpy as np

from embedding_assets.core.embedders.base import Embedder, model_version, unit_rows
from embedding_assets.core.hashing import stable_bucket

_WORD = re.compile(r"\w+")


class ToyEmbedder(Embedder):
    """Bag of hashed words: texts sharing words get similar vectors. Not a language model."""

    max_input_tokens = 8192

    def __init__(self, dimensions: int = 32) -> None:
        super().__init__()
        self._dimensions = dimensions

    @property
    def model_version(self) -> str:
        return model_version("toy", "hashing", self._dimensions, "1")

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def tokenizer_id(self) -> str:
        return "words"

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(_WORD.findall(t)) for t in texts]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                vectors[row, stable_bucket(word, self._dimensions)] += 1.0
        self.retry_stats.requests += 1
        return unit_rows(vectors)
