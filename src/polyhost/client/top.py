"""`polyhost top`: every container's numbers, live in the terminal, refreshed every second.

It reads the admin listener's `/api/containers` (the same numbers as the dashboard: requests/s,
error rate and p50/p99 latency over the last minute from the metric history, CPU and memory as
sampled now) and draws them with rich, sorted by the column asked for and optionally narrowed
to one endpoint. Names are shown through `client/terminal.visible`, as `polyhost logs` shows a
container's output: a terminal never receives a control character from the server.

It ends cleanly, status 0 with one line saying why, when the user presses Ctrl-C or the server
goes away (stopped, restarted): a monitor outliving what it watches is not an error. Failing to
reach the server at all, or being refused (a wrong token), is: status 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from polyhost.client.admin import AdminClient, AdminRefused, AdminUnreachable
from polyhost.client.errors import EXIT_FAILURE, CommandFailed
from polyhost.client.terminal import visible

Row = dict[str, Any]


def _number(key: str) -> Callable[[Row], float]:
    def value(row: Row) -> float:
        found = row.get(key)
        return float(found) if isinstance(found, int | float) else -1.0

    return value


# --sort key -> what orders the rows (largest first); a missing number sorts last.
SORT_KEYS: dict[str, Callable[[Row], float]] = {
    "requests": _number("requests_per_s"),
    "errors": _number("error_rate"),
    "p99": _number("p99_ms"),
    "cpu": _number("cpu_percent"),
    "memory": _number("rss_bytes"),
}


def _fixed(value: Any, digits: int, scale: float = 1.0, suffix: str = "") -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value * scale:.{digits}f}{suffix}"


def _bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "-"  # pragma: no cover - the loop always returns


def _name(row: Row, key: str) -> str:
    """A name from the server, as a terminal may show it: rich drops a few control characters
    (BEL, CR, ...) but passes ESC on, so escape sequences are made visible first."""
    return visible(str(row.get(key, "")))


def select(rows: list[Row], sort: str, endpoint: str | None) -> list[Row]:
    """The rows to show: one endpoint's or all, largest first by `sort`, then by name."""
    if endpoint is not None:
        rows = [r for r in rows if r.get("endpoint") == endpoint]
    ordered = sorted(
        rows, key=lambda r: (r.get("endpoint", ""), r.get("variant", ""), r.get("hostname", ""))
    )
    return sorted(ordered, key=SORT_KEYS[sort], reverse=True)


def render(answer: dict[str, Any], url: str, sort: str, endpoint: str | None) -> Table:
    rows = select(list(answer.get("containers", [])), sort, endpoint)
    scope = f"endpoint {endpoint}" if endpoint else "all endpoints"
    caption = f"{len(rows)} container(s), {scope}, sorted by {sort} · Ctrl-C to quit"
    if not answer.get("history", True):
        caption += " · this server keeps no metric history: no rates or latencies"
    table = Table(title=f"polyhost top · {url}", caption=caption, expand=True)
    for name, justify in (
        ("ENDPOINT", "left"), ("VARIANT", "left"), ("INSTANCE", "left"), ("CONTAINER", "left"),
        ("STATUS", "left"), ("RESTARTS", "right"), ("REQ/S", "right"), ("ERR%", "right"),
        ("P50 ms", "right"), ("P99 ms", "right"), ("CPU%", "right"), ("MEM%", "right"),
        ("RSS", "right"),
    ):  # fmt: skip
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in rows:
        up = bool(row.get("up"))
        table.add_row(
            _name(row, "endpoint"),
            _name(row, "variant"),
            _name(row, "instance"),
            _name(row, "hostname"),
            Text("up", style="green") if up else Text("down", style="bold red"),
            str(row.get("restarts", 0)),
            _fixed(row.get("requests_per_s"), 1),
            _fixed(row.get("error_rate"), 1, 100.0),
            _fixed(row.get("p50_ms"), 1),
            _fixed(row.get("p99_ms"), 1),
            _fixed(row.get("cpu_percent"), 0),
            _fixed(row.get("memory_percent"), 1),
            _bytes(row.get("rss_bytes")),
        )
    if not rows:
        table.add_row("(no containers: deploy an endpoint with `polyhost deploy`)")
    return table


def top(
    client: AdminClient,
    out: TextIO,
    *,
    sort: str = "requests",
    endpoint: str | None = None,
    interval_s: float = 1.0,
) -> int:
    """Show the table until Ctrl-C or the server goes away; returns the exit status."""
    console = Console(file=out)
    try:
        answer = client.get_json("/api/containers")
    except AdminUnreachable as error:
        raise CommandFailed(
            f"cannot reach the admin listener at {client.url}: is `polyhost serve` running, "
            f"with --admin-port? ({error})"
        ) from None
    except AdminRefused as error:
        raise CommandFailed(f"{client.url} refused: {error.message}", EXIT_FAILURE) from None
    reason = "stopped"
    try:
        with Live(console=console, auto_refresh=False, screen=True) as live:
            while True:
                live.update(render(answer, client.url, sort, endpoint), refresh=True)
                time.sleep(interval_s)
                try:
                    answer = client.get_json("/api/containers")
                except AdminUnreachable:
                    reason = f"the server at {client.url} went away"
                    break
    except KeyboardInterrupt:
        pass
    except AdminRefused as error:
        raise CommandFailed(f"{client.url} refused: {error.message}", EXIT_FAILURE) from None
    console.print(f"polyhost top: {reason}")
    return 0
