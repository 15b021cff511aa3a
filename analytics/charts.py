"""Small SVG charts for the capacity report: a time-series line chart and horizontal bars.

Standalone reports must open offline and print well, so charts are plain SVG text (no
scripts, fonts or URLs) that an HTML page embeds inline. Every piece of text is escaped, so a
guest named ``<script>`` stays a label. The plot area is drawn as a ``rect`` of class ``plot``
so readers (and tests) can check where values land. Times are epoch seconds, shown in UTC.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

# Okabe–Ito hues (told apart with common colour-vision deficiencies; the yellow darkened for
# white paper), then a purple and a grey
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#7a5c00", "#56b4e9", "#6a3d9a", "#444")
INK, GRID, MUTED = "#222", "#e3e3e3", "#666"
FONT = 'font-family="system-ui, sans-serif"'
DAY = 86_400.0
# tick steps in minutes: 1 min … 12 h, then 1, 2, 7, 14 and 28 days
_TIME_STEPS = tuple(60.0 * m for m in (1, 5, 15, 30, 60, 180, 360, 720, 1440, 2880, 10080, 20160))
_TIME_STEPS += (28 * DAY,)
_CYCLE_DASHES: tuple[str | None, ...] = (None, "9 3 2 3", "2 2")
_MONDAY = 4 * DAY  # the epoch fell on a Thursday: week ticks start on Mondays


@dataclass(frozen=True)
class Line:
    """One series: ``x`` in epoch seconds, ``y`` in the chart's unit, optional band around it."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None
    dashed: bool = False
    color: str | None = None


@dataclass(frozen=True)
class Rule:
    """A horizontal reference line, e.g. a capacity."""

    value: float
    label: str
    color: str = INK


@dataclass(frozen=True)
class Bars:
    """One bar per category; several `Bars` make grouped bars."""

    label: str
    values: Sequence[float]
    color: str | None = None


@dataclass(frozen=True)
class Box:
    left: float
    top: float
    right: float
    bottom: float


@dataclass(frozen=True)
class Scale:
    """Linear map from data ``[lo, hi]`` onto pixels ``[start, end]`` (end may be < start)."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        if self.hi == self.lo:
            return (self.start + self.end) / 2
        return self.start + (value - self.lo) / (self.hi - self.lo) * (self.end - self.start)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round-numbered ticks (1, 2, 2.5 or 5 × 10ⁿ apart) that cover ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"tick range must be finite, got {lo}..{hi}")
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw * 0.999)
    first = math.floor(lo / step + 1e-9) * step
    ticks = [first]
    while ticks[-1] < hi - step * 1e-9:
        ticks.append(first + len(ticks) * step)
    return [round(t, 12) for t in ticks]


def format_number(value: float, step: float) -> str:
    """A label with as many decimals as ``step`` needs (2.5 needs one, 0.25 two; at most 4)."""
    step = abs(step)
    decimals = next((d for d in range(5) if abs(round(step, d) - step) <= step * 1e-6), 4)
    text = f"{value:,.{decimals}f}"
    return "0" if text.strip("-0.,") == "" else text


def time_ticks(lo: float, hi: float, count: int = 8) -> list[tuple[float, str]]:
    """Ticks on round UTC times (minutes, hours, days, Monday weeks) with readable labels."""
    span = max(hi - lo, 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= count), _TIME_STEPS[-1])
    offset = _MONDAY if step >= 7 * DAY else 0.0
    t = math.ceil((lo - offset) / step) * step + offset
    ticks: list[tuple[float, str]] = []
    previous_day = None
    while t <= hi + 1e-6:
        moment = datetime.fromtimestamp(t, UTC)
        if step >= DAY:
            label = moment.strftime("%d %b")
        else:
            day = moment.date()
            label = moment.strftime("%H:%M")
            if day != previous_day:
                label = moment.strftime("%d %b ") + label
            previous_day = day
        ticks.append((t, label))
        t += step
    return ticks


def _text(
    x: float, y: float, text: str, *, anchor: str = "start", size: int = 11, **kw: str
) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{escape(v)}"' for k, v in kw.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}"{extra}>'
        f"{escape(text)}</text>"
    )


def _open(width: float, height: float, title: str) -> list[str]:
    return [
        f'<svg width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" {FONT} fill="{INK}">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="#fff"/>',
        _text(8, 18, title, size=14, font_weight="600"),
    ]


def _short(label: str, limit: int) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _color(index: int, chosen: str | None) -> str:
    return chosen or PALETTE[index % len(PALETTE)]


def _path(points: Sequence[tuple[float, float]], starts: set[int]) -> str:
    """An SVG path through ``points``; a new segment begins at each index in ``starts`` and
    after any point that is not a finite number (a missing reading)."""
    parts: list[str] = []
    pen_up = True
    for i, (x, y) in enumerate(points):
        if not (math.isfinite(x) and math.isfinite(y)):
            pen_up = True
            continue
        parts.append(f"{'M' if pen_up or i in starts else 'L'}{x:.1f} {y:.1f}")
        pen_up = False
    return " ".join(parts)


def _gaps(x: Sequence[float]) -> set[int]:
    """Indexes that start a new segment: after a gap of more than 3 × the usual spacing."""
    steps = sorted(b - a for a, b in itertools.pairwise(x))
    if not steps:
        return set()
    usual = steps[len(steps) // 2]
    return {i + 1 for i, (a, b) in enumerate(itertools.pairwise(x)) if b - a > 3 * usual}


@dataclass(frozen=True)
class _Key:
    label: str
    color: str
    dash: str | None


_KEY_CHARS = 24  # legend text wraps at this many characters


def _legend_height(keys: Sequence[_Key]) -> float:
    return sum(18 + 13 * (len(textwrap.wrap(k.label, _KEY_CHARS)) - 1) for k in keys)


def _legend(keys: Sequence[_Key], x: float, y: float) -> list[str]:
    out = []
    for key in keys:
        dash = f' stroke-dasharray="{key.dash}"' if key.dash else ""
        out.append(
            f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 18:.1f}" y2="{y:.1f}" '
            f'stroke="{key.color}" stroke-width="2.5"{dash}/>'
        )
        for n, part in enumerate(textwrap.wrap(key.label, _KEY_CHARS) or [""]):
            out.append(_text(x + 24, y + 4 + 13 * n, part, size=11))
        y += 18 + 13 * (len(textwrap.wrap(key.label, _KEY_CHARS)) - 1)
    return out


def _y_axis(ticks: list[float], scale: Scale, box: Box, unit: str) -> list[str]:
    out = []
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    for t in ticks:
        y = scale(t)
        out.append(
            f'<line x1="{box.left:.1f}" y1="{y:.1f}" x2="{box.right:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID}"/>'
        )
        out.append(_text(box.left - 6, y + 4, format_number(t, step), anchor="end", size=10))
    out.append(_text(box.left - 6, box.top - 8, unit, anchor="end", size=10, fill=MUTED))
    return out


def _time_axis(scale: Scale, box: Box) -> list[str]:
    out = []
    for t, label in time_ticks(scale.lo, scale.hi):
        x = scale(t)
        out.append(
            f'<line x1="{x:.1f}" y1="{box.bottom:.1f}" x2="{x:.1f}" y2="{box.bottom + 4:.1f}" '
            f'stroke="{MUTED}"/>'
        )
        out.append(_text(x, box.bottom + 16, label, anchor="middle", size=10))
    out.append(_text(box.right, box.bottom + 34, "UTC", anchor="end", size=10, fill=MUTED))
    return out


def line_style(index: int, line: Line) -> tuple[str, str | None]:
    """Colour and dash pattern of the ``index``-th line: once the palette is used up, the
    colours come round again with another dash pattern so that no two lines look alike."""
    color = _color(index, line.color)
    if line.dashed:
        return color, "5 3"
    if line.color is not None:
        return color, None
    return color, _CYCLE_DASHES[(index // len(PALETTE)) % len(_CYCLE_DASHES)]


def _series(line: Line, color: str, dash: str | None, x: Scale, y: Scale) -> list[str]:
    out = []
    if line.low is not None and line.high is not None:
        upper = [(x(a), y(b)) for a, b in zip(line.x, line.high, strict=True)]
        lower = [(x(a), y(b)) for a, b in zip(line.x, line.low, strict=True)]
        ring = [p for p in (*upper, *reversed(lower)) if math.isfinite(p[0] + p[1])]
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in ring)
        out.append(f'<polygon class="band" points="{points}" fill="{color}" fill-opacity="0.18"/>')
    path = _path([(x(a), y(b)) for a, b in zip(line.x, line.y, strict=True)], _gaps(line.x))
    pattern = f' stroke-dasharray="{dash}"' if dash else ""
    out.append(
        f'<path class="series" d="{path}" fill="none" stroke="{color}" stroke-width="1.8" '
        f'stroke-linejoin="round"{pattern}><title>{escape(line.label)}</title></path>'
    )
    return out


def line_chart(
    lines: Sequence[Line],
    *,
    title: str,
    unit: str,
    rules: Sequence[Rule] = (),
    width: float = 760,
    height: float = 300,
    y_floor: float | None = 0.0,
) -> str:
    """Lines over time with a y-axis in ``unit``, optional bands and reference lines.

    The y-axis starts at ``y_floor`` (None: at the data's minimum) and ends on the first
    round tick at or above the highest value, band or rule. The legend sits to the right; the
    chart grows taller when it needs the room.
    """
    for line in lines:
        lengths = {len(line.x), len(line.y)}
        lengths |= {len(b) for b in (line.low, line.high) if b is not None}
        if len(lengths) != 1:
            raise ValueError(f"series {line.label!r}: x, y and band differ in length {lengths}")
    xs = [x for line in lines for x in line.x if math.isfinite(x)]
    ys = [y for line in lines for y in (*line.y, *(line.low or ()), *(line.high or ()))]
    ys = [y for y in (*ys, *(r.value for r in rules)) if math.isfinite(y)]
    styles = [line_style(i, line) for i, line in enumerate(lines)]
    keys = [_Key(line.label, c, d) for line, (c, d) in zip(lines, styles, strict=True)]
    keys += [_Key(r.label, r.color, "2 3") for r in rules]
    height = max(height, 34 + 6 + _legend_height(keys) + 10)
    box = Box(62, 34, width - 170, height - 40)
    svg = _open(width, height, title)
    if not xs or not ys:
        svg.append(_text((box.left + box.right) / 2, height / 2, "no data", anchor="middle"))
        return "\n".join([*svg, "</svg>"])
    yt = nice_ticks(min(ys) if y_floor is None else min(y_floor, *ys), max(ys))
    y_scale = Scale(yt[0], yt[-1], box.bottom, box.top)
    x_scale = Scale(min(xs), max(xs), box.left, box.right)
    svg.append(
        f'<rect class="plot" x="{box.left:.1f}" y="{box.top:.1f}" '
        f'width="{box.right - box.left:.1f}" height="{box.bottom - box.top:.1f}" '
        f'fill="#fbfbfb" stroke="{GRID}"/>'
    )
    svg += _y_axis(yt, y_scale, box, unit)
    svg += _time_axis(x_scale, box)
    for line, (color, dash) in zip(lines, styles, strict=True):
        svg += _series(line, color, dash, x_scale, y_scale)
    for rule in rules:
        y = y_scale(rule.value)
        svg.append(
            f'<line class="rule" x1="{box.left:.1f}" y1="{y:.1f}" x2="{box.right:.1f}" '
            f'y2="{y:.1f}" stroke="{rule.color}" stroke-width="1.5" stroke-dasharray="2 3"/>'
        )
    svg += _legend(keys, box.right + 14, box.top + 6)
    return "\n".join([*svg, "</svg>"])


def bar_chart(
    categories: Sequence[str],
    bars: Sequence[Bars],
    *,
    title: str,
    unit: str,
    width: float = 760,
) -> str:
    """Horizontal grouped bars, one group per category; negative values grow to the left."""
    for b in bars:
        if len(b.values) != len(categories):
            raise ValueError(
                f"bars {b.label!r} have {len(b.values)} values for {len(categories)} categories"
            )
    group = 14 * max(len(bars), 1) + 10
    legend = 22 if len(bars) > 1 else 0
    height = 34 + legend + group * max(len(categories), 1) + 34
    svg = _open(width, height, title)
    values = [v for b in bars for v in b.values if math.isfinite(v)]
    if not categories or not values:
        svg.append(_text(width / 2, height / 2, "no data", anchor="middle"))
        return "\n".join([*svg, "</svg>"])
    box = Box(130, 34 + legend, width - 70, height - 34)
    xt = nice_ticks(min(0.0, *values), max(0.0, *values))
    scale = Scale(xt[0], xt[-1], box.left, box.right)
    step = xt[1] - xt[0] if len(xt) > 1 else 1.0
    svg.append(
        f'<rect class="plot" x="{box.left:.1f}" y="{box.top:.1f}" '
        f'width="{box.right - box.left:.1f}" height="{box.bottom - box.top:.1f}" '
        f'fill="#fbfbfb" stroke="{GRID}"/>'
    )
    for t in xt:
        x = scale(t)
        svg.append(
            f'<line x1="{x:.1f}" y1="{box.top:.1f}" x2="{x:.1f}" y2="{box.bottom:.1f}" '
            f'stroke="{MUTED if t == 0 else GRID}"/>'
        )
        svg.append(_text(x, box.bottom + 14, format_number(t, step), anchor="middle", size=10))
    svg.append(_text(box.right, box.bottom + 28, unit, anchor="end", size=10, fill=MUTED))
    if legend:
        svg += _bar_legend(bars, box.left, box.top - 16)
    zero = scale(0.0)
    for c, category in enumerate(categories):
        top = box.top + c * group + 5
        middle = top + (14 * len(bars) - 2) / 2
        svg.append(_text(box.left - 6, middle + 4, _short(category, 18), anchor="end"))
        for i, b in enumerate(bars):
            value = b.values[c]
            if not math.isfinite(value):
                continue
            end = scale(value)
            y = top + i * 14
            svg.append(
                f'<rect class="bar" x="{min(zero, end):.1f}" y="{y:.1f}" '
                f'width="{abs(end - zero):.1f}" height="12" fill="{_color(i, b.color)}">'
                f"<title>{escape(f'{category} · {b.label}: {value:,.2f} {unit}')}</title></rect>"
            )
            # outside the bar's end; a negative bar without room on its left: past zero
            if value >= 0:
                label_x, anchor = end + 4, "start"
            else:
                label_x, anchor = (end - 4, "end") if end - box.left > 40 else (zero + 4, "start")
            svg.append(
                _text(label_x, y + 10, format_number(value, step / 10), anchor=anchor, size=10)
            )
    return "\n".join([*svg, "</svg>"])


def _bar_legend(bars: Sequence[Bars], x: float, y: float) -> list[str]:
    out = []
    for i, b in enumerate(bars):
        out.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="12" height="10" fill="{_color(i, b.color)}"/>'
        )
        out.append(_text(x + 16, y + 9, b.label, size=11))
        x += 28 + 7 * len(b.label)
    return out


__all__ = [
    "PALETTE",
    "Bars",
    "Box",
    "Line",
    "Rule",
    "Scale",
    "bar_chart",
    "format_number",
    "line_chart",
    "line_style",
    "nice_ticks",
    "time_ticks",
]
