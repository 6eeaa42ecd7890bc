"""The server-drawn charts and the way ages read: geometry inside the plot, gaps for empty hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from referral_broker.store.monitoring import HourCounts
from referral_broker.web.ops import charts, display


def _hours(values: list[tuple[int, float | None]]) -> list[HourCounts]:
    start = datetime(2026, 11, 22, 0, tzinfo=UTC)
    return [
        HourCounts(start + timedelta(hours=i), n, n, n // 2, latency, latency * 2 if latency else None)
        for i, (n, latency) in enumerate(values)
    ]


def test_bars_stay_inside_the_plot_and_the_axis_ends_on_a_round_number() -> None:
    chart = charts.throughput_chart(_hours([(0, None)] * 20 + [(3, 0.4), (7, 0.5), (0, None), (1, 0.2)]))
    assert not chart.empty and [t.label for t in chart.y_ticks] == ["0", "5", "10"]
    for bar in chart.bars:
        assert bar.x >= charts.LEFT and bar.x + bar.width <= charts.LEFT + charts.PLOT_W + 0.5
        assert bar.y >= charts.TOP and bar.y + bar.height <= charts.TOP + charts.PLOT_H + 0.5
    assert len(chart.bars) == 3 * 3 - 1  # no bar for a zero (1 acknowledged // 2 == 0)
    assert [t.label for t in chart.x_ticks][:2] == ["01", "04"]  # Oslo time, every third hour


def test_latency_lines_skip_hours_without_dispatches_and_an_empty_day_says_so() -> None:
    chart = charts.latency_chart(_hours([(1, 0.4), (0, None), (2, 30.0)]))
    p50, p95 = chart.lines
    assert len(p50.dots) == 2 and len(p95.dots) == 2
    assert chart.y_ticks[-1].label == "1 min" and "median 0.4 s" in p50.dots[0][2]
    assert charts.throughput_chart(_hours([(0, None)] * 24)).empty
    assert charts.latency_chart(_hours([(0, None)] * 24)).empty


def test_the_latency_axis_never_shows_the_same_label_twice() -> None:
    for peak, labels in (
        (0.08, ["0 s", "0.05 s", "0.1 s"]),  # 0.05 was rounded to "0.1 s" beside the top's "0.1 s"
        (0.4, ["0 s", "0.25 s", "0.5 s"]),
        (3.0, ["0 s", "2.5 s", "5 s"]),
        (0.009, ["0 s", "0.005 s", "0.01 s"]),
    ):
        chart = charts.latency_chart(_hours([(1, peak / 2)]))
        assert [tick.label for tick in chart.y_ticks] == labels, peak


def test_ages_read_at_a_glance() -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    assert display.ago(now, None) == "never"
    assert display.ago(now, now - timedelta(seconds=42)) == "42 s ago"
    assert display.duration(timedelta(minutes=75)) == "1 h 15 min"
    assert display.duration(timedelta(hours=2)) == "2 h"
    assert display.duration(timedelta(days=2, hours=3)) == "2 d 3 h"
    assert display.duration(None) == "—" and display.seconds(None) == "—"
    assert display.local_time(now) == "2026-11-22 13:00:00" and display.local_time(None) == "—"
