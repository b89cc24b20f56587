"""Tests for the SVG line chart used by the Director."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from apps.jobs.charts import line_chart, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"


def polylines(svg: str) -> dict[str, list[str]]:
    root = ET.fromstring(svg)
    return {p.get("data-series"): p.get("points").split() for p in root.iter(f"{SVG}polyline")}


def test_it_draws_one_polyline_point_per_data_point_with_title_legend_and_labels():
    svg = line_chart(
        {"loss": [(1, 0.9), (2, 0.5), (3, 0.3)], "train loss": [(1, 1.0), (2, 0.6)]},
        width=400,
        height=200,
        y_label="loss",
        x_label="round",
    )

    root = ET.fromstring(svg)
    assert root.get("role") == "img"
    assert root.get("aria-label") == "loss by round"
    assert root.find(f"{SVG}title").text == "loss by round"
    assert {k: len(v) for k, v in polylines(svg).items()} == {"loss": 3, "train loss": 2}
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "round" in texts and "loss" in texts and "train loss" in texts


def test_it_escapes_hostile_labels_and_series_names():
    hostile = '<script>alert("x")</script>&\'\x00'

    svg = line_chart(
        {hostile: [(1, 1.0), (2, 2.0)]},
        width=400,
        height=200,
        y_label=hostile,
        x_label=f'"><img src=x onerror=alert(1)>{hostile}',
        title=hostile,
    )

    assert "<script" not in svg
    assert "<img" not in svg
    assert "\x00" not in svg
    root = ET.fromstring(svg)  # still well-formed XML
    assert root.get("aria-label") == '<script>alert("x")</script>&\''
    assert list(polylines(svg)) == ['<script>alert("x")</script>&\'']


def test_it_draws_an_empty_chart_without_crashing():
    for series in ({}, {"loss": []}):
        svg = line_chart(series, width=300, height=150, y_label="loss", x_label="round")

        root = ET.fromstring(svg)
        assert root.find(f"{SVG}title").text == "loss by round"
        assert polylines(svg) == {}
        assert "No data yet" in svg


def test_it_draws_a_single_point_inside_the_plot():
    svg = line_chart({"accuracy": [(1, 0.5)]}, width=300, height=150, y_label="a", x_label="r")

    [point] = polylines(svg)["accuracy"]
    x, y = (float(v) for v in point.split(","))
    assert 0 < x < 300 and 0 < y < 150
    assert len(ET.fromstring(svg).findall(f".//{SVG}circle")) == 1


def test_it_skips_points_that_are_not_finite_numbers():
    series = {"loss": [(1, 0.5), (2, float("nan")), (3, float("inf")), (True, 1.0), ("4", 1.0)]}

    svg = line_chart(series, width=300, height=150, y_label="loss", x_label="round")

    assert len(polylines(svg)["loss"]) == 1
    assert "nan" not in svg and "inf" not in svg


def test_it_keeps_every_point_inside_the_plot_for_extreme_values():
    series = {"loss": [(1, -1e308), (2, 1e308), (3, 0.0)]}

    svg = line_chart(series, width=300, height=150, y_label="loss", x_label="round")

    for point in polylines(svg)["loss"]:
        x, y = (float(v) for v in point.split(","))
        assert 0 <= x <= 300 and 0 <= y <= 150


def test_nice_ticks_cover_the_range_with_round_steps():
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
    assert nice_ticks(1.0, 37.0, integer=True) == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert nice_ticks(1.0, 3.0, integer=True) == [1.0, 2.0, 3.0]


def test_integer_round_axes_get_integer_tick_labels():
    svg = line_chart(
        {"loss": [(1, 0.5), (2, 0.4)]}, width=300, height=150, y_label="l", x_label="r"
    )

    x_labels = re.findall(r'text-anchor="middle">([^<]*)</text>', svg)
    assert "1.5" not in x_labels and {"1", "2"} <= set(x_labels)
