"""Column widths measured in the table's own font, so that no header and no expected value is
cut, whatever the font, DPI or style (fixed pixel widths cut "Review" and "Error type" off at
the default window size)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import QStyle, QTableView

# Room around a cell's text (the style's margins) and beside a header's (its sort arrow).
CELL_PADDING = 14
HEADER_PADDING = 24


def column_widths(view: QTableView, headers: Sequence[str], samples: Sequence[Sequence[str]]) -> list[int]:
    """Per column, the width of its header or of its widest sample text, whichever is wider."""
    cells, header_font = view.fontMetrics(), view.horizontalHeader().fontMetrics()
    return [max([header_font.horizontalAdvance(h) + HEADER_PADDING]
                + [cells.horizontalAdvance(t) + CELL_PADDING for t in texts])
            for h, texts in zip(headers, samples)]


def table_width(view: QTableView, widths: Sequence[int]) -> int:
    """The width a table with these columns needs to show them all without scrolling sideways."""
    scrollbar = view.style().pixelMetric(QStyle.PM_ScrollBarExtent)
    return sum(widths) + scrollbar + 2 * view.frameWidth()
