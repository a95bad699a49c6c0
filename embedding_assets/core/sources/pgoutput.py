"""A decoder of PostgreSQL's ``pgoutput`` logical replication protocol, version 1, enough to follow keys.

``pg_logical_slot_peek_binary_changes(..., 'proto_version', '1', 'publication_names', ...)`` returns one
message per row. This decodes the messages that say which rows changed: ``B`` (begin), ``C`` (commit),
``R`` (relation: the columns that the row messages carry), ``I``, ``U``, ``D`` (row changes) and ``T``
(truncate). ``O`` (origin), ``Y`` (type) and ``M`` (logical message) are skipped; anything else (the
streaming and two-phase messages of later versions) is an error rather than something to guess at.

Values stay in the text format the server sends. A column can arrive as ``UNCHANGED`` (``u``): an
out-of-line (TOASTed) value that an UPDATE did not touch is sent without its value, so a row message is
never the row's content; the caller re-reads the row by its key.
"""

import enum
import re
import struct
from dataclasses import dataclass
from typing import Literal, TypeAlias


class Marker(enum.Enum):
    UNCHANGED = "u"


UNCHANGED = Marker.UNCHANGED
Value: TypeAlias = str | Literal[Marker.UNCHANGED] | None
"""A column's value: its text, None for SQL NULL, or UNCHANGED for an untouched TOASTed value."""


class DecodeError(ValueError):
    """The bytes are not a pgoutput version 1 message this decoder understands."""


_POSTGRES_EPOCH = 946_684_800  # 2000-01-01 in Unix time: pgoutput's timestamps count microseconds from it


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    is_key: bool  # part of the replica identity


@dataclass(frozen=True)
class Relation:
    """A table as the row messages that follow describe it (only the published columns)."""

    relid: int
    namespace: str
    name: str
    columns: tuple[Column, ...]

    def value(self, row: tuple[Value, ...], column: str) -> Value:
        """The value of ``column`` in ``row``; DecodeError when the relation does not carry it."""
        for position, described in enumerate(self.columns):
            if described.name == column:
                if position >= len(row):
                    break
                return row[position]
        raise DecodeError(f"relation {self.namespace}.{self.name} carries no column {column!r}")


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    xid: int


@dataclass(frozen=True)
class Commit:
    commit_lsn: int
    end_lsn: int  # the position after the commit record: advance a slot here to move past the transaction
    committed_at: float = 0.0  # Unix time


@dataclass(frozen=True)
class Insert:
    relation: Relation
    new: tuple[Value, ...]


@dataclass(frozen=True)
class Update:
    relation: Relation
    old: tuple[Value, ...] | None  # the old key (or old row under REPLICA IDENTITY FULL) when it changed
    new: tuple[Value, ...]


@dataclass(frozen=True)
class Delete:
    relation: Relation
    old: tuple[Value, ...]  # the old key, or the old row under REPLICA IDENTITY FULL


@dataclass(frozen=True)
class Truncate:
    relids: tuple[int, ...]


Message: TypeAlias = Begin | Commit | Relation | Insert | Update | Delete | Truncate
_SKIPPED = frozenset(b"OYM")
_LSN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")


class Decoder:
    """Decodes one slot session's messages in order; remembers the relations (``R``) it has seen, since
    row messages name their table only by id."""

    def __init__(self, encoding: str = "utf-8") -> None:
        self.encoding = encoding  # the database's encoding, in which text values arrive
        self.relations: dict[int, Relation] = {}

    def decode(self, data: bytes) -> Message | None:
        """The message in ``data``, or None for a message kind that says nothing about rows."""
        if not data:
            raise DecodeError("empty message")
        kind, reader = data[0], _Reader(data, self.encoding)
        if kind in _SKIPPED:
            return None
        if kind == ord("B"):
            final_lsn, _timestamp, xid = reader.unpack("!QqI")
            return Begin(final_lsn, xid)
        if kind == ord("C"):
            _flags, commit_lsn, end_lsn, timestamp = reader.unpack("!BQQq")
            return Commit(commit_lsn, end_lsn, _POSTGRES_EPOCH + timestamp / 1e6)
        if kind == ord("R"):
            return self._relation(reader)
        if kind == ord("T"):
            count, _options = reader.unpack("!IB")
            return Truncate(tuple(reader.unpack("!I")[0] for _ in range(count)))
        if kind in b"IUD":
            return self._row_change(kind, reader)
        raise DecodeError(f"unsupported pgoutput message {chr(kind)!r} (only protocol version 1 is decoded)")

    def _relation(self, reader: "_Reader") -> Relation:
        relid = reader.unpack("!I")[0]
        namespace, name = reader.string() or "pg_catalog", reader.string()
        _replica_identity, count = reader.unpack("!BH")
        columns = []
        for _ in range(count):
            flags = reader.unpack("!B")[0]
            column = reader.string()
            type_oid, _typmod = reader.unpack("!Ii")
            columns.append(Column(column, type_oid, bool(flags & 1)))
        relation = Relation(relid, namespace, name, tuple(columns))
        self.relations[relid] = relation
        return relation

    def _row_change(self, kind: int, reader: "_Reader") -> Insert | Update | Delete:
        relid = reader.unpack("!I")[0]
        relation = self.relations.get(relid)
        if relation is None:
            raise DecodeError(f"row message for relation {relid} before its relation message")
        tag = reader.byte()
        if kind == ord("I"):
            return Insert(relation, reader.expect(tag, b"N").tuple())
        if kind == ord("D"):
            return Delete(relation, reader.expect(tag, b"KO").tuple())
        old = None
        if tag in b"KO":
            old, tag = reader.tuple(), reader.byte()
        return Update(relation, old, reader.expect(tag, b"N").tuple())


class _Reader:
    """A position in one message's bytes (after its kind byte)."""

    def __init__(self, data: bytes, encoding: str) -> None:
        self.data, self.encoding, self.offset = data, encoding, 1

    def unpack(self, layout: str) -> tuple[int, ...]:
        try:
            values = struct.unpack_from(layout, self.data, self.offset)
        except struct.error:
            raise DecodeError(f"truncated {chr(self.data[0])!r} message") from None
        self.offset += struct.calcsize(layout)
        return tuple(int(value) for value in values)

    def byte(self) -> int:
        return self.unpack("!B")[0]

    def expect(self, tag: int, allowed: bytes) -> "_Reader":
        if tag not in allowed:
            raise DecodeError(f"unexpected tuple tag {chr(tag)!r} in a {chr(self.data[0])!r} message")
        return self

    def string(self) -> str:
        end = self.data.find(b"\x00", self.offset)
        if end < 0:
            raise DecodeError(f"unterminated string in a {chr(self.data[0])!r} message")
        text = self.data[self.offset : end].decode(self.encoding)
        self.offset = end + 1
        return text

    def tuple(self) -> tuple[Value, ...]:
        """TupleData: a count, then per column ``n`` (NULL), ``u`` (unchanged TOAST) or ``t`` + text."""
        values: list[Value] = []
        for _ in range(self.unpack("!H")[0]):
            tag = self.byte()
            if tag == ord("n"):
                values.append(None)
            elif tag == ord("u"):
                values.append(UNCHANGED)
            elif tag == ord("t"):
                length = self.unpack("!I")[0]
                if self.offset + length > len(self.data):
                    raise DecodeError("truncated column value")
                values.append(self.data[self.offset : self.offset + length].decode(self.encoding))
                self.offset += length
            else:
                raise DecodeError(f"unsupported column format {chr(tag)!r} (binary values are not requested)")
        return tuple(values)


def parse_lsn(text: str) -> int:
    """``'16/B374D848'`` as the 64-bit position it names; ValueError when it is not an LSN."""
    if not _LSN.fullmatch(text):
        raise ValueError(f"not an LSN: {text!r}")
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(position: int) -> str:
    """The ``high/low`` hexadecimal text PostgreSQL writes for a WAL position."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"
