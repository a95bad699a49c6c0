"""What the catalog says about the source table, checked once in ``prepare``."""

from dataclasses import dataclass

import psycopg2.extensions
from psycopg2 import sql

from embedding_assets.core.sources.postgres.connection import PostgresConnection


@dataclass(frozen=True)
class _Table:
    """What the catalog says about the source table."""

    schema: str
    name: str
    oid: int
    key_column: str
    key_type: str  # format_type() of the key: the cast that turns key text back into key values
    text_column: str
    columns: tuple[tuple[str, str], ...]  # (name, format_type) of every column
    database: str
    encoding: str  # the Python codec of the database's encoding

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def parts(self) -> dict[str, sql.Composable]:
        """The quoted pieces of every query on the table. The key's type is the server's own spelling
        (format_type quotes and qualifies it as needed), never user input."""
        return {
            "table": sql.Identifier(self.schema, self.name),
            "key": sql.Identifier(self.key_column),
            "text": sql.Identifier(self.text_column),
            "type": sql.SQL(self.key_type),
        }

    def column_type(self, name: str) -> str | None:
        return dict(self.columns).get(name)


def _inspect(db: PostgresConnection, schema: str, name: str, id_field: str, text_field: str) -> _Table:
    """The table, checked: it exists, its primary key is exactly ``id_field``, ``text_field`` is text."""
    qualified = f"{schema}.{name}"
    row = db.one(
        "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    )
    if row is None or row[1] not in ("r", "p"):
        what = "does not exist" if row is None else "is not a table"
        raise db.error(f"table {qualified} {what} in {db.where}")
    oid = int(row[0])
    columns = db.rows(
        "SELECT a.attname, format_type(a.atttypid, NULL), t.typcategory, a.attnum = ANY(i.indkey) "
        "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
        "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (oid,),
    )
    key = [str(column) for column, _, _, in_key in columns if in_key]
    if problem := primary_key_problem(qualified, key, id_field):
        raise db.error(problem)
    types = {str(column): (str(kind), str(category)) for column, kind, category, _ in columns}
    if text_field not in types:
        raise db.error(f"table {qualified} has no column {text_field!r} (set EMBEDDING_ASSETS_TEXT_FIELD)")
    if types[text_field][1] != "S":  # the string category: text, varchar, char, citext...
        raise db.error(
            f"column {text_field!r} of {qualified} is {types[text_field][0]}, not text "
            "(set EMBEDDING_ASSETS_TEXT_FIELD)"
        )
    database, encoding = db.one("SELECT current_database(), current_setting('server_encoding')") or ("", "")
    return _Table(
        schema,
        name,
        oid,
        id_field,
        types[id_field][0],
        text_field,
        tuple((column, kind) for column, (kind, _) in types.items()),
        str(database),
        psycopg2.extensions.encodings.get(str(encoding), "utf-8"),
    )


def primary_key_problem(table: str, key: list[str], id_field: str) -> str | None:
    """Why a table with primary key columns ``key`` cannot be followed by ``id_field``, if it cannot."""
    if key == [id_field]:
        return None
    if not key:
        found = "has no primary key"
    elif len(key) > 1:
        found = f"has a composite primary key ({', '.join(key)})"
    else:
        found = f"has the primary key {key[0]!r}"
    return (
        f"table {table} {found}: a PostgreSQL source follows rows by a single-column primary key, "
        f"named by EMBEDDING_ASSETS_ID_FIELD (now {id_field!r})"
    )
