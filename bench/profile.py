"""Where the server's time goes: py-spy sampling a running process while load is applied.

`py-spy record --format raw` writes collapsed stacks ("frame;frame;... COUNT", each frame
`function (file:line)`); the table it yields here is the share of samples per innermost frame
(self time), plus each of polyhost's own functions including what it calls (total), so a
hotspot comes with its file and line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Innermost frames of threads that wait for work: py-spy does not always see them as idle, and
# they are no hotspot. (A thread-pool worker blocked in its queue, a thread in Event.wait.)
_IDLE = (
    "_worker (concurrent/futures/thread.py",
    "wait (threading.py",
    "_Workers._next (polyhost/stacks/toolkit/server.py",  # a stack's worker awaiting a request
)

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?):(?P<line>\d+)\)$")


def py_spy() -> str | None:
    """py-spy next to this interpreter (the project's .venv) or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@dataclass(frozen=True)
class Hotspot:
    frame: str
    self_pct: float
    total_pct: float


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    file = match.group("file")
    for marker in ("/site-packages/", "/src/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({file}:{match.group('line')})"


def start(
    pid: int, seconds: float, out: Path, subprocesses: bool = False
) -> subprocess.Popen[bytes] | None:
    """Start sampling `pid` for `seconds`; None without py-spy. Each sample pauses the process
    for a moment (py-spy's default): a profile run is not a measured run, and non-blocking
    sampling reads torn stacks under load."""
    tool = py_spy()
    if tool is None:
        return None
    command = [
        tool,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, int(seconds))),
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    if subprocesses:
        command.append("--subprocesses")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen[bytes], out: Path, top: int = 12) -> list[Hotspot]:
    _, stderr = process.communicate(timeout=120)
    if not out.exists():
        raise RuntimeError(f"py-spy wrote no profile: {stderr.decode(errors='replace')[-800:]}")
    return hotspots(out.read_text(encoding="utf-8", errors="replace"), top)


def _samples(collapsed: str) -> Iterator[tuple[list[str], list[str], int]]:
    """(frames shortened, raw frames, count) per busy stack; waiting threads left out."""
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        raw = [f for f in stack.split(";") if f.strip()]
        frames = [_short(f) for f in raw]
        if frames and not frames[-1].startswith(_IDLE):
            yield frames, raw, int(count_text)


def hotspots(collapsed: str, top: int = 12) -> list[Hotspot]:
    """The `top` innermost frames by share of busy samples (self), with their inclusive share."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for frames, _, count in _samples(collapsed):
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    if samples == 0:
        return []
    return [
        Hotspot(frame, 100.0 * count / samples, 100.0 * total[frame] / samples)
        for frame, count in own.most_common(top)
    ]


def _process_label(frame: str) -> str:
    """`process 937:"/x/bin/python -m polyhost.stacks.pytorch"` -> `polyhost.stacks.pytorch
    (pid 937)`: the module or program, without interpreter paths and arguments."""
    pid, _, command = frame.strip()[len("process ") :].partition(":")
    parts = command.strip('"').split()
    if "-m" in parts[:-1]:
        at = parts.index("-m") + 1
        following = parts[at + 1] if len(parts) > at + 1 else "-"
        name = parts[at] if following.startswith("-") else f"{parts[at]} {following}"
    elif parts:
        name = parts[min(1, len(parts) - 1)].rsplit("/", 1)[-1]
    else:
        name = "?"
    return f"{name} (pid {pid})"


def processes(collapsed: str) -> list[tuple[str, float]]:
    """Share of busy samples per process, for a profile taken with `--subprocesses`: each stack
    counts to the innermost process label on it (a child's stack carries its parents' too)."""
    shares: Counter[str] = Counter()
    samples = 0
    for _, raw, count in _samples(collapsed):
        samples += count
        labels = [f for f in raw if f.strip().startswith("process ")]
        if labels:
            shares[_process_label(labels[-1])] += count
    return [(name, 100.0 * n / max(samples, 1)) for name, n in shares.most_common()]


def inclusive(collapsed: str, needle: str, top: int = 12) -> list[tuple[str, float]]:
    """Frames whose text contains `needle` (e.g. 'polyhost/'), by inclusive share of samples."""
    total: Counter[str] = Counter()
    samples = 0
    for frames, _, count in _samples(collapsed):
        samples += count
        for frame in set(frames):
            if needle in frame:
                total[frame] += count
    return [(frame, 100.0 * n / max(samples, 1)) for frame, n in total.most_common(top)]
