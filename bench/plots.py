"""PNG plots of the results (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def grouped_bars(
    ax: Axes,
    groups: Sequence[str],
    series: dict[str, Sequence[float]],
    ylabel: str,
    title: str,
    log: bool = False,
) -> None:
    """One cluster of bars per group, one bar per series, values printed on the bars."""
    count = max(1, len(series))
    width = 0.8 / count
    for index, (name, values) in enumerate(series.items()):
        offsets = [g + (index - (count - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(offsets, values, width, label=name)
        ax.bar_label(bars, labels=[_short(v) for v in values], fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _short(value: float) -> str:
    if value != value:
        return ""
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.2f}"


def lines(
    ax: Axes,
    x_label: str,
    y_label: str,
    title: str,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    log_y: bool = False,
) -> None:
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    if log_y:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def figure(columns: int = 2, width: float = 11.0, height: float = 4.2) -> tuple[Figure, list[Axes]]:
    fig, axes = plt.subplots(1, columns, figsize=(width, height))
    return fig, list(axes) if columns > 1 else [axes]


def save(fig: Figure, path: Path, title: str) -> None:
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
