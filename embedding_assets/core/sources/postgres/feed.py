"""What every change feed shares: the interface ``PostgresTable`` delegates to, and object names."""

import hashlib
import re
from abc import ABC, abstractmethod

from embedding_assets.core.sources.base import Changes
from embedding_assets.core.sources.postgres.catalog import _Table

_MAX_NAME = 63  # PostgreSQL's identifier length, and a slot name's


class _Feed(ABC):
    """One mode's change feed: what ``PostgresTable`` delegates its feed methods to."""

    @abstractmethod
    def prepare(self) -> None: ...

    @abstractmethod
    def changes(self, cursor: str | None, limit: int) -> Changes: ...

    def acknowledge(self, changes: Changes) -> None:
        return None

    def metrics(self) -> dict[str, float]:
        return {}

    def drop(self) -> None:
        return None


def object_name(*parts: str) -> str:
    """A name for something the source creates: ``parts`` joined by ``_``, in ``[a-z0-9_]`` (a slot
    name's alphabet) and at most 63 characters; a longer one is cut and ends with a hash of the whole."""
    whole = "_".join(parts)
    name = re.sub(r"[^a-z0-9_]", "_", whole.lower())
    if len(name) <= _MAX_NAME:
        return name
    return f"{name[: _MAX_NAME - 9]}_{hashlib.blake2b(whole.encode(), digest_size=4).hexdigest()}"


def _table_part(table: _Table) -> str:
    return table.name if table.schema == "public" else f"{table.schema}_{table.name}"
