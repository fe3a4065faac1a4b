"""The embedded store: SQLite in WAL mode under the state dir. SQL lives here and nowhere else.

Every resource kind shares one table: the columns listing filters and sorts on, plus the
resource itself as a JSON document. Every method is one transaction, committed (and, with
`synchronous=FULL`, on disk) before it returns, so an answered write survives `kill -9` and
power loss alike. One connection behind a lock serves all threads: control-plane calls are
small, and SQLite serialises writers anyway.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["model", "endpoint-config", "endpoint", "inference-component"]
OrderColumn = Literal["name_key", "created", "status"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    kind     TEXT NOT NULL,
    name_key TEXT NOT NULL,
    name     TEXT NOT NULL,
    arn      TEXT NOT NULL,
    created  REAL NOT NULL,
    modified REAL NOT NULL,
    status   TEXT,
    doc      TEXT NOT NULL,
    PRIMARY KEY (kind, name_key)
);
CREATE INDEX IF NOT EXISTS resources_by_created ON resources (kind, created, name_key);
CREATE TABLE IF NOT EXISTS tags (
    kind     TEXT NOT NULL,
    name_key TEXT NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (kind, name_key, key)
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Resource:
    kind: Kind
    name: str  # as created; lookups ignore case
    arn: str
    created: float
    modified: float
    status: str | None
    doc: dict[str, Any]


@dataclass(frozen=True)
class PageQuery:
    """One page of a listing: filters, an order and a keyset cursor (the last row seen)."""

    order_by: OrderColumn
    descending: bool
    limit: int
    after: tuple[str | float, str] | None = None  # (order value, name_key) of the last row
    name_contains: str | None = None
    created_before: float | None = None
    created_after: float | None = None
    modified_before: float | None = None
    modified_after: float | None = None
    status: str | None = None


class StoreClosed(Exception):
    """The store was closed (server shutting down)."""


# SQLite's primary result codes for a write the disk did not take (`sqlite_errorcode & 0xFF`):
# SQLITE_FULL is a full disk (ENOSPC), SQLITE_IOERR any other failed write (EFBIG, EIO, ...).
_SQLITE_IOERR = 10
_SQLITE_FULL = 13


class StoreUnwritable(Exception):
    """A write transaction the state dir's disk did not take; it was rolled back, so nothing
    changed. `full` tells a full disk from another I/O error; the message names the folder."""

    def __init__(self, folder: Path, full: bool, detail: str) -> None:
        self.folder = folder
        self.full = full
        self.detail = detail
        super().__init__(f"{folder}: {detail}")


def _unwritable(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (_SQLITE_FULL, _SQLITE_IOERR)


def _dump(doc: dict[str, Any]) -> str:
    # ensure_ascii keeps any odd character (even a lone surrogate) storable as text.
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._folder = path.parent.absolute()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=10.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            self._db.close()
            raise RuntimeError(
                f"{path} was written by a newer polyhost (schema {version}, this one knows "
                f"{SCHEMA_VERSION}); use that version or another --state-dir"
            )
        self._db.executescript(_SCHEMA)  # idempotent; commits on its own
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; a write the disk does not take raises `StoreUnwritable`.

        Whatever fails (a statement, or the COMMIT itself, where a full disk shows first), the
        transaction is rolled back before the error leaves: a transaction left open would make
        every later write fail ("cannot start a transaction within a transaction") even once
        space is freed. SQLite may already have rolled it back itself (it does on SQLITE_FULL),
        hence the `in_transaction` check."""
        with self._lock:
            db = self._db
            if db is None:
                raise StoreClosed("the store is closed")
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                if not _unwritable(error):
                    raise
                full = getattr(error, "sqlite_errorcode", 0) & 0xFF == _SQLITE_FULL
                raise StoreUnwritable(self._folder, full, str(error)) from error

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A single SELECT needs no explicit transaction: it reads one consistent snapshot."""
        with self._lock:
            if self._db is None:
                raise StoreClosed("the store is closed")
            yield self._db

    @staticmethod
    def _row(row: Sequence[Any]) -> Resource:
        kind, name, arn, created, modified, status, doc = row
        return Resource(kind, name, arn, created, modified, status, json.loads(doc))

    _COLUMNS = "kind, name, arn, created, modified, status, doc"

    # -- resources ------------------------------------------------------------------------------
    def insert(self, resource: Resource, tags: Sequence[tuple[str, str]] = ()) -> bool:
        """Add a resource and its tags; False (and nothing written) if the name is taken."""
        key = resource.name.lower()
        with self._transaction() as db:
            try:
                db.execute(
                    "INSERT INTO resources (kind, name_key, name, arn, created, modified, status, "
                    "doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        resource.kind,
                        key,
                        resource.name,
                        resource.arn,
                        resource.created,
                        resource.modified,
                        resource.status,
                        _dump(resource.doc),
                    ),
                )
            except sqlite3.IntegrityError:
                return False
            self._put_tags(db, resource.kind, key, tags)
        return True

    def get(self, kind: Kind, name: str) -> Resource | None:
        with self._read() as db:
            row = db.execute(
                f"SELECT {self._COLUMNS} FROM resources WHERE kind = ? AND name_key = ?",
                (kind, name.lower()),
            ).fetchone()
        return self._row(row) if row else None

    def get_many(self, kind: Kind, names: Sequence[str]) -> dict[str, Resource]:
        """The resources that exist among `names`, keyed by lowercased name (one snapshot)."""
        keys = sorted({n.lower() for n in names})
        if not keys:
            return {}
        marks = ", ".join("?" for _ in keys)
        with self._read() as db:
            rows = db.execute(
                f"SELECT {self._COLUMNS} FROM resources WHERE kind = ? AND name_key IN ({marks})",
                (kind, *keys),
            ).fetchall()
        return {r.name.lower(): r for r in map(self._row, rows)}

    def update(self, resource: Resource) -> bool:
        """Replace status, modified time and document; False if the resource is gone."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE resources SET status = ?, modified = ?, doc = ? "
                "WHERE kind = ? AND name_key = ?",
                (
                    resource.status,
                    resource.modified,
                    _dump(resource.doc),
                    resource.kind,
                    resource.name.lower(),
                ),
            )
            return cursor.rowcount == 1

    def delete(self, kind: Kind, name: str) -> Resource | None:
        """Remove a resource with its tags; returns what was removed (None if nothing)."""
        key = name.lower()
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {self._COLUMNS} FROM resources WHERE kind = ? AND name_key = ?",
                (kind, key),
            ).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM resources WHERE kind = ? AND name_key = ?", (kind, key))
            db.execute("DELETE FROM tags WHERE kind = ? AND name_key = ?", (kind, key))
        return self._row(row)

    def all(self, kind: Kind) -> list[Resource]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT {self._COLUMNS} FROM resources WHERE kind = ? ORDER BY created",
                (kind,),
            ).fetchall()
        return [self._row(r) for r in rows]

    def page(self, kind: Kind, query: PageQuery) -> list[Resource]:
        """Up to `query.limit` resources in order, after the cursor, matching every filter."""
        where = ["kind = ?"]
        args: list[Any] = [kind]
        if query.name_contains:
            where.append("instr(name_key, ?) > 0")
            args.append(query.name_contains.lower())
        for column, op, value in (
            ("created", "<", query.created_before),
            ("created", ">", query.created_after),
            ("modified", "<", query.modified_before),
            ("modified", ">", query.modified_after),
            ("status", "=", query.status),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        direction = "DESC" if query.descending else "ASC"
        column = query.order_by  # one of three literal column names, never user text
        if query.after is not None:
            where.append(f"({column}, name_key) {'<' if query.descending else '>'} (?, ?)")
            args.extend(query.after)
        sql = (
            f"SELECT {self._COLUMNS} FROM resources WHERE {' AND '.join(where)} "
            f"ORDER BY {column} {direction}, name_key {direction} LIMIT ?"
        )
        args.append(query.limit)
        with self._read() as db:
            rows = db.execute(sql, args).fetchall()
        return [self._row(r) for r in rows]

    # -- tags -------------------------------------------------------------------------------
    @staticmethod
    def _put_tags(
        db: sqlite3.Connection, kind: Kind, key: str, tags: Sequence[tuple[str, str]]
    ) -> None:
        row = db.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM tags WHERE kind = ? AND name_key = ?", (kind, key)
        ).fetchone()
        seq = int(row[0])
        for tag_key, value in tags:
            seq += 1
            # An existing key keeps its place and takes the new value.
            db.execute(
                "INSERT INTO tags (kind, name_key, key, value, seq) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, name_key, key) DO UPDATE SET value = excluded.value",
                (kind, key, tag_key, value, seq),
            )

    def tags(self, kind: Kind, name: str) -> list[tuple[str, str]]:
        with self._read() as db:
            rows = db.execute(
                "SELECT key, value FROM tags WHERE kind = ? AND name_key = ? ORDER BY seq",
                (kind, name.lower()),
            ).fetchall()
        return [(str(k), str(v)) for k, v in rows]

    def add_tags(
        self, kind: Kind, name: str, tags: Sequence[tuple[str, str]], limit: int
    ) -> int | None:
        """Add or overwrite tags of an existing resource, keeping at most `limit` in all.

        Returns None when done, else the count the resource would have had (nothing written).
        """
        key = name.lower()
        with self._transaction() as db:
            existing = {
                str(r[0])
                for r in db.execute(
                    "SELECT key FROM tags WHERE kind = ? AND name_key = ?", (kind, key)
                )
            }
            count = len(existing | {k for k, _ in tags})
            if count > limit:
                return count
            self._put_tags(db, kind, key, tags)
        return None

    def delete_tags(self, kind: Kind, name: str, keys: Sequence[str]) -> None:
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM tags WHERE kind = ? AND name_key = ? AND key = ?",
                [(kind, name.lower(), k) for k in keys],
            )

    def next_value(self, counter: str) -> int:
        """1, 2, 3, ... for `counter`, never repeating for the life of the state dir."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, 1) "
                "ON CONFLICT (name) DO UPDATE SET value = value + 1",
                (counter,),
            )
            row = db.execute("SELECT value FROM counters WHERE name = ?", (counter,)).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
