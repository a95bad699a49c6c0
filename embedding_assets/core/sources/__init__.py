"""Sources of documents: the protocol every source follows, and its implementations."""

from embedding_assets.core.sources.base import (
    Changes,
    Document,
    Item,
    Read,
    Skip,
    Source,
    SourceError,
)
from embedding_assets.core.sources.folder import DEFAULT_MAX_FILE_BYTES, SourceFolder, first_id_wins

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "Changes",
    "Document",
    "Item",
    "Read",
    "Skip",
    "Source",
    "SourceError",
    "SourceFolder",
    "first_id_wins",
]
