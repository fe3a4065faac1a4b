"""The durable queue of InvokeEndpointAsync requests: one SQLite file in the state dir.

A request is committed before its 202 is sent, so an accepted request survives kill -9 and a
restart. Its key is (endpoint, InferenceId): the same id sent twice is one request, and its
answer one object. Rows go `queued` → `running` → `done` or `failed`; a row found `running`
when the queue opens was cut short by a crash and is queued again, marked `recovered`, so the
worker first looks whether its answer already reached S3 before running it again (the object's
key is the inference id: an answer is written once). Requests leave in order per endpoint
(`seq`); a finished row is kept a day, so a repeated InferenceId still finds it.

Every call is a short transaction under one lock, made from worker threads (`asyncio.to_thread`)
so the event loop never waits on a disk flush.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint TEXT NOT NULL,
    inference_id TEXT NOT NULL,
    input_location TEXT NOT NULL,
    content_type TEXT,
    accept TEXT,
    custom_attributes TEXT,
    received REAL NOT NULL,
    expires REAL NOT NULL,
    timeout_s REAL NOT NULL,
    output_location TEXT NOT NULL,
    failure_location TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    recovered INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    reason TEXT,
    finished REAL,
    UNIQUE (endpoint, inference_id)
);
CREATE INDEX IF NOT EXISTS requests_waiting ON requests (state, endpoint, seq);
"""
KEEP_FINISHED_S = 86_400.0
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


@dataclass(frozen=True)
class AsyncRequest:
    """One accepted request, as stored."""

    endpoint: str
    inference_id: str
    input_location: str
    content_type: str | None
    accept: str | None
    custom_attributes: str | None
    received: float  # time.time() when accepted
    expires: float  # received + RequestTTLSeconds
    timeout_s: float  # InvocationTimeoutSeconds
    output_location: str
    failure_location: str
    seq: int = 0
    recovered: bool = False


class QueueFull(Exception):
    """The endpoint already holds as many requests as the server allows."""


_COLUMNS = (
    "endpoint, inference_id, input_location, content_type, accept, custom_attributes, received, "
    "expires, timeout_s, output_location, failure_location"
)


class AsyncQueue:
    def __init__(self, path: Path, max_per_endpoint: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._max = max_per_endpoint
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        with self._lock:
            # Cut short by a crash: queued again, checked against S3 before it runs.
            self._db.execute(
                "UPDATE requests SET state=?, recovered=1 WHERE state=?", (QUEUED, RUNNING)
            )
            self._db.execute(
                "DELETE FROM requests WHERE state IN (?, ?) AND finished < ?",
                (DONE, FAILED, time.time() - KEEP_FINISHED_S),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, request: AsyncRequest) -> AsyncRequest:
        """Commit `request`, or return the one already stored under its inference id (whose
        locations the caller is answered with). Raises QueueFull past the endpoint's bound."""
        with self._lock:
            existing = self._one(
                f"SELECT {_COLUMNS}, seq, recovered FROM requests "
                "WHERE endpoint=? AND inference_id=?",
                (request.endpoint, request.inference_id),
            )
            if existing is not None:
                return existing
            (waiting,) = self._db.execute(
                "SELECT COUNT(*) FROM requests WHERE endpoint=? AND state IN (?, ?)",
                (request.endpoint, QUEUED, RUNNING),
            ).fetchone()
            if waiting >= self._max:
                raise QueueFull(request.endpoint)
            cursor = self._db.execute(
                f"INSERT INTO requests ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request.endpoint,
                    request.inference_id,
                    request.input_location,
                    request.content_type,
                    request.accept,
                    request.custom_attributes,
                    request.received,
                    request.expires,
                    request.timeout_s,
                    request.output_location,
                    request.failure_location,
                ),
            )
            seq = int(cursor.lastrowid or 0)
        return AsyncRequest(**{**request.__dict__, "seq": seq})

    def endpoints_waiting(self, now: float) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT endpoint FROM requests WHERE state=? AND not_before<=?",
                (QUEUED, now),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def take(self, endpoint: str, count: int, now: float) -> list[AsyncRequest]:
        """Up to `count` of the endpoint's oldest queued requests, marked running. A request
        put back for later holds the ones behind it, so they leave in order."""
        if count <= 0:
            return []
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS}, seq, recovered, not_before FROM requests "
                "WHERE state=? AND endpoint=? ORDER BY seq LIMIT ?",
                (QUEUED, endpoint, count),
            ).fetchall()
            ready: list[AsyncRequest] = []
            for row in rows:
                if float(row[13]) > now:
                    break
                ready.append(self._request(row))
            if ready:
                self._db.executemany(
                    "UPDATE requests SET state=? WHERE seq=?", [(RUNNING, r.seq) for r in ready]
                )
        return ready

    def retry_later(self, seq: int, not_before: float) -> None:
        """Back in the queue, where it was, not to run before `not_before`."""
        with self._lock:
            self._db.execute(
                "UPDATE requests SET state=?, not_before=? WHERE seq=?", (QUEUED, not_before, seq)
            )

    def finish(self, seq: int, ok: bool, reason: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE requests SET state=?, reason=?, finished=? WHERE seq=?",
                (DONE if ok else FAILED, reason, time.time(), seq),
            )

    def backlog(self) -> dict[str, tuple[int, float]]:
        """Per endpoint with requests queued or running: how many there are and when the oldest
        of them was accepted (time.time()). One aggregate over the `requests_waiting` index's
        two states, sampled every 10 s for the backlog metrics and the dashboard: it reads
        the rows that wait, never the day of finished ones kept beside them."""
        with self._lock:
            rows = self._db.execute(
                "SELECT endpoint, COUNT(*), MIN(received) FROM requests "
                "WHERE state IN (?, ?) GROUP BY endpoint",
                (QUEUED, RUNNING),
            ).fetchall()
        return {str(name): (int(count), float(oldest)) for name, count, oldest in rows}

    def state(self, endpoint: str, inference_id: str) -> tuple[str, str | None] | None:
        """(state, reason) of a request; None when there is none."""
        with self._lock:
            row = self._db.execute(
                "SELECT state, reason FROM requests WHERE endpoint=? AND inference_id=?",
                (endpoint, inference_id),
            ).fetchone()
        return None if row is None else (str(row[0]), row[1])

    def _one(self, sql: str, args: tuple[object, ...]) -> AsyncRequest | None:
        row = self._db.execute(sql, args).fetchone()
        return None if row is None else self._request(row)

    @staticmethod
    def _request(row: tuple[object, ...]) -> AsyncRequest:
        return AsyncRequest(
            endpoint=str(row[0]),
            inference_id=str(row[1]),
            input_location=str(row[2]),
            content_type=None if row[3] is None else str(row[3]),
            accept=None if row[4] is None else str(row[4]),
            custom_attributes=None if row[5] is None else str(row[5]),
            received=float(row[6]),  # type: ignore[arg-type]
            expires=float(row[7]),  # type: ignore[arg-type]
            timeout_s=float(row[8]),  # type: ignore[arg-type]
            output_location=str(row[9]),
            failure_location=str(row[10]),
            seq=int(row[11]),  # type: ignore[call-overload]
            recovered=bool(row[12]),
        )
