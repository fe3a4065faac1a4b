"""The statistics of one series over one interval, and how intervals merge.

A cell is what CloudWatch calls a statistic set (SampleCount, Sum, Minimum, Maximum) plus,
when the metric's kind needs it, the fine bucket counts of `metrics/sketch.py` for
percentiles. Buckets are left out wherever they are implied, which is most of the time: a
BINARY cell's values are count - sum zeros and sum ones, and a cell whose minimum equals its
maximum holds `count` copies of one value. That keeps idle and sampled series small in memory
and on disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from polyhost.metrics import sketch
from polyhost.metrics.catalog import Kind


@dataclass(slots=True)
class Cell:
    count: int
    total: float
    minimum: float
    maximum: float
    buckets: dict[int, int] | None = None  # None: implied (see module docstring)

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
    """The cell's bucket counts, made explicit where they are implied."""
    if cell.buckets is not None:
        return cell.buckets
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


def merge(cells: list[Cell], kind: Kind, with_buckets: bool) -> Cell:
    """One cell for all of `cells` (not empty); buckets only when `with_buckets`."""
    first = cells[0]
    if len(cells) == 1 and not with_buckets:
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


def percentile(cell: Cell, kind: Kind, percent: float) -> float:
    """The value at `percent` (0-100), exact for BINARY and single-valued cells, else within
    `sketch.RELATIVE_ERROR`."""
    if cell.count <= 0:
        return math.nan
    if cell.minimum == cell.maximum:
        return cell.minimum
    if kind is Kind.BINARY:
        zeros = cell.count - cell.total
        return 0.0 if zeros > percent / 100.0 * (cell.count - 1) else 1.0
    return sketch.percentile(buckets_of(cell, kind), percent, cell.minimum, cell.maximum)
