"""topology.picture: the demo's PNG and HTML of price with the events marked."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib.image
import pytest

from topology.picture import OTHER_COLOUR, EventMark, PricePoint, render

T0 = 1_753_056_000_000  # 2025-07-21T00:00:00Z
MINUTE = 60_000
DAY = 86_400_000


def make_points(
    start_ts: int = T0, n: int = 120, *, close: float = 100.0, drift: float = 0.1
) -> list[PricePoint]:
    return [PricePoint(start_ts + i * MINUTE, close + drift * i) for i in range(n)]


def make_event(
    ts_ms: int = T0,
    *,
    symbol: str = "BTC",
    event_class: str = "spike",
    subtype: str = "return_spike",
    severity: int = 50,
    event_id: str = "ev-1",
) -> EventMark:
    return EventMark(ts_ms, symbol, event_class, subtype, severity, event_id)


Draw = Callable[..., tuple[bytes, str]]


@pytest.fixture
def draw(tmp_path: Path) -> Draw:
    """Render into tmp_path; return (png bytes, html text)."""

    def _draw(
        series: Mapping[str, Sequence[PricePoint]],
        events: Sequence[EventMark],
        *,
        title: str = "Demo",
        name: str = "pic",
    ) -> tuple[bytes, str]:
        png, page = tmp_path / f"{name}.png", tmp_path / f"{name}.html"
        render(series, events, png, page, title=title)
        return png.read_bytes(), page.read_text(encoding="utf-8")

    return _draw


def svgs(page: str) -> list[str]:
    return re.findall(r"<svg .*?</svg>", page, flags=re.S)


def titles(svg: str) -> list[str]:
    return re.findall(r"<title>(.*?)</title>", svg, flags=re.S)


def polylines(svg: str) -> list[list[tuple[float, ...]]]:
    found = re.findall(r'<polyline class="price" points="([^"]*)"/>', svg)
    return [[tuple(float(v) for v in p.split(",")) for p in line.split()] for line in found]


def circles(svg: str) -> list[tuple[str, str, str]]:
    return re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="[\d.]+" fill="(#[0-9a-f]+)">', svg)


def top_rows(page: str) -> list[str]:
    return re.findall(r"<tr><td>.*?</tr>", first(r'<table id="top">(.*?)</table>', page))


def first(pattern: str, text: str) -> str:
    found = re.search(pattern, text, flags=re.S)
    assert found is not None, pattern
    return found.group(1)


def test_png_is_a_1600x1000_png_without_a_software_tag(draw, tmp_path):
    png, _ = draw({"BTC": make_points(), "ETH": make_points(close=3000.0)}, [make_event()])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert matplotlib.image.imread(tmp_path / "pic.png").shape[:2] == (1000, 1600)
    assert b"Software" not in png
    assert b"atplotlib" not in png


def test_html_is_self_contained_with_the_png_embedded(draw):
    _, page = draw({"BTC": make_points()}, [make_event()], title="Replay of July")
    assert "<h1>Replay of July</h1>" in page
    assert (
        '<img alt="Replay of July" width="1600" height="1000" src="data:image/png;base64,' in page
    )
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    assert "<script" not in page
    assert "<link" not in page


def test_one_svg_per_symbol_in_mapping_order(draw):
    series = {sym: make_points() for sym in ("SOL", "BTC", "ETH")}
    _, page = draw(series, [])
    charts = svgs(page)
    assert len(charts) == 3
    assert [first(r'aria-label="(\w+) ', c) for c in charts] == ["SOL", "BTC", "ETH"]


def test_one_title_per_event_with_its_id_in_its_symbol_chart(draw):
    series = {"BTC": make_points(), "ETH": make_points(close=3000.0)}
    events = [
        make_event(T0 + i * 7 * MINUTE, symbol=sym, severity=10 * i, event_id=f"{sym}-{i}")
        for sym in series
        for i in range(8)
    ]
    _, page = draw(series, events)
    for chart, sym in zip(svgs(page), series, strict=True):
        tips = titles(chart)
        assert len(tips) == 8
        assert sorted(t.splitlines()[-1] for t in tips) == sorted(f"{sym}-{i}" for i in range(8))
    tip = next(t for t in titles(svgs(page)[0]) if t.endswith("BTC-3"))
    assert tip == "2025-07-21T00:21:00Z BTC\nspike/return_spike\nseverity 30\nBTC-3"


def test_marker_sits_on_the_nearest_point_coloured_by_class(draw):
    points = [
        PricePoint(T0, 100.0),
        PricePoint(T0 + MINUTE, 120.0),
        PricePoint(T0 + 2 * MINUTE, 90.0),
    ]
    events = [make_event(T0 + MINUTE + 20_000, event_class="divergence")]
    _, page = draw({"BTC": points}, events)
    (line,) = polylines(svgs(page)[0])
    ((cx, cy, fill),) = circles(svgs(page)[0])
    assert (float(cx), float(cy)) == line[1]
    assert fill == "#1f77b4"


def test_unknown_class_is_grey_and_counted_as_other(draw):
    _, page = draw({"BTC": make_points()}, [make_event(event_class="brand_new")])
    ((_, _, fill),) = circles(svgs(page)[0])
    assert fill == OTHER_COLOUR
    assert "other (1)</span>" in page
    assert "spike (0)</span>" in page


def test_marker_size_grows_with_severity(draw):
    events = [
        make_event(T0 + i * 10 * MINUTE, severity=s, event_id=f"e{s}")
        for i, s in enumerate((0, 50, 100))
    ]
    _, page = draw({"BTC": make_points()}, events)
    radii = {
        tip: float(r)
        for r, tip in re.findall(r'r="([\d.]+)"[^>]*><title>[^<]*\n(e\d+)</title>', page)
    }
    assert radii["e0"] < radii["e50"] < radii["e100"]


def test_top_table_holds_the_20_most_severe_in_order(draw):
    events = [
        make_event(T0 + (i % 100) * MINUTE, severity=(i * 37) % 101, event_id=f"ev-{i:02d}")
        for i in range(60)
    ]
    _, page = draw({"BTC": make_points()}, events)
    rows = top_rows(page)
    assert len(rows) == 20
    severities = [int(first(r'<td class="num">(\d+)</td>', r)) for r in rows]
    assert severities == sorted((e.severity for e in events), reverse=True)[:20]
    ids = [first(r"<code>(ev-\d+)</code>", r) for r in rows]
    expected = sorted(events, key=lambda e: (-e.severity, e.ts_ms))[:20]
    assert ids == [e.event_id for e in expected]
    assert "alpha explain &lt;event_id&gt;" in page
    assert f"alpha explain {expected[0].event_id}" in page


def test_all_text_is_escaped(draw):
    series = {"<b>": make_points(), "A&B": make_points()}
    events = [
        make_event(symbol="<b>", event_class="<i>x</i>", subtype='"q"&', event_id="<id>"),
        make_event(symbol="A&B", event_id="plain"),
    ]
    _, page = draw(series, events, title="cost $5 <script>alert(1)</script>")
    body = page.split("<body>", 1)[1]
    for raw in ("<b>", "<i>", "<id>", "<script>", "A&B", '"q"&'):
        assert raw not in body
    assert "<h3>&lt;b&gt; · 1 events</h3>" in page
    assert "<h1>cost $5 &lt;script&gt;alert(1)&lt;/script&gt;</h1>" in page
    assert "&lt;i&gt;x&lt;/i&gt;/&quot;q&quot;&amp;" in titles(svgs(page)[0])[0]
    assert "<td><code>&lt;id&gt;</code></td>" in page


def test_rendering_twice_gives_identical_bytes(draw):
    series = {"BTC": make_points(n=500), "ETH": make_points(n=500, drift=-0.2)}
    events = [make_event(T0 + i * 13 * MINUTE, severity=i, event_id=f"e{i}") for i in range(30)]
    first = draw(series, events, name="one")
    assert draw(series, events, name="two") == first
    assert draw(dict(reversed(series.items())), events, name="three") != first


def test_a_39_day_gap_breaks_the_line_and_is_cut_from_the_axis(draw):
    july = make_points(T0, n=4 * 1440)  # 4 days of 1-minute bars
    september = make_points(T0 + 4 * DAY + 39 * DAY, n=45)  # 45 minutes, 39 days later
    _, page = draw({"BTC": july + september}, [])
    chart = svgs(page)[0]
    first, second = polylines(chart)
    assert (len(first), len(second)) == (4 * 1440, 45)
    plot_left, plot_width = 72.0, 960 - 72 - 10
    assert first[0][0] == plot_left
    assert second[-1][0] == plot_left + plot_width
    # The 45 minutes get a readable share of the width, not 45 / (5 days + 39 days) of it.
    assert second[-1][0] - second[0][0] > 0.1 * plot_width
    assert second[0][0] - first[-1][0] < 0.06 * plot_width
    assert "gap 39.0 d</text>" in chart


def test_line_breaks_only_where_points_are_more_than_10_minutes_apart(draw):
    points = make_points(T0, n=60) + make_points(T0 + 69 * MINUTE, n=60)  # 10 min: joined
    points += make_points(T0 + 139 * MINUTE, n=60)  # 11 min: broken
    _, page = draw({"BTC": points, "ETH": make_points(T0, n=200)}, [])
    btc, eth = svgs(page)
    assert [len(line) for line in polylines(btc)] == [120, 60]
    assert [len(line) for line in polylines(eth)] == [200]
    assert 'class="gap"' not in btc  # ETH covers the 11 minutes: one island, nothing cut


def test_unsorted_points_are_drawn_in_time_order(draw):
    points = make_points(n=50)
    _, page = draw({"BTC": list(reversed(points))}, [])
    (line,) = polylines(svgs(page)[0])
    xs = [x for x, _ in line]
    assert xs == sorted(xs)


def test_no_events(draw):
    png, page = draw({"BTC": make_points()}, [])
    assert png.startswith(b"\x89PNG")
    assert "<circle" not in page
    assert top_rows(page) == []
    assert "<h2>Top 0 events by severity</h2>" in page


def test_a_symbol_without_points_is_an_empty_chart(draw):
    events = [make_event(symbol="EMPTY", event_id="lost"), make_event(event_id="kept")]
    png, page = draw({"BTC": make_points(), "EMPTY": []}, events)
    assert png.startswith(b"\x89PNG")
    btc, empty = svgs(page)
    assert "no data</text>" in empty
    assert polylines(empty) == []
    assert titles(empty) == []
    assert [t.splitlines()[-1] for t in titles(btc)] == ["kept"]
    assert len(top_rows(page)) == 2  # the unplaced event is still listed


def test_an_event_far_from_every_point_gets_no_marker(draw):
    events = [make_event(T0 + 3 * DAY, event_id="late"), make_event(T0 + 5 * MINUTE)]
    _, page = draw({"BTC": make_points()}, events)
    assert len(circles(svgs(page)[0])) == 1
    assert "<h3>BTC · 2 events</h3>" in page


def test_no_series_at_all(draw):
    png, page = draw({}, [make_event()])
    assert png.startswith(b"\x89PNG")
    assert svgs(page) == []
    assert len(top_rows(page)) == 1
