"""Which table answers queries: a small, durable log of promotions beside the tables.

The registry is a LanceDB table of events (``promote``, ``rollback``, ``drop``), appended in one
commit each, so it lives wherever the vector tables live (a folder or an object store). The live
table is the top of a stack replayed from the log: ``promote`` pushes, ``rollback`` pops, ``drop``
removes a retired version. Rollback is instant: it only appends an event.

Every event also states the table that is live after it (``live_table``), so any LanceDB client finds
the live table from the newest row alone, without this package (see the README's "Reading the live
table from an application").
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from embedding_assets.core.errors import ConfigError
from embedding_assets.core.store import table_name

if TYPE_CHECKING:
    from lancedb import DBConnection

REGISTRY_TABLE = "index_registry"
_SCHEMA = pa.schema(
    [
        ("at", pa.timestamp("us", tz="UTC")),
        ("action", pa.string()),
        ("model_version", pa.string()),
        ("note", pa.string()),
        ("live_table", pa.string()),  # the table live after this event ("" when none is)
    ]
)
POINTER = _SCHEMA.field("live_table")


@dataclass(frozen=True)
class Event:
    at: datetime
    action: str
    model_version: str
    note: str
    live_table: str | None = None


@dataclass(frozen=True)
class RegistryState:
    live: str | None
    history: list[str]  # earlier live versions, most recent last: what rollback returns to
    promoted_at: dict[str, datetime]
    dropped: set[str]

    @property
    def previous(self) -> str | None:
        return self.history[-1] if self.history else None


class Registry:
    """The promotion log in the LanceDB database ``db``."""

    def __init__(self, db: "DBConnection") -> None:
        self._db = db

    def events(self) -> list[Event]:
        if REGISTRY_TABLE not in self._db.list_tables().tables:
            return []
        rows = self._db.open_table(REGISTRY_TABLE).to_arrow().sort_by("at").to_pylist()
        return [Event(**row) for row in rows]

    def state(self) -> RegistryState:
        return _replay(self.events())

    def promote(self, model_version: str, note: str = "") -> None:
        self._append("promote", model_version, note)

    def rollback(self, note: str = "") -> str:
        """Make the previous live version live again; returns it."""
        state = self.state()
        if state.previous is None:
            raise ConfigError("nothing to roll back to: no earlier live table in the registry")
        self._append("rollback", state.live or "", note)
        return state.previous

    def check_droppable(self, model_version: str) -> None:
        if self.state().live == model_version:
            raise ConfigError(f"{model_version} is live; promote another table or roll back before dropping it")

    def record_drop(self, model_version: str) -> None:
        self.check_droppable(model_version)
        self._append("drop", model_version, "")

    def _append(self, action: str, model_version: str, note: str) -> None:
        event = Event(datetime.now(UTC), action, model_version, note)
        live = _replay([*self.events(), event]).live
        row = {**event.__dict__, "live_table": table_name(live) if live else ""}
        table = self._db.create_table(REGISTRY_TABLE, schema=_SCHEMA, exist_ok=True)
        if POINTER.name not in table.schema.names:  # a registry of an older release: the pointer column, once
            table.add_columns([POINTER])
        table.add(pa.Table.from_pylist([row], schema=_SCHEMA))


def _replay(events: list[Event]) -> RegistryState:
    """The state the events leave: the live version is the top of the promote/rollback stack."""
    stack: list[str] = []
    promoted_at: dict[str, datetime] = {}
    dropped: set[str] = set()
    for event in events:
        if event.action == "promote":
            stack = [v for v in stack if v != event.model_version] + [event.model_version]
            promoted_at[event.model_version] = event.at
            dropped.discard(event.model_version)
        elif event.action == "rollback" and stack:
            stack.pop()
        elif event.action == "drop":
            stack = [v for v in stack if v != event.model_version]
            dropped.add(event.model_version)
    return RegistryState(stack[-1] if stack else None, stack[:-1], promoted_at, dropped)
