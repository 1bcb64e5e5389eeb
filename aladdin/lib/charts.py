"""Daily charts as the pages draw them (static/js/charts.js, Chart.js): one shape for all.

A view builds the chart's data here and passes it to ``json_script``; the
page's ``<canvas data-chart="<that id>" data-table="<the table's id>">`` is
drawn by ``charts.js``. Values stay exact decimal strings (DCU from µDCU):
the script turns them into numbers only to draw.
"""

from __future__ import annotations

from dataclasses import dataclass

# The portal's palette: compute, storage, fees.
INDIGO = "#4f46e5"
TEAL = "#0d9488"
AMBER = "#d97706"


@dataclass(frozen=True)
class Series:
    label: str
    values: list[str] | list[float]
    color: str = INDIGO
    type: str = "bar"  # or "line"
    axis: str = "y"


def daily_chart(
    labels: list[str],
    series: list[Series],
    *,
    axes: dict[str, tuple[str, str]] | None = None,
    stacked: bool = False,
) -> dict:
    """The json_script data: ``axes`` maps an axis id to (title, "left"|"right"); default one DCU axis."""
    axes = axes or {"y": ("DCU", "left")}
    return {
        "labels": labels,
        "series": [
            {"label": s.label, "values": s.values, "color": s.color, "type": s.type, "axis": s.axis}
            for s in series
        ],
        "axes": {key: {"title": title, "position": side} for key, (title, side) in axes.items()},
        "stacked": stacked,
    }
