"""Charts drawn on the server as inline SVG: no script, nothing from another origin, styled by classes
from the self-hosted stylesheet (the CSP allows no inline style)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from referral_broker.store.monitoring import HourCounts
from referral_broker.web.i18n import Translator
from referral_broker.web.ops.display import OSLO, seconds

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 32
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    title: str


@dataclass(frozen=True)
class Line:
    series: str
    points: str  # "x,y x,y …" for <polyline>
    dots: list[tuple[float, float, str]]


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class Chart:
    title: str
    legend: list[tuple[str, str]]  # (series css class, label)
    bars: list[Bar] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    empty: bool = False
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_width: int = PLOT_W
    plot_height: int = PLOT_H


def _nice_max(value: float) -> float:
    """A round upper bound at or above `value` (1, 2, 5 × 10ⁿ), so the axis reads easily."""
    if value <= 0:
        return 1.0
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    while magnitude > value:
        magnitude /= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def _hour_label(hour: datetime) -> str:
    return hour.astimezone(OSLO).strftime("%H")


def _x_ticks(hours: list[HourCounts], slot: float) -> list[Tick]:
    return [Tick(LEFT + i * slot + slot / 2, _hour_label(h.hour)) for i, h in enumerate(hours) if i % 3 == 0]


def _y(value: float, top_value: float) -> float:
    return TOP + PLOT_H - value / top_value * PLOT_H


def _english(t: Translator | None) -> Translator:
    return t or Translator("en")


def throughput_chart(hours: list[HourCounts], t: Translator | None = None) -> Chart:
    """Per hour: referrals submitted, deliveries dispatched to inboxes, deliveries acknowledged."""
    t = _english(t)
    series = [(name, t(f"ops.chart.{name}")) for name in ("submitted", "dispatched", "acknowledged")]
    peak = max((max(h.submitted, h.dispatched, h.acknowledged) for h in hours), default=0)
    top_value = _nice_max(peak)
    slot = PLOT_W / max(len(hours), 1)
    bar_w = slot * 0.8 / len(series)
    bars = []
    for i, h in enumerate(hours):
        for j, (name, label) in enumerate(series):
            value = getattr(h, name)
            if not value:
                continue
            y = _y(value, top_value)
            bars.append(
                Bar(
                    x=round(LEFT + i * slot + slot * 0.1 + j * bar_w, 1),
                    y=round(y, 1),
                    width=round(bar_w, 1),
                    height=round(TOP + PLOT_H - y, 1),
                    series=name,
                    title=f"{_hour_label(h.hour)}:00 — {value} {label}",
                )
            )
    return Chart(
        title=t("ops.chart.throughput_title"),
        legend=series,
        bars=bars,
        x_ticks=_x_ticks(hours, slot),
        y_ticks=[Tick(round(_y(v, top_value), 1), f"{v:g}") for v in (0, top_value / 2, top_value)],
        empty=peak == 0,
    )


def latency_chart(hours: list[HourCounts], t: Translator | None = None) -> Chart:
    """Per hour: median and 95th percentile of the time from submission to the clinic's inbox."""
    t = _english(t)
    series = [(name, t(f"ops.chart.{name}")) for name in ("p50", "p95")]
    peak = max((h.latency_p95 or h.latency_p50 or 0.0 for h in hours), default=0.0)
    top_value = _nice_max(peak)
    slot = PLOT_W / max(len(hours), 1)
    lines = []
    for name, label in series:
        dots = []
        for i, h in enumerate(hours):
            value = h.latency_p50 if name == "p50" else h.latency_p95
            if value is None:
                continue
            dots.append(
                (
                    round(LEFT + i * slot + slot / 2, 1),
                    round(_y(value, top_value), 1),
                    f"{_hour_label(h.hour)}:00 — {label} {seconds(value, t)}",
                )
            )
        lines.append(Line(name, " ".join(f"{x},{y}" for x, y, _ in dots), dots))
    return Chart(
        title=t("ops.chart.latency_title"),
        legend=series,
        lines=lines,
        x_ticks=_x_ticks(hours, slot),
        y_ticks=_seconds_ticks((0, top_value / 2, top_value), top_value, t),
        empty=peak == 0 and not any(line.dots for line in lines),
    )


def _seconds_ticks(values: tuple[float, ...], top_value: float, t: Translator) -> list[Tick]:
    """Axis labels in seconds, with as many decimals as the values have (up to three): 0.05 must not read
    "0.1 s" beside the top's "0.1 s", as the one-decimal rounding that times elsewhere on the page use did."""
    labels = [seconds(v, t) for v in values]
    if top_value < 10:
        digits = next((d for d in (1, 2, 3) if all(abs(round(v, d) - v) < 1e-9 for v in values)), 3)
        labels = [t("ops.time.seconds", n=f"{round(v, digits):g}") for v in values]
    return [Tick(round(_y(v, top_value), 1), label) for v, label in zip(values, labels, strict=True)]
