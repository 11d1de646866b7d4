"""Charts drawn on the server as SVG: no script, no library, readable without colour."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

BAR_HEIGHT = 18
GAP = 6
LABEL_WIDTH = 220
CHART_WIDTH = 640


def bar_chart(
    rows: Sequence[Sequence[object]], *, label: int, value: int, title: str, limit: int = 20
) -> Markup:
    """A horizontal bar per row: ``rows[i][label]`` and a bar as long as ``rows[i][value]`` (None counts 0)."""
    shown = list(rows)[:limit]
    numbers = [float(row[value] or 0) for row in shown]
    top = max(numbers, default=0) or 1
    height = len(shown) * (BAR_HEIGHT + GAP) + GAP
    bars = []
    for index, (row, number) in enumerate(zip(shown, numbers, strict=True)):
        y = GAP + index * (BAR_HEIGHT + GAP)
        width = (CHART_WIDTH - LABEL_WIDTH - 60) * number / top
        text = escape(str(row[label])[:40])
        bars.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 13}" text-anchor="end">{text}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}" class="bar"/>'
            f'<text x="{LABEL_WIDTH + width + 6:.1f}" y="{y + 13}">{escape(_number(number))}</text>'
        )
    return Markup(
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {CHART_WIDTH} {max(height, 30)}" '
        f'width="{CHART_WIDTH}" height="{max(height, 30)}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(bars)
        + "</svg>"
    )


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"
