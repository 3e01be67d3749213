"""The demo's picture: close price per symbol with the events marked, as a PNG and an HTML page.

:func:`render` is pure (no Kafka, no ClickHouse, no clock): the same inputs give the same bytes.

- Time axis: one axis shared by every panel, cut at the gaps. Each series is split where two
  consecutive points are more than :data:`GAP_MS` apart (the line is broken there); the union of
  all series' segments gives the *islands* of time that have data. Each island gets a share of
  the width proportional to its duration, at least :data:`_MIN_SHARE` (so 45 minutes of tick data
  stays visible next to 5 days of candles), separated by a shaded spacer labelled with the length
  of the cut gap. Within one island time is linear; between islands it is not.
- Events: a marker on the price line at the point nearest the event's ``ts_ms`` (ties go to the
  earlier bar: a 1-minute bar is stamped with its open), coloured by class (unknown classes grey),
  area growing with severity (0..100). An event farther than :data:`GAP_MS` from every point of
  its symbol, or of a symbol without a series, gets no marker; it still counts in the legend, the
  panel count and the top table.
- PNG: 1600x1000 px (16x10 in at 100 dpi), Agg, no Software tag, small multiples of up to 4
  columns, each with its own y scale.
- HTML: one self-contained page (no network): the PNG as base64, an inline SVG per symbol whose
  markers carry a ``<title>`` tooltip, the top events by severity. All text is html-escaped.
"""

from __future__ import annotations

import base64
import io
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from itertools import pairwise
from pathlib import Path

import matplotlib as mpl
import matplotlib.style
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from schemas.events import iso_ms

GAP_MS = 10 * 60_000
"""Consecutive points farther apart than this are not joined by the price line."""

CLASS_COLOURS: Mapping[str, str] = {
    "spike": "#d62728",
    "shift": "#9467bd",
    "quadrant": "#ff7f0e",
    "divergence": "#1f77b4",
    "synchrony": "#17becf",
    "rotation": "#2ca02c",
}
"""Marker colour per event class; any other class is drawn in :data:`OTHER_COLOUR`."""

OTHER_COLOUR = "#7f7f7f"
TOP_EVENTS = 20

_MIN_SHARE = 0.12  # of the x axis, for the shortest island
_SPACER = 0.04  # of the x axis, between two islands
_DAY_MS = 86_400_000
_STEPS_MS = tuple(m * 60_000 for m in (1, 5, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080))
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_PNG_PX = (1600, 1000)
_DPI = 100
_SVG_W, _SVG_H = 960, 170
_SVG_PAD = (72, 10, 8, 22)  # left, right, top, bottom

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class PricePoint:
    """One close price: ``ts_ms`` epoch ms UTC (a 1-minute bar's open), ``close`` in quote units."""

    ts_ms: int
    close: float


@dataclass(frozen=True)
class EventMark:
    """One event to mark: where (``ts_ms``, ``symbol``), what and how bad (``severity`` 0..100)."""

    ts_ms: int
    symbol: str
    event_class: str
    subtype: str
    severity: int
    event_id: str


@dataclass(frozen=True)
class _Island:
    start_ms: int
    end_ms: int
    x0: float
    x1: float


@dataclass(frozen=True)
class _Panel:
    symbol: str
    ts: IntArray
    close: FloatArray
    x: FloatArray
    starts: tuple[int, ...]  # index of each segment's first point; starts[0] == 0
    marks: tuple[tuple[float, float, EventMark], ...]  # (x, close, event), severity ascending
    n_events: int


def render(
    series: Mapping[str, Sequence[PricePoint]],
    events: Sequence[EventMark],
    png: Path,
    html: Path,
    *,
    title: str,
) -> None:
    """Write the picture of ``series`` with ``events`` marked to ``png`` and ``html``.

    Args:
        series: Close prices per symbol, one panel each in mapping order (a symbol without points
            gets an empty panel). Points need not be sorted.
        events: The events to mark; their order does not matter.
        png: Where to write the 1600x1000 PNG (overwritten).
        html: Where to write the self-contained HTML page (overwritten).
        title: The heading of both, plain text.
    """
    panels = [_panel(sym, pts, events) for sym, pts in series.items()]
    islands = _islands([s for p in panels for s in _spans(p)])
    panels = [_place(p, islands, events) for p in panels]
    png_bytes = _png(panels, islands, events, title)
    png.write_bytes(png_bytes)
    html.write_bytes(_page(panels, islands, events, title, png_bytes).encode("utf-8"))


# ---------------------------------------------------------------- data: segments, islands, marks


def _panel(symbol: str, points: Sequence[PricePoint], events: Sequence[EventMark]) -> _Panel:
    ts = np.fromiter((p.ts_ms for p in points), dtype=np.int64, count=len(points))
    close = np.fromiter((p.close for p in points), dtype=np.float64, count=len(points))
    order = np.argsort(ts, kind="stable")
    ts, close = ts[order], close[order]
    starts = (0, *(int(i) + 1 for i in np.flatnonzero(np.diff(ts) > GAP_MS))) if len(ts) else ()
    n_events = sum(1 for e in events if e.symbol == symbol)
    return _Panel(symbol, ts, close, np.zeros(len(ts)), starts, (), n_events)


def _segments(panel: _Panel) -> Iterator[slice]:
    bounds = (*panel.starts, len(panel.ts)) if panel.starts else ()
    return (slice(a, b) for a, b in pairwise(bounds))


def _spans(panel: _Panel) -> Iterator[tuple[int, int]]:
    return ((int(panel.ts[s][0]), int(panel.ts[s][-1])) for s in _segments(panel))


def _islands(spans: list[tuple[int, int]]) -> list[_Island]:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] <= GAP_MS:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    shares = _shares([end - start for start, end in merged])
    islands, x = [], 0.0
    for (start, end), share in zip(merged, shares, strict=True):
        islands.append(_Island(start, end, x, x + share))
        x += share + _SPACER
    return islands


def _shares(durations: list[int]) -> list[float]:
    usable = 1.0 - _SPACER * max(0, len(durations) - 1)
    if not durations or _MIN_SHARE * len(durations) >= 1.0 or sum(durations) == 0:
        return [usable / max(1, len(durations))] * len(durations)
    floor = _MIN_SHARE * usable
    raw = [usable * d / sum(durations) for d in durations]
    small = [r < floor for r in raw]
    rest = sum(d for d, s in zip(durations, small, strict=True) if not s)
    room = usable - floor * sum(small)
    return [floor if s else room * d / rest for d, s in zip(durations, small, strict=True)]


def _to_x(islands: Sequence[_Island], ts: IntArray) -> FloatArray:
    starts = np.array([i.start_ms for i in islands], dtype=np.int64)
    which = np.clip(np.searchsorted(starts, ts, side="right") - 1, 0, len(islands) - 1)
    lo, hi = starts[which], np.array([i.end_ms for i in islands], dtype=np.int64)[which]
    x0, x1 = np.array([i.x0 for i in islands])[which], np.array([i.x1 for i in islands])[which]
    frac = np.where(hi > lo, (ts - lo) / np.maximum(hi - lo, 1), 0.5)
    return np.asarray(x0 + np.clip(frac, 0.0, 1.0) * (x1 - x0), dtype=np.float64)


def _place(panel: _Panel, islands: Sequence[_Island], events: Sequence[EventMark]) -> _Panel:
    if not len(panel.ts):
        return panel
    x = _to_x(islands, panel.ts)
    mine = sorted((e for e in events if e.symbol == panel.symbol), key=lambda e: e.severity)
    at = np.array([e.ts_ms for e in mine], dtype=np.int64)
    right = np.clip(np.searchsorted(panel.ts, at), 0, len(panel.ts) - 1)
    left = np.clip(right - 1, 0, len(panel.ts) - 1)
    nearest = np.where(np.abs(panel.ts[right] - at) < np.abs(at - panel.ts[left]), right, left)
    marks = tuple(
        (float(x[i]), float(panel.close[i]), e)
        for i, e in zip(nearest.tolist(), mine, strict=True)
        if abs(int(panel.ts[i]) - e.ts_ms) <= GAP_MS
    )
    return _Panel(panel.symbol, panel.ts, panel.close, x, panel.starts, marks, panel.n_events)


def _ticks(islands: Sequence[_Island], width_px: float) -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    for n, isl in enumerate(islands):
        fits = max(1, int((isl.x1 - isl.x0) * width_px / 55))
        step = next((s for s in _STEPS_MS if (isl.end_ms - isl.start_ms) / s < fits), _DAY_MS * 7)
        first = -(-isl.start_ms // step) * step
        stamps = list(range(first, isl.end_ms + 1, step)) or [isl.start_ms]
        xs = _to_x([isl], np.array(stamps, dtype=np.int64)).tolist()
        # Keep clear of the next island's first label (~40 px away at most).
        room = isl.x1 - (40 / width_px if n + 1 < len(islands) else 0.0)
        kept = [(x, ts) for x, ts in zip(xs, stamps, strict=True) if x <= room]
        for k, (x, ts) in enumerate(kept or [(xs[0], stamps[0])]):
            out.append((x, _tick_label(ts, step, first=k == 0)))
    return out


def _tick_label(ts_ms: int, step_ms: int, *, first: bool) -> str:
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    day = f"{_MONTHS[moment.month - 1]} {moment.day:02d}"
    if step_ms >= _DAY_MS:
        return day
    clock = f"{moment:%H:%M}"
    return f"{day}\n{clock}" if first or ts_ms % _DAY_MS == 0 else clock


def _gap_text(ms: int) -> str:
    return f"{ms / _DAY_MS:.1f} d" if ms >= _DAY_MS else f"{ms / 3_600_000:.1f} h"


def _colour(event_class: str) -> str:
    return CLASS_COLOURS.get(event_class, OTHER_COLOUR)


def _area(severity: int) -> float:
    # Marker area (pt^2) linear in severity: a severity-100 event looks 16x a severity-0 one.
    return 6.0 + 0.9 * min(100, max(0, severity))


def _legend(events: Sequence[EventMark]) -> list[tuple[str, str, int]]:
    counts = Counter(e.event_class if e.event_class in CLASS_COLOURS else "" for e in events)
    rows = [(c, colour, counts[c]) for c, colour in CLASS_COLOURS.items()]
    return rows + ([("other", OTHER_COLOUR, counts[""])] if counts[""] else [])


# ---------------------------------------------------------------- PNG


def _png(
    panels: Sequence[_Panel], islands: Sequence[_Island], events: Sequence[EventMark], title: str
) -> bytes:
    # matplotlib's defaults (not a user's matplotlibrc), then ours: the same bytes everywhere.
    with matplotlib.style.context("default"), mpl.rc_context({"font.size": 8}):
        fig = Figure(figsize=(_PNG_PX[0] / _DPI, _PNG_PX[1] / _DPI), dpi=_DPI, layout="constrained")
        FigureCanvasAgg(fig)
        fig.suptitle(title, fontsize=15, fontweight="bold", parse_math=False)
        handles = [
            Line2D([], [], ls="", marker="o", markersize=7, color=colour, label=f"{c} ({n})")
            for c, colour, n in _legend(events)
        ]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
        ncols = min(len(panels), 4, math.ceil(math.sqrt(1.6 * len(panels)))) or 1
        nrows = max(1, math.ceil(len(panels) / ncols))
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        ticks = _ticks(islands, _PNG_PX[0] / ncols)
        for n, ax in enumerate(axes):
            if n >= len(panels):
                ax.set_visible(False)
                continue
            _draw(ax, panels[n], islands, ticks, labels=n + ncols >= len(panels))
        if not panels:
            fig.text(0.5, 0.5, "no series", ha="center", color="grey")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


_BUSY = 60  # events in a panel beyond which markers shrink


def _draw(
    ax: Axes,
    panel: _Panel,
    islands: Sequence[_Island],
    ticks: Sequence[tuple[float, str]],
    *,
    labels: bool,
) -> None:
    for before, after in pairwise(islands):
        ax.axvspan(before.x1, after.x0, color="#e6e6e6", lw=0)
    for seg in _segments(panel):
        ax.plot(panel.x[seg], panel.close[seg], lw=0.6, color="#333333")
    if panel.marks:
        xs, ys, marked = zip(*panel.marks, strict=True)
        colours = [_colour(e.event_class) for e in marked]
        # A busy panel gets smaller, lighter markers so the price line stays visible.
        k = min(1.0, (_BUSY / len(marked)) ** 0.5)
        sizes = [max(4.0, _area(e.severity) * k) for e in marked]
        alpha = 0.85 if k == 1.0 else 0.55
        ax.scatter(
            xs, ys, s=sizes, c=colours, alpha=alpha, lw=0.4 * k, edgecolors="white", zorder=3
        )
    corner = f"{panel.symbol}  {panel.n_events} event{'s' if panel.n_events != 1 else ''}"
    box = {"facecolor": "white", "alpha": 0.75, "lw": 0, "pad": 1.5}
    ax.text(
        0.01,
        0.97,
        corner,
        transform=ax.transAxes,
        va="top",
        fontweight="bold",
        bbox=box,
        parse_math=False,
        zorder=4,
    )
    ax.set_xlim(-0.005, 1.005)
    ax.set_xticks([x for x, _ in ticks], [t for _, t in ticks] if labels else [], fontsize=7)
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
    if not len(panel.ts):
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, c="grey")
    ax.tick_params(labelsize=7, length=2)
    ax.grid(visible=True, lw=0.3, color="#dddddd")
    ax.spines[["top", "right"]].set_visible(False)
    if labels:
        for before, after in pairwise(islands):
            ax.text(
                (before.x1 + after.x0) / 2,
                0.02,
                f"gap {_gap_text(after.start_ms - before.end_ms)}",
                transform=ax.get_xaxis_transform(),
                rotation=90,
                ha="center",
                fontsize=7,
                color="#777777",
            )


# ---------------------------------------------------------------- HTML and SVG


def _y_scale(close: FloatArray) -> tuple[float, float, list[float]]:
    if not len(close):
        return 0.0, 1.0, []
    lo, hi = float(close.min()), float(close.max())
    pad = (hi - lo) * 0.05 or abs(lo) * 0.01 or 1.0
    lo, hi = lo - pad, hi + pad
    ticks = [float(t) for t in MaxNLocator(4).tick_values(lo, hi) if lo <= t <= hi]
    return lo, hi, ticks or [lo, hi]


def _svg(panel: _Panel, islands: Sequence[_Island]) -> str:
    left, right, top, bottom = _SVG_PAD
    width, height = _SVG_W - left - right, _SVG_H - top - bottom
    lo, hi, y_ticks = _y_scale(panel.close)

    def px(x: float) -> float:
        return left + x * width

    def py(y: float) -> float:
        return top + height * (hi - y) / (hi - lo)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_SVG_W} {_SVG_H}" role="img"'
        f' aria-label="{escape(panel.symbol)} price with events">',
        f'<rect class="frame" x="{left}" y="{top}" width="{width}" height="{height}"/>',
    ]
    for a, b in pairwise(islands):
        x, gap = px((a.x1 + b.x0) / 2), _gap_text(b.start_ms - a.end_ms)
        out.append(
            f'<rect class="gap" x="{px(a.x1):.1f}" y="{top}" width="{px(b.x0) - px(a.x1):.1f}"'
            f' height="{height}"/><text class="ax" transform="translate({x + 4:.1f},'
            f'{top + height - 4}) rotate(-90)">gap {gap}</text>'
        )
    step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
    digits = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    out.extend(
        f'<text class="ax" x="{left - 4}" y="{py(y) + 4:.1f}" text-anchor="end">'
        f"{y:,.{digits}f}</text>"
        for y in y_ticks
    )
    out.extend(
        f'<text class="ax" x="{px(x):.1f}" y="{_SVG_H - 6}" text-anchor="middle">'
        f"{escape(label.replace(chr(10), ' '))}</text>"
        for x, label in _ticks(islands, width)
    )
    for seg in _segments(panel):
        xs, ys = panel.x[seg].tolist(), panel.close[seg].tolist()
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
        out.append(f'<polyline class="price" points="{points}"/>')
    out.extend(_circle(px(x), py(y), e) for x, y, e in panel.marks)
    if not len(panel.ts):
        out.append(f'<text class="ax empty" x="{px(0.5)}" y="{py((lo + hi) / 2)}">no data</text>')
    out.append("</svg>")
    return "\n".join(out)


def _circle(cx: float, cy: float, e: EventMark) -> str:
    tip = (
        f"{iso_ms(e.ts_ms)} {e.symbol}\n{e.event_class}/{e.subtype}\n"
        f"severity {e.severity}\n{e.event_id}"
    )
    return (
        f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{0.6 * math.sqrt(_area(e.severity)):.1f}"'
        f' fill="{_colour(e.event_class)}"><title>{escape(tip)}</title></circle>'
    )


_CSS = """
body{font:14px system-ui,sans-serif;margin:24px auto;max-width:1640px;color:#222;padding:0 12px}
img{max-width:100%;height:auto;border:1px solid #ddd}
svg{width:100%;height:auto;display:block;max-width:1200px}
.frame{fill:none;stroke:#ccc}.gap{fill:#ececec}.ax{font:11px sans-serif;fill:#666}
.price{fill:none;stroke:#333;stroke-width:1}.empty{text-anchor:middle}
circle{stroke:#fff;stroke-width:.6;fill-opacity:.85}circle:hover{stroke:#000;stroke-width:1.5}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:4px}
.legend span.item{margin-right:14px;white-space:nowrap}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 10px;text-align:left}
tr:nth-child(even){background:#f6f6f6}td.num{text-align:right}code{font-size:12px}
"""


def _page(
    panels: Sequence[_Panel],
    islands: Sequence[_Island],
    events: Sequence[EventMark],
    title: str,
    png_bytes: bytes,
) -> str:
    first = min((i.start_ms for i in islands), default=0)
    last = max((i.end_ms for i in islands), default=0)
    span = f" · {escape(iso_ms(first))} to {escape(iso_ms(last))}" if islands else ""
    legend = "".join(
        f'<span class="item"><span class="dot" style="background:{colour}"></span>'
        f"{escape(c)} ({n})</span>"
        for c, colour, n in _legend(events)
    )
    out = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">',
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>{len(panels)} symbols · {len(events)} events{span} (UTC)."
        " Gaps of more than 10 minutes are cut from the time axis (shaded).</p>",
        f'<img alt="{escape(title)}" width="{_PNG_PX[0]}" height="{_PNG_PX[1]}"'
        f' src="data:image/png;base64,{base64.b64encode(png_bytes).decode("ascii")}">',
        f'<h2>Per symbol</h2>\n<p class="legend">{legend}</p>',
    ]
    for panel in panels:
        out.append(f"<h3>{escape(panel.symbol)} · {panel.n_events} events</h3>")
        out.append(_svg(panel, islands))
    out.extend(_top_table(events))
    out.append("</body>\n</html>\n")
    return "\n".join(out)


def _top_table(events: Sequence[EventMark]) -> list[str]:
    top = sorted(events, key=lambda e: (-e.severity, e.ts_ms, e.symbol, e.event_id))[:TOP_EVENTS]
    out = [
        f"<h2>Top {len(top)} events by severity</h2>",
        '<table id="top">\n<tr><th>time (UTC)</th><th>symbol</th><th>class</th><th>subtype</th>'
        "<th>severity</th><th>event_id</th></tr>",
    ]
    out.extend(
        f"<tr><td>{escape(iso_ms(e.ts_ms))}</td><td>{escape(e.symbol)}</td>"
        f'<td><span class="dot" style="background:{_colour(e.event_class)}"></span>'
        f'{escape(e.event_class)}</td><td>{escape(e.subtype)}</td><td class="num">{e.severity}</td>'
        f"<td><code>{escape(e.event_id)}</code></td></tr>"
        for e in top
    )
    out.append("</table>")
    example = escape(top[0].event_id) if top else "&lt;event_id&gt;"
    out.append(
        '<p class="hint">Why did it fire? <code>alpha explain &lt;event_id&gt;</code>'
        f" (e.g. <code>alpha explain {example}</code>)</p>"
    )
    return out
