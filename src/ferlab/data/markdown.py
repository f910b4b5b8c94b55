"""One Markdown table builder for every report ferlab writes (EDA, audit, metrics, run tables, benchmarks)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[object], rows: Iterable[Sequence[object]], right: Iterable[int] = ()) -> str:
    """A Markdown table, one line per row; the columns whose indices are in `right` (numbers,
    usually) are right-aligned. Cells are written with str(); a `|` inside a cell is escaped."""
    aligned = set(right)

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    rule = "|" + "".join("---:|" if i in aligned else "---|" for i in range(len(header)))
    return "\n".join([line(header), rule, *(line(row) for row in rows)])
