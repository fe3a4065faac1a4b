"""The statistics of one series over one interval, and how intervals merge.

A cell is what CloudWatch calls a statistic set (SampleCount, Sum, Minimum, Maximum) plus,
when the metric's kind needs it, the fine bucket counts of `metrics/sketch.py` for
percentiles. Buckets are left out wherever they are implied, which is most of the time: a
BINARY cell's values are count - sum zeros and sum ones, and a cell whose minimum equals its
maximum holds `count` copies of one value. That keeps idle and sampled series small in memory
and on disk.

A cell read from memory or disk keeps its buckets encoded (`encoded`) until something needs
them as a map: a period made of one stored cell answers its percentiles from the bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from polyhost.metrics import sketch
from polyhost.metrics.catalog import Kind


@dataclass(slots=True)
class Cell:
    count: int
    total: float
    minimum: float
    maximum: float
    buckets: dict[int, int] | None = None  # None: implied (see module docstring) or encoded
    encoded: bytes | None = None  # the buckets as `sketch.encode` wrote them, not yet decoded

    @classmethod
    def of_value(cls, value: float) -> Cell:
        return cls(1, value, value, value)

    @classmethod
    def of_binary(cls, count: int, ones: int) -> Cell:
        """`count` values of which `ones` are 1 and the rest 0 (needs 0 < count, ones <= count)."""
        return cls(count, float(ones), 0.0 if ones < count else 1.0, 1.0 if ones else 0.0)

    @property
    def average(self) -> float:
        return self.total / self.count if self.count else math.nan


def buckets_of(cell: Cell, kind: Kind) -> dict[int, int]:
    """The cell's bucket counts, made explicit where they are implied or encoded."""
    if cell.buckets is not None:
        return cell.buckets
    if cell.encoded is not None:
        return sketch.decode(cell.encoded)
    if cell.count <= 0:
        return {}
    if kind is Kind.BINARY:
        zeros = round(cell.count - cell.total)
        out: dict[int, int] = {}
        if zeros > 0:
            out[sketch.ZERO_KEY] = zeros
        if cell.count - zeros > 0:
            out[sketch.bucket_key(1.0)] = cell.count - zeros
        return out
    return {sketch.bucket_key(cell.minimum): cell.count}


def stored_buckets(cell: Cell, kind: Kind) -> dict[int, int] | None:
    """What a cell must keep of its buckets: None where they are implied, else at most
    `sketch.MAX_STORED_BUCKETS` of them."""
    if kind is Kind.BINARY or cell.count <= 1 or cell.minimum == cell.maximum:
        return None
    return sketch.collapse(buckets_of(cell, kind))


def stored_bytes(cell: Cell, kind: Kind, running: bool = False) -> bytes | None:
    """`stored_buckets`, encoded (`running`: with running counts, see `sketch.encode`),
    reusing the encoding a cell read back already has when it is the same kind."""
    if kind is Kind.BINARY or cell.count <= 1 or cell.minimum == cell.maximum:
        return None
    encoded = cell.encoded
    if cell.buckets is None and encoded is not None and sketch.is_running(encoded) == running:
        return encoded
    buckets = stored_buckets(cell, kind)
    return None if buckets is None else sketch.encode(buckets, running)


def merge(cells: Sequence[Cell], kind: Kind, with_buckets: bool) -> Cell:
    """One cell for all of `cells` (not empty); buckets only when `with_buckets`."""
    first = cells[0]
    if len(cells) == 1:
        return first
    merged = Cell(0, 0.0, math.inf, -math.inf)
    buckets: dict[int, int] | None = {} if with_buckets else None
    for cell in cells:
        merged.count += cell.count
        merged.total += cell.total
        merged.minimum = min(merged.minimum, cell.minimum)
        merged.maximum = max(merged.maximum, cell.maximum)
        if buckets is not None:
            sketch.merge_into(buckets, buckets_of(cell, kind))
    merged.buckets = buckets
    return merged


def percentiles(cell: Cell, kind: Kind, percents: Sequence[float]) -> dict[float, float]:
    """The value at each of `percents` (0-100): exact for BINARY and single-valued cells, else
    within `sketch.RELATIVE_ERROR`."""
    if not percents:
        return {}
    if cell.count <= 0:
        return {p: math.nan for p in percents}
    if cell.minimum == cell.maximum:
        return {p: cell.minimum for p in percents}
    if kind is Kind.BINARY:
        zeros = cell.count - cell.total
        return {p: 0.0 if zeros > p / 100.0 * (cell.count - 1) else 1.0 for p in percents}
    if cell.buckets is None and cell.encoded is not None:
        values = sketch.percentiles_encoded(cell.encoded, percents, cell.minimum, cell.maximum)
        return dict(zip(percents, values, strict=True))
    buckets = buckets_of(cell, kind)
    return {p: sketch.percentile(buckets, p, cell.minimum, cell.maximum) for p in percents}


def percentile(cell: Cell, kind: Kind, percent: float) -> float:
    return percentiles(cell, kind, (percent,))[percent]
