"""SVG charts: values land on the right pixels, text is escaped, every chart is valid XML."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from analytics.charts import (
    PALETTE,
    Bars,
    Line,
    Rule,
    Scale,
    bar_chart,
    format_number,
    line_chart,
    line_style,
    nice_ticks,
    time_ticks,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
HOUR = 3600.0


def plot_area(svg: ET.Element) -> tuple[float, float, float, float]:
    """left, top, right, bottom of the chart's plot rectangle."""
    rect = svg.find(".//rect[@class='plot']")
    assert rect is not None
    x, y, w, h = (float(rect.get(k, "nan")) for k in ("x", "y", "width", "height"))
    return x, y, x + w, y + h


def path_points(svg: ET.Element) -> list[list[tuple[float, float]]]:
    """Each series' points, in order, as (x, y) pixels."""
    out = []
    for path in svg.iterfind(".//path[@class='series']"):
        pairs = re.findall(r"[ML](-?[\d.]+) (-?[\d.]+)", path.get("d", ""))
        out.append([(float(x), float(y)) for x, y in pairs])
    return out


def test_a_point_at_the_maximum_lands_at_the_top_of_the_plot_area() -> None:
    svg = ET.fromstring(
        line_chart(
            [Line("a", [T0, T0 + HOUR, T0 + 2 * HOUR], [0.0, 25.0, 100.0])],
            title="t",
            unit="GiB",
        )
    )
    left, top, right, bottom = plot_area(svg)
    (first, middle, last), *_ = path_points(svg)
    # ticks run 0..100, so 100 is the top edge, 0 the bottom, 25 a quarter of the way up
    assert last == pytest.approx((right, top), abs=0.06)
    assert first == pytest.approx((left, bottom), abs=0.06)
    assert middle[0] == pytest.approx((left + right) / 2, abs=0.06)
    assert middle[1] == pytest.approx(bottom - (bottom - top) / 4, abs=0.06)


def test_a_capacity_line_above_the_data_stretches_the_axis_to_include_it() -> None:
    svg = ET.fromstring(
        line_chart(
            [Line("a", [T0, T0 + HOUR], [10.0, 20.0])],
            title="t",
            unit="GiB",
            rules=[Rule(40.0, "capacity")],
        )
    )
    _, top, _, bottom = plot_area(svg)
    rule = svg.find(".//line[@class='rule']")
    assert rule is not None
    assert float(rule.get("y1", "nan")) == pytest.approx(top, abs=0.06)  # ticks 0..40
    (_, high), *_ = [p[-1] for p in path_points(svg)]
    assert high == pytest.approx(bottom - (bottom - top) / 2, abs=0.06)  # 20 of 40


def test_a_bar_at_the_maximum_reaches_the_right_edge_and_negatives_grow_left_of_zero() -> None:
    svg = ET.fromstring(bar_chart(["a", "b"], [Bars("free", [10.0, -5.0])], title="t", unit="GiB"))
    left, _, right, _ = plot_area(svg)
    bars = svg.findall(".//rect[@class='bar']")
    # ticks run -5..10 in steps of 5: zero is a third of the way across
    zero = left + (right - left) / 3
    a, b = ((float(r.get("x", "nan")), float(r.get("width", "nan"))) for r in bars)
    assert a[0] == pytest.approx(zero, abs=0.06)
    assert a[0] + a[1] == pytest.approx(right, abs=0.1)
    assert b[0] == pytest.approx(left, abs=0.06)
    assert b[0] + b[1] == pytest.approx(zero, abs=0.1)


def test_scales_map_the_domain_ends_onto_the_pixel_ends_even_when_inverted() -> None:
    y = Scale(0.0, 50.0, 200.0, 20.0)  # screen y grows downwards
    assert y(0.0) == 200.0
    assert y(50.0) == 20.0
    assert y(12.5) == 155.0  # a quarter of 180 px up from 200
    assert Scale(3.0, 3.0, 0.0, 100.0)(3.0) == 50.0  # one value: the middle


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (0.0, 97.0, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]),
        (-3.2, 12.0, [-5.0, 0.0, 5.0, 10.0, 15.0]),
        (0.0, 0.042, [0.0, 0.01, 0.02, 0.03, 0.04, 0.05]),
    ],
)
def test_nice_ticks_cover_the_range_on_round_numbers(
    lo: float, hi: float, expected: list[float]
) -> None:
    assert nice_ticks(lo, hi) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "step", "text"),
    [(7.5, 2.5, "7.5"), (0.75, 0.25, "0.75"), (1000.0, 500.0, "1,000"), (0.03, 0.01, "0.03")],
)
def test_tick_labels_show_the_decimals_their_step_needs(
    value: float, step: float, text: str
) -> None:
    assert format_number(value, step) == text


def test_nice_ticks_of_a_single_value_still_make_a_range() -> None:
    ticks = nice_ticks(5.0, 5.0)
    assert ticks[0] < 5.0 < ticks[-1]


def test_time_ticks_fall_on_round_utc_hours_and_name_the_day_when_it_changes() -> None:
    # three days: 12-hour steps (72 h / 8 ticks at most), labels carry the date at midnight
    ticks = time_ticks(T0 + 5 * 60, T0 + 72 * HOUR)
    assert [t for t, _ in ticks][:3] == [T0 + 12 * HOUR, T0 + 24 * HOUR, T0 + 36 * HOUR]
    assert [label for _, label in ticks][:3] == ["01 Mar 12:00", "02 Mar 00:00", "12:00"]


def test_time_ticks_over_weeks_are_dates() -> None:
    ticks = time_ticks(T0, T0 + 30 * 24 * HOUR)
    assert all(re.fullmatch(r"\d\d [A-Z][a-z]{2}", label) for _, label in ticks)
    assert 3 <= len(ticks) <= 8


def test_labels_and_titles_are_escaped_so_every_chart_stays_valid_xml() -> None:
    evil = "<script>alert('x')</script> & co"
    charts = [
        line_chart([Line(evil, [T0, T0 + HOUR], [1.0, 2.0])], title=evil, unit=evil),
        bar_chart([evil], [Bars(evil, [1.0]), Bars("b", [2.0])], title=evil, unit=evil),
    ]
    for text in charts:
        assert "<script" not in text
        svg = ET.fromstring(text)
        assert evil in ["".join(e.itertext()) for e in svg.iter("title")]


def test_a_gap_in_the_samples_breaks_the_line_instead_of_bridging_it() -> None:
    x = [T0, T0 + 60, T0 + 120, T0 + 10 * HOUR, T0 + 10 * HOUR + 60]
    svg = line_chart([Line("a", x, [1.0] * 5)], title="t", unit="u")
    path = ET.fromstring(svg).find(".//path[@class='series']")
    assert path is not None
    assert path.get("d", "").count("M") == 2


def test_the_band_runs_along_the_high_edge_and_back_along_the_low_edge() -> None:
    svg = ET.fromstring(
        line_chart(
            [Line("f", [T0, T0 + HOUR], [5.0, 5.0], low=[0.0, 0.0], high=[10.0, 10.0])],
            title="t",
            unit="u",
        )
    )
    left, top, right, bottom = plot_area(svg)
    band = svg.find(".//polygon[@class='band']")
    assert band is not None
    coords = [float(c) for p in band.get("points", "").split() for c in p.split(",")]
    # (left, top) → (right, top) along 10, then (right, bottom) → (left, bottom) along 0
    assert coords == pytest.approx([left, top, right, top, right, bottom, left, bottom], abs=0.06)


def test_a_series_whose_lengths_differ_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"'cpu'.*differ in length"):
        line_chart([Line("cpu", [T0, T0 + 60], [1.0])], title="t", unit="u")
    with pytest.raises(ValueError, match="'now' have 1 values for 2 categories"):
        bar_chart(["a", "b"], [Bars("now", [1.0])], title="t", unit="u")


def test_a_chart_without_data_says_so() -> None:
    for text in (
        line_chart([], title="t", unit="u"),
        bar_chart([], [], title="t", unit="u"),
    ):
        assert "no data" in "".join(ET.fromstring(text).itertext())


def test_a_missing_reading_breaks_the_line_and_never_reaches_the_path() -> None:
    x = [T0 + 60 * i for i in range(4)]
    svg = line_chart([Line("a", x, [1.0, float("nan"), 2.0, 3.0])], title="t", unit="u")
    path = ET.fromstring(svg).find(".//path[@class='series']")
    assert path is not None
    d = path.get("d", "")
    assert "nan" not in d.lower()
    assert d.count("M") == 2 and d.count("L") == 1  # one lone point, then a two-point segment


def test_a_long_legend_makes_the_chart_taller_so_no_entry_is_cut_off() -> None:
    lines = [Line(f"node-{i:02d} with a long name", [T0, T0 + HOUR], [1.0, 2.0]) for i in range(30)]
    svg = ET.fromstring(line_chart(lines, title="t", unit="u", height=300))
    height = float(svg.get("height", "nan"))
    lowest = max(float(t.get("y", "nan")) for t in svg.iter("text"))
    assert height > 300
    assert lowest < height


def test_more_lines_than_colours_still_each_look_different() -> None:
    lines = [Line(f"n{i}", [T0], [1.0]) for i in range(3 * len(PALETTE))]
    styles = [line_style(i, line) for i, line in enumerate(lines)]
    assert len(set(styles)) == len(styles)
