"""Statistics and side-by-side tables shared by the benchmark scripts.

Each script measures a dict of named numbers per column (floor, kgd,
reference); a column that was not run shows ``n/a`` so tables always have the
same shape and can be compared between runs.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

Metrics = dict[str, float]


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in (0, 100]."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def round_tag(size: int, run: int, runs: int) -> str:
    """How a row names one round of a benchmark at one size: ``1000``, or ``1000 #2`` when rounds repeat."""
    return str(size) if runs == 1 else f"{size} #{run}"


def round_tags(sizes: Sequence[int], runs: int) -> list[str]:
    return [round_tag(size, run, runs) for size in sizes for run in range(1, runs + 1)]


def describe_failure(exc: BaseException) -> str:
    """A failure's kind, short enough to count identical ones together."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:80]}" if text else type(exc).__name__


def print_failures(failures: dict[str, Counter[str]]) -> None:
    """Per column, how many operations failed in which way (or that none did)."""
    for name, kinds in failures.items():
        if not kinds:
            print(f"  {name}: no failures")
            continue
        print(f"  {name} failures:")
        for kind, count in sorted(kinds.items()):
            print(f"    {count:6d} x {kind}")


@dataclass(frozen=True)
class Row:
    """A table row: its label, the metric key it shows and the number format."""

    label: str
    key: str
    fmt: str = "{:.1f}"


def print_table(title: str, columns: dict[str, Metrics | None], rows: Sequence[Row]) -> None:
    """Print ``rows`` for each column; a None column or missing key prints n/a."""
    header = ["", *columns]
    lines = [header]
    for row in rows:
        lines.append([row.label, *(_cell(metrics, row) for metrics in columns.values())])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    print(f"\n{title}")
    for index, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(line[1:], widths[1:])]
        print("  " + " | ".join(cells))
        if index == 0:
            print("  " + "-+-".join("-" * w for w in widths))


def _cell(metrics: Metrics | None, row: Row) -> str:
    if metrics is None or row.key not in metrics:
        return "n/a"
    return row.fmt.format(metrics[row.key])
