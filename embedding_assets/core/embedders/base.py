"""The embedder contract every provider implements."""

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from embedding_assets.core.retry import RetryStats


def model_version(provider: str, model: str, dimensions: int | None, revision: str = "") -> str:
    """The identity of the vectors a model produces: provider, model, revision and dimensions.

    Two embedders with the same model version produce interchangeable vectors; anything else gets
    its own table and makes every partition stale.
    """
    name = f"{provider}:{model}" + (f"@{revision}" if revision else "")
    return f"{name}/{dimensions}d" if dimensions else f"{name}/native"


class Embedder(ABC):
    """Turns texts into unit-length float32 vectors, and counts tokens with the model's tokenizer."""

    #: Longest input, in tokens without special tokens, that the model reads in full.
    max_input_tokens: int
    #: The spec and dimensions ``make_embedder`` was given, so a table's model can be rebuilt for queries.
    spec: str = ""
    requested_dimensions: int | None = None

    def __init__(self) -> None:
        self.retry_stats = RetryStats()

    @property
    @abstractmethod
    def model_version(self) -> str: ...

    @property
    @abstractmethod
    def dimensions(self) -> int:
        """Vector length (may call the provider once when it cannot be known in advance)."""

    @property
    @abstractmethod
    def tokenizer_id(self) -> str:
        """Names the tokenizer, so chunk boundaries change when it does."""

    def check_credentials(self) -> None:
        """Raise ``ConfigError`` when the embedder could not authenticate (models without keys never do)."""
        return None

    @abstractmethod
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, without special tokens."""

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """An ``(len(texts), dimensions)`` float32 array of unit vectors, in input order."""


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero, and the store's checks will flag them)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)
