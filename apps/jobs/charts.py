"""Small server-side SVG line charts for the Director pages (no chart library, no JavaScript)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from django.utils.safestring import SafeString, mark_safe

# Okabe-Ito colours stay distinct for the common colour-vision deficiencies; dash patterns and
# markers keep the series apart in forced-colours mode, where every stroke becomes one colour.
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9")
DASHES = ("", "7 4", "2 3", "9 3 2 3")
MARKER_LIMIT = 60
VALUE_LIMIT = 1e300
MAX_TICKS = 12
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_BOTTOM, MARGIN_TOP = 64, 16, 44, 10
LEGEND_ROW = 18
X_INSET = 8
CHAR_W = 7
LEGEND_CHARS = 40

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

Point = tuple[float, float]
Box = tuple[float, float, float, float]  # left, top, right, bottom of the plot area


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    *,
    width: int = 640,
    height: int = 260,
    y_label: str,
    x_label: str,
    title: str | None = None,
) -> SafeString:
    """An inline SVG line chart: one polyline per series, axes, ticks, labels and a legend.

    Steps: drop points that are not finite numbers; fit a "nice" domain around what is left
    (widened when it is a single value); draw grid, axes and tick labels; draw each series as a
    polyline (plus markers when there are few points); add the legend and a text summary for
    screen readers. Every piece of text is escaped, so the result is safe to insert in a page.
    """
    title = title or f"{y_label} by {x_label}"
    clean = {str(name): _clean(points) for name, points in series.items()}
    legend, legend_h = _legend(list(clean), width)
    top = MARGIN_TOP + legend_h
    right, bottom = max(width - MARGIN_RIGHT, MARGIN_LEFT + 1), max(height - MARGIN_BOTTOM, top + 1)
    box = (MARGIN_LEFT, top, right, bottom)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="{_text(title)}">',
        f"<title>{_text(title)}</title>",
        f"<desc>{_text(_summary(clean, x_label))}</desc>",
        *legend,
    ]
    points = [p for pts in clean.values() for p in pts]
    if points:
        parts += _plot(clean, points, box)
    else:
        parts.append(_frame(box))
        parts.append(
            f'<text x="{(box[0] + box[2]) / 2:.1f}" y="{(box[1] + box[3]) / 2:.1f}" '
            f'text-anchor="middle" fill="currentColor">No data yet</text>'
        )
    parts += _axis_labels(box, width, height, x_label, y_label)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every piece of text above went through _text


def nice_ticks(lo: float, hi: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    step = _nice_step((hi - lo) / max(count, 1), integer=integer)
    first = math.floor(lo / step) * step
    ticks = [first + i * step for i in range(MAX_TICKS + 1)]
    last = next((i for i, t in enumerate(ticks) if t >= hi - step * 1e-9), len(ticks) - 1)
    return ticks[: last + 1]


def _nice_step(raw: float, *, integer: bool) -> float:
    if not raw > 0 or not math.isfinite(raw):
        return 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    multipliers = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in multipliers if m * magnitude >= raw * (1 - 1e-12))
    return float(max(step, 1.0) if integer else step)


def _clean(points: Iterable) -> list[Point]:
    """Finite (x, y) number pairs, sorted by x; anything else is dropped."""
    out = []
    for point in points:
        try:
            x, y = point
        except (TypeError, ValueError):
            continue
        if is_number(x) and is_number(y):
            out.append((_clamp(float(x)), _clamp(float(y))))
    return sorted(out)


def is_number(value: object) -> bool:
    """A finite int or float (not a bool): what a metric must be to be plotted or shown."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _clamp(value: float) -> float:
    return max(-VALUE_LIMIT, min(VALUE_LIMIT, value))


def _domain(
    values: list[float], *, integer: bool, tight: bool
) -> tuple[float, float, list[float], float]:
    """Axis range, ticks and tick step: rounded out to ticks, or (tight) the data's own range."""
    lo, hi = min(values), max(values)
    if hi - lo <= max(abs(lo), abs(hi)) * 1e-9:  # one value: widen so it sits mid-chart
        pad = 1.0 if integer or abs(lo) < 1e-200 else abs(lo) * 0.1
        lo, hi = lo - pad, hi + pad
    ticks = nice_ticks(lo, hi, 8 if tight else 5, integer=integer)  # x has room for more
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    if tight:
        slack = (hi - lo) * 1e-9
        return lo, hi, [t for t in ticks if lo - slack <= t <= hi + slack], step
    return ticks[0], max(ticks[-1], hi), ticks, step


def _plot(clean: dict[str, list[Point]], points: list[Point], box: Box) -> list[str]:
    left, top, right, bottom = box
    integer_x = all(x.is_integer() for x, _ in points)
    # Rounds run from the first to the last (no empty margin); values get round-number bounds.
    x0, x1, x_ticks, x_step = _domain([x for x, _ in points], integer=integer_x, tight=True)
    y0, y1, y_ticks, y_step = _domain([y for _, y in points], integer=False, tight=False)

    def sx(x: float) -> float:  # inset so that end markers clear the axis
        return left + X_INSET + (x - x0) / (x1 - x0) * (right - left - 2 * X_INSET)

    def sy(y: float) -> float:
        return bottom - (y - y0) / (y1 - y0) * (bottom - top)

    parts = ['<g class="chart-grid" stroke="currentColor" stroke-opacity="0.18">']
    parts += [
        f'<line x1="{left}" x2="{right}" y1="{sy(t):.1f}" y2="{sy(t):.1f}"/>' for t in y_ticks
    ]
    parts.append("</g>")
    parts.append(_frame(box))
    parts.append('<g class="chart-ticks" fill="currentColor" font-size="11">')
    for t in x_ticks:
        parts.append(
            f'<text x="{sx(t):.1f}" y="{bottom + 16}" text-anchor="middle">'
            f"{_text(_tick_label(t, x_step))}</text>"
        )
    for t in y_ticks:
        parts.append(
            f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">'
            f"{_text(_tick_label(t, y_step))}</text>"
        )
    parts.append("</g>")
    for i, (name, pts) in enumerate(clean.items()):
        if pts:
            parts += _series(i, name, [(sx(x), sy(y), x, y) for x, y in pts])
    return parts


def _series(index: int, name: str, pts: list[tuple[float, float, float, float]]) -> list[str]:
    colour, dash = PALETTE[index % len(PALETTE)], DASHES[index % len(DASHES)]
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    coords = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in pts)
    parts = [
        f'<g class="chart-series" stroke="{colour}" fill="{colour}">',
        f'<polyline data-series="{_text(name)}" points="{coords}" fill="none" '
        f'stroke-width="2" stroke-linejoin="round"{dash_attr}/>',
    ]
    if len(pts) <= MARKER_LIMIT:
        parts += [
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3"><title>{_text(name)}: '
            f"{_text(_value(x))}, {_text(_value(y))}</title></circle>"
            for px, py, x, y in pts
        ]
    parts.append("</g>")
    return parts


def _legend(names: list[str], width: int) -> tuple[list[str], int]:
    """Legend items laid out left to right, wrapping onto new rows above the plot."""
    parts, x, row = ['<g class="chart-legend" font-size="12">'], MARGIN_LEFT, 0
    for i, name in enumerate(names):
        short = name if len(name) <= LEGEND_CHARS else name[: LEGEND_CHARS - 1] + "…"
        item_w = 34 + CHAR_W * len(short)
        if x > MARGIN_LEFT and x + item_w > width - MARGIN_RIGHT:
            x, row = MARGIN_LEFT, row + 1
        y = MARGIN_TOP + row * LEGEND_ROW + 9
        colour, dash = PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<line x1="{x}" x2="{x + 24}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" '
            f'stroke-width="2"{dash_attr}/>'
            f'<text x="{x + 28}" y="{y}" fill="currentColor">{_text(short)}</text>'
        )
        x += item_w + 12
    parts.append("</g>")
    return parts, (row + 1) * LEGEND_ROW if names else 0


def _frame(box: Box) -> str:
    left, top, right, bottom = box
    return (
        f'<path class="chart-axes" d="M{left},{top} V{bottom} H{right}" fill="none" '
        f'stroke="currentColor"/>'
    )


def _axis_labels(box: Box, width: int, height: int, x_label: str, y_label: str) -> list[str]:
    left, top, right, bottom = box
    mid_y = (top + bottom) / 2
    return [
        f'<text class="chart-label" font-size="13" x="{(left + right) / 2:.1f}" y="{height - 8}" '
        f'text-anchor="middle" fill="currentColor">{_text(x_label)}</text>',
        f'<text class="chart-label" font-size="13" x="14" y="{mid_y:.1f}" text-anchor="middle" '
        f'fill="currentColor" transform="rotate(-90 14 {mid_y:.1f})">{_text(y_label)}</text>',
    ]


def _summary(clean: dict[str, list[Point]], x_label: str) -> str:
    """What a sighted reader gets from the lines, in words, for screen readers."""
    lines = []
    for name, pts in clean.items():
        if pts:
            x, y = pts[-1]
            lines.append(f"{name}: {len(pts)} points, latest {_value(y)} at {x_label} {_value(x)}")
        else:
            lines.append(f"{name}: no data")
    return "; ".join(lines) or "no series"


def _tick_label(value: float, step: float) -> str:
    """Ticks as plain decimals with as many places as the step needs (never "-0")."""
    decimals = next((d for d in range(13) if abs(round(step, d) - step) <= step * 1e-6), None)
    if step >= 1e6 or decimals is None:
        digits = math.floor(math.log10(max(abs(value), step))) - math.floor(math.log10(step))
        return f"{value:.{min(17, digits + 2)}g}"
    text = f"{value:.{decimals}f}"
    return f"{0.0:.{decimals}f}" if float(text) == 0 else text


def _value(value: float) -> str:
    return f"{value:g}" if value.is_integer() else f"{value:.4g}"


def _text(value: object) -> str:
    """Text escaped for SVG content and attributes, without the control characters XML forbids."""
    text = _CONTROL.sub("", str(value))
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
    )
