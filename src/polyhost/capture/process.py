"""The data capture writer process: formats captured invocations and writes them to S3.

The server starts it (`writer.CaptureWriter`) as `python -m polyhost.capture.process FD
[ROLE_CREDENTIALS]` with one end of a socket pair as FD. Formatting a record and botocore's
calls are pure Python under the GIL: in the server's process they kept the event loop waiting
and cost it about as much CPU as serving the invocation itself. Here they run on their own
interpreter, and the server's share of a captured invocation is queueing a tuple.

Messages are `marshal`led tuples, framed by `multiprocessing.connection` (server -> here):

- `("W", [role, ...])`: make the S3 clients of these roles now (importing boto3 and building
  a client is about half a second of CPU), before records arrive;
- `("B", [target, ...])`: the targets (`CaptureTarget.wire`) the rows that follow name by
  serial. Each handful of rows brings its own, so nothing here outlives a batch or a restart;
- `("R", [row, ...])`: rows of the batch (`record.Row`), formatted as they arrive;
- `("F",)`: the batch is complete: its objects are written (one per target, variant and
  hour), and `("D", [(endpoint, variant, bucket, records, reason or None), ...])` answers;
- `("S",)`: as `F`, then exit.

At most one batch is held here (the server's buffer bounds it). The role credentials are read
here from the server's `--role-credentials` file; they never cross the socket, and nothing
here prints a credential: a failure's reason is S3's error code, or the error's class.

SIGINT and SIGTERM are ignored (a terminal's Ctrl-C, or a service manager signalling the whole
group, must not lose the last batch): the server's `S`, or the socket's end when the server is
gone, ends this process, once what it holds is written.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import signal
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from polyhost.asyncinf.credentials import AwsClients, CredentialsUnavailable
from polyhost.backends.role_credentials import (
    RoleCredentials,
    RoleCredentialsError,
    load_role_credentials,
)
from polyhost.capture.config import TargetWire
from polyhost.capture.record import RecordFormat, Row, event_ids, object_key

log = logging.getLogger("polyhost.capture.process")

# Seconds one S3 call may take.
WRITE_TIMEOUT_S = 30.0
# (endpoint, variant, bucket, records, reason): one object's outcome; reason None is written.
Outcome = tuple[str, str, str, int, str | None]


class Destination:
    """One target of the batch: where its rows go and how they are formatted."""

    def __init__(self, wire: TargetWire) -> None:
        self.serial, self.endpoint, self.bucket, self.prefix, self.roles, csv, js = wire
        self.format = RecordFormat(frozenset(csv), frozenset(js))


class BatchWriter:
    """Formats one batch's rows as they arrive and writes its objects at the end."""

    def __init__(self, clients: AwsClients, unusable: str | None = None) -> None:
        self._clients = clients
        # Why no record can be written (the role credentials could not be loaded): each
        # batch fails with it rather than this process dying at every restart.
        self._unusable = unusable
        self._targets: dict[int, Destination] = {}
        # (serial, variant, hour) -> (first row's time, its lines, how many). One growing
        # buffer per object rather than a list of lines: each line's memory is reused at once,
        # where thousands of lines kept apart fault in fresh pages (half the formatting cost).
        self._objects: dict[tuple[int, str, int], tuple[float, bytearray, list[int]]] = {}
        self._orphans: dict[int, int] = {}  # serial -> rows whose target was not sent (a bug)

    def warm(self, roles: list[str | None]) -> None:
        for role in roles:
            with contextlib.suppress(CredentialsUnavailable):  # said when a batch fails
                self._clients.client("s3", role)

    def begin(self, targets: list[TargetWire]) -> None:
        """Targets of the rows that follow (one already known keeps its formatting caches)."""
        known = self._targets
        for wire in targets:
            if wire[0] not in known:
                known[wire[0]] = Destination(wire)

    def add(self, rows: list[Row]) -> None:
        objects, targets = self._objects, self._targets
        events = event_ids(len(rows))
        for row, event in zip(rows, events, strict=True):
            serial = row[0]
            target = targets.get(serial)
            if target is None:
                self._orphans[serial] = self._orphans.get(serial, 0) + 1
                continue
            at = row[2]
            key = (serial, row[1], int(at) // 3600)
            kept = objects.get(key)
            if kept is None:
                kept = objects[key] = (at, bytearray(), [0])
            kept[1].extend(target.format.line(row, event))
            kept[2][0] += 1

    def write(self) -> list[Outcome]:
        """Write the batch's objects; what became of each. The batch is forgotten after."""
        objects, self._objects = self._objects, {}
        targets, self._targets = self._targets, {}
        outcomes: list[Outcome] = []
        for (serial, variant, _), (at, body, (count,)) in objects.items():
            target = targets[serial]
            reason = self._unusable or self._put(target, variant, at, body)
            body.clear()  # given back before the next object is sent
            outcomes.append((target.endpoint, variant, target.bucket, count, reason))
        for serial, count in self._orphans.items():
            log.error("data capture: %d rows named target %d, which was not sent", count, serial)
        self._orphans = {}
        return outcomes

    def _put(self, target: Destination, variant: str, at: float, body: bytearray) -> str | None:
        """Write one object; None when S3 took it, else why not (no secret)."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = object_key(target.prefix, target.endpoint, variant, at)
        try:
            client: Any = self._clients.client("s3", target.roles.get(variant))
            client.put_object(
                Bucket=target.bucket, Key=key, Body=body, ContentType="application/jsonl"
            )
        except (BotoCoreError, ClientError, CredentialsUnavailable) as error:
            return reason(error)
        except Exception as error:  # a bug must not end the batch's other objects
            log.exception("data capture: writing an object failed")
            return f"internal error ({type(error).__name__})"
        return None


def reason(error: Exception) -> str:
    """S3's error code and message, or the error's class: what went wrong, never a secret."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        details = response.get("Error", {})
        return f"{details.get('Code', 'Error')}: {details.get('Message', '')}".rstrip(": ")
    if isinstance(error, CredentialsUnavailable):
        return str(error)
    return type(error).__name__


def serve(connection: Connection, writer: BatchWriter) -> None:
    """Answer the server's messages until `S`, or until the server is gone."""
    while True:
        try:
            message = marshal.loads(connection.recv_bytes())
        except (EOFError, OSError):  # the server is gone: write what is held, then end
            writer.write()
            return
        kind = message[0]
        if kind == "R":
            writer.add(message[1])
        elif kind == "B":
            writer.begin(message[1])
        elif kind in ("F", "S"):
            outcomes = writer.write()
            with contextlib.suppress(OSError):
                connection.send_bytes(marshal.dumps(("D", outcomes)))
            if kind == "S":
                return
        elif kind == "W":
            writer.warm(message[1])


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Its own errors only (botocore's chatter stays out of the server's log): what goes
    # wrong with S3 reaches the server as a reason, logged there once per burst.
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    connection = Connection(int(argv[0]))
    unusable = None
    roles = RoleCredentials({})
    if len(argv) > 1:
        try:
            roles = load_role_credentials(Path(argv[1]))
        except RoleCredentialsError as error:  # names the file and the role, no secret
            unusable = str(error)
    serve(connection, BatchWriter(AwsClients(roles, WRITE_TIMEOUT_S), unusable))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
