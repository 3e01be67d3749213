"""CVaR guard (spec 000 §18): estimators, shrinkage, the book, caps, max size, POST /sizing."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packs.risk import CvarGuard, load_risk_policy
from processors.downstream.cvar import (
    CvarBook,
    CvarCap,
    add,
    cap_for,
    class_key,
    own_key,
    step,
)
from processors.downstream.cvar_kernels import (
    CvarError,
    empirical_cvar,
    estimate_cvar,
    gpd_cvar,
    max_size,
    shrink,
    tail_count,
)
from processors.downstream.cvar_sizing import SizingRequestError, sizing_request
from processors.downstream.types import ClosedTrade, Side, Trade
from tests.kit.packs import changed

T0 = 1_756_944_000_000  # 2025-09-04T00:00:00Z
CFG = load_risk_policy().cvar  # alpha 0.95, min_samples 20, prior_strength 10, prior -1.5


def make_closed(
    r: float,
    *,
    symbol: str = "BTC",
    tf: str = "15m",
    cluster: str = "majors",
    side: Side = "long",
    closed_ms: int = T0,
    entry: float = 100.0,
    stop: float = 97.0,
) -> ClosedTrade:
    trade = Trade(
        trade_id=f"t-{symbol}-{closed_ms}",
        asset_uid=1,
        symbol=symbol,
        cluster=cluster,
        tf=tf,
        side=side,
        qty=1.0,
        entry_price=entry,
        stop=stop,
        take_profit=entry + 2 * abs(entry - stop),
        risk_usd=abs(entry - stop),
        risk_pct=0.005,
        leverage=1.0,
        opened_ms=closed_ms - 60_000,
        route="paper",
        initial_stop=stop,
    )
    return ClosedTrade(
        trade=trade,
        exit_price=entry,
        closed_ms=closed_ms,
        pnl_usd=r * trade.risk_usd,
        fees_usd=0.0,
        r=r,
        reason="stop" if r < 0 else "take_profit",
    )


def book_of(rs: list[float], cfg: CvarGuard = CFG, **kw: Any) -> CvarBook:
    book = CvarBook()
    for i, r in enumerate(rs):
        closed = make_closed(r, closed_ms=T0 + i * 60_000, **kw)
        book, _ = add(book, closed, max_samples=cfg.max_samples)
    return book


def cap(book: CvarBook, cfg: CvarGuard = CFG, **kw: Any) -> CvarCap:
    args: dict[str, Any] = {"symbol": "BTC", "tf": "15m", "cluster": "majors", "side": "long"}
    args.update(kw)
    return cap_for(book, cfg=cfg, **args)


# ------------------------------------------------------------------ estimators
def test_tail_count_is_ceil_of_the_share_with_at_least_one_sample():
    assert tail_count(100, 0.95) == 5  # 0.05 * 100 is 5.000000000000004 in binary floats
    assert tail_count(21, 0.95) == 2  # 1.05 rounds up
    assert tail_count(19, 0.95) == 1
    assert tail_count(1, 0.99) == 1
    assert tail_count(40, 0.975) == 1
    assert tail_count(200, 0.975) == 5
    with pytest.raises(CvarError):
        tail_count(0, 0.95)
    with pytest.raises(CvarError):
        tail_count(10, 1.0)


def test_empirical_cvar_on_hand_computed_samples():
    samples = [0.5] * 18 + [-3.0, -2.0]  # 20 samples
    assert empirical_cvar(samples, 0.95) == -3.0  # worst 1
    assert empirical_cvar(samples, 0.90) == -2.5  # worst 2: (-3 - 2) / 2
    assert empirical_cvar([*samples, 1.0], 0.90) == pytest.approx((-3.0 - 2.0 + 0.5) / 3)
    assert empirical_cvar(list(reversed(samples)), 0.90) == -2.5  # order does not matter
    with pytest.raises(CvarError):
        empirical_cvar([], 0.95)


def gpd_outcomes(xi: float, beta: float, n: int, seed: int) -> list[float]:
    """Outcomes r = -L with losses L ~ GPD(xi, beta), by inverting the CDF."""
    u = np.random.default_rng(seed).uniform(size=n)
    losses = -beta * np.log1p(-u) if xi == 0 else beta / xi * ((1 - u) ** -xi - 1)
    return [-float(x) for x in losses]


def gpd_true_es(xi: float, beta: float, alpha: float) -> float:
    if xi == 0:
        return beta * -math.log(1 - alpha) + beta
    var = beta / xi * ((1 - alpha) ** -xi - 1)
    return float((var + beta) / (1 - xi))


@pytest.mark.parametrize(("xi", "beta"), [(0.25, 1.0), (0.0, 0.8), (-0.2, 1.5)])
def test_evt_recovers_the_expected_shortfall_of_a_known_gpd(xi: float, beta: float):
    samples = gpd_outcomes(xi, beta, 5000, seed=7)
    true_es = gpd_true_es(xi, beta, 0.975)
    evt = gpd_cvar(samples, 0.975, 0.90)
    assert evt is not None
    assert -evt == pytest.approx(true_es, rel=0.08)
    assert estimate_cvar(samples, 0.975, "evt", 0.90) == (evt, "evt")


def test_evt_is_deterministic_and_order_independent():
    samples = gpd_outcomes(0.3, 1.0, 400, seed=11)
    first = gpd_cvar(samples, 0.95, 0.90)
    assert first is not None
    assert gpd_cvar(samples, 0.95, 0.90) == first
    assert gpd_cvar(samples[::-1], 0.95, 0.90) == first


def test_evt_falls_back_to_empirical_when_it_cannot_fit():
    few = gpd_outcomes(0.2, 1.0, 50, seed=3)  # 5 excesses over the 0.9 quantile
    assert gpd_cvar(few, 0.95, 0.90) is None
    assert estimate_cvar(few, 0.95, "evt", 0.90) == (empirical_cvar(few, 0.95), "empirical")
    many = gpd_outcomes(0.2, 1.0, 1000, seed=3)
    assert gpd_cvar(many, 0.85, 0.90) is None  # alpha inside the threshold
    assert gpd_cvar(many, 0.95, 0.90, min_exceedances=200) is None
    flat = [-1.0] * 50 + [-2.0] * 50  # excesses without spread
    assert gpd_cvar(flat, 0.95, 0.40) is None
    infinite_mean = gpd_outcomes(2.0, 1.0, 2000, seed=5)  # xi >= 1: no finite ES
    assert gpd_cvar(infinite_mean, 0.95, 0.90) is None


# ------------------------------------------------------------------ shrinkage and caps
def test_shrink_is_the_pseudo_sample_blend():
    assert shrink(-3.0, 5, -1.5, 10.0) == pytest.approx((5 * -3.0 + 10 * -1.5) / 15)
    assert shrink(-3.0, 0, -1.5, 0.0) == -1.5
    assert shrink(-3.0, 5, -1.5, 0.0) == -3.0


def test_no_samples_anywhere_gives_the_pack_prior():
    c = cap(CvarBook())
    assert (c.source, c.cvar_r, c.n_samples, c.n_class_samples) == ("prior", -1.5, 0, 0)
    assert c.mode is None
    assert c.as_of_ms is None


def test_a_key_without_samples_falls_back_to_its_class():
    # 30 samples of another majors symbol, same side: the class holds >= min_samples
    other = book_of([0.8] * 27 + [-4.0, -3.0, -2.0], symbol="ETH")
    c = cap(other)
    assert c.source == "class"
    assert c.n_class_samples == 30
    assert c.cvar_r == pytest.approx((-4.0 - 3.0) / 2)  # ceil(0.05 * 30) = 2
    assert c.as_of_ms == T0 + 29 * 60_000


def test_few_own_samples_worse_than_the_prior_are_shrunk_toward_it():
    rs = [-3.0, 1.0, -2.5, 0.5, -3.5]  # own CVaR: worst 1 of 5 = -3.5
    c = cap(book_of(rs))
    assert c.source == "shrunk"
    # the class (majors, long) holds the same 5 trades: sparse, shrunk toward the pack prior;
    # the key is then shrunk toward that class prior (its trades count twice: conservative)
    class_prior = (5 * -3.5 + 10 * -1.5) / 15
    assert c.cvar_r == pytest.approx((5 * -3.5 + 10 * class_prior) / 15)
    assert c.n_class_samples == 5
    assert c.n_samples == 5


def test_few_own_samples_never_make_the_cap_looser_than_the_class():
    ethers = book_of([0.8] * 27 + [-4.0, -3.0, -2.0], symbol="ETH")
    class_cvar = cap(ethers).cvar_r
    book = ethers
    for i, r in enumerate([2.0, 1.5, -0.2]):  # a lucky start for BTC
        book, _ = add(book, make_closed(r, closed_ms=T0 + 10**8 + i), max_samples=500)
    c = cap(book)
    assert c.n_samples == 3
    assert c.source == "class"
    assert c.cvar_r == class_cvar


@settings(max_examples=60, deadline=None)
@given(
    own=st.lists(st.floats(-6, 4, allow_nan=False), min_size=1, max_size=19),
    klass=st.lists(st.floats(-6, 4, allow_nan=False), min_size=0, max_size=40),
)
def test_sparse_caps_are_at_least_as_conservative_as_the_fallback(own, klass):
    book = book_of(klass, symbol="ETH")
    for i, r in enumerate(own):
        book, _ = add(book, make_closed(r, closed_ms=T0 + 10**9 + i), max_samples=500)
    fallback = cap(book, symbol="NEW")  # a key of the same class without samples
    c = cap(book)
    assert fallback.n_samples == 0
    assert c.cvar_r <= fallback.cvar_r <= -1.0
    assert c.source in ("shrunk", "class", "prior")
    if len(klass) + len(own) < CFG.min_samples:
        assert fallback.cvar_r <= CFG.prior_cvar_r


def test_a_sparse_class_worse_than_the_prior_tightens_the_cap():
    book = book_of([-4.0, -3.0, 0.5], symbol="ETH")  # class CVaR -4 from 3 samples
    c = cap(book)
    assert (c.source, c.n_class_samples) == ("class", 3)
    assert c.cvar_r == pytest.approx((3 * -4.0 + 10 * -1.5) / 13)
    lucky = cap(book_of([2.0, 1.0, 0.5], symbol="ETH"))
    assert (lucky.source, lucky.cvar_r) == ("prior", -1.5)


def test_many_own_samples_use_the_own_estimate():
    rs = [1.0] * 36 + [-5.0, -1.0, -1.2, -1.1]  # 40 samples: worst 2
    c = cap(book_of(rs))
    assert c.source == "own"
    assert c.mode == "empirical"
    assert c.cvar_r == pytest.approx((-5.0 - 1.2) / 2)
    assert c.as_of_ms == T0 + 39 * 60_000


def test_evt_mode_fits_own_samples_when_there_are_enough():
    cfg = changed(CFG, mode="evt")
    rs = gpd_outcomes(0.2, 1.0, 400, seed=21)
    c = cap(book_of(rs, cfg), cfg)
    assert c.mode == "evt"
    assert c.cvar_r == gpd_cvar(rs[-cfg.max_samples :], 0.95, 0.90)
    sparse = cap(book_of(rs[:30], cfg), cfg)  # 3 excesses: empirical
    assert sparse.mode == "empirical"


def test_a_side_agnostic_cap_takes_the_more_conservative_side():
    book = book_of([0.5] * 24 + [-1.2, -1.4], side="long", symbol="ETH")
    for i, r in enumerate([0.5] * 24 + [-6.0, -4.0]):
        book, _ = add(
            book, make_closed(r, symbol="ETH", side="short", closed_ms=T0 + i), max_samples=500
        )
    assert cap(book, side="long").cvar_r == pytest.approx(-1.3)  # ceil(0.05 * 26) = 2
    both = cap(book, side=None)
    assert both.cvar_r == pytest.approx(-5.0)
    assert cap(book, side="short").cvar_r == both.cvar_r
    assert both.side is None


def test_no_cap_is_looser_than_max_cvar_r():
    c = cap(book_of([1.0] * 30 + [0.2]))  # a tail of winners
    assert c.source == "own"
    assert c.cvar_r == -1.0
    assert cap(book_of([1.0] * 31), max_cvar_r=-0.5).cvar_r == -0.5
    with pytest.raises(CvarError):
        cap(CvarBook(), max_cvar_r=0.0)


# ------------------------------------------------------------------ the book
def test_add_keeps_the_newest_max_samples_in_arrival_order():
    book = CvarBook()
    for i in range(25):
        book, keys = add(book, make_closed(float(-i), closed_ms=T0 + i), max_samples=10)
        assert keys == ("BTC|15m", "majors|long")
    assert book.own[own_key("BTC", "15m")].r == tuple(float(-i) for i in range(15, 25))
    assert book.classes[class_key("majors", "long")].r == book.own["BTC|15m"].r
    assert book.own["BTC|15m"].last_ms == T0 + 24
    assert book.n_own("BTC", "15m") == 10


def test_add_is_pure_and_a_late_trade_does_not_move_last_ms_back():
    book, _ = add(CvarBook(), make_closed(-1.0, closed_ms=T0 + 500), max_samples=10)
    before = book.to_bytes()
    later, _ = add(book, make_closed(-2.0, closed_ms=T0), max_samples=10)
    assert book.to_bytes() == before
    assert later.own["BTC|15m"].last_ms == T0 + 500
    assert later.own["BTC|15m"].r == (-1.0, -2.0)


def test_a_non_finite_outcome_is_rejected():
    book = book_of([-1.0])
    for bad in (math.nan, math.inf):
        same, keys = add(book, make_closed(bad), max_samples=10)
        assert keys == ()
        assert same is book
        assert step(book, make_closed(bad), CFG) == (book, ())
    with pytest.raises(CvarError):
        add(book, make_closed(-1.0), max_samples=0)


def mixed_sequence() -> list[ClosedTrade]:
    rs = gpd_outcomes(0.1, 1.0, 60, seed=2)
    names = [("BTC", "majors"), ("SOL", "l1"), ("ETH", "majors")]
    return [
        make_closed(
            r,
            symbol=names[i % 3][0],
            cluster=names[i % 3][1],
            side="long" if i % 2 else "short",
            tf="15m" if i % 4 else "1m",
            closed_ms=T0 + i * 1000,
        )
        for i, r in enumerate(rs)
    ]


def test_book_json_round_trips_byte_for_byte():
    book = CvarBook()
    for closed in mixed_sequence():
        book, _ = add(book, closed, max_samples=20)
    data = book.to_bytes()
    back = CvarBook.from_bytes(data)
    assert back == book
    assert back.to_bytes() == data
    doc = json.loads(data)
    assert list(doc) == ["classes", "own", "version"]
    assert list(doc["own"]) == sorted(doc["own"])
    assert "SOL|1m" in doc["own"]
    assert "l1|long" in doc["classes"]


def test_same_sequence_gives_the_same_bytes_and_caps():
    def replay() -> tuple[bytes, list[bytes]]:
        book, caps = CvarBook(), []
        for closed in mixed_sequence():
            book, out = step(book, closed, changed(CFG, mode="evt"), leverage_cap=10.0)
            caps += [c.to_bytes() for c in out]
        return book.to_bytes(), caps

    first = replay()
    assert replay() == first
    assert len(first[1]) == 60


def test_a_book_of_another_version_is_refused():
    doc = json.loads(book_of([-1.0]).to_bytes())
    doc["version"] = 2
    with pytest.raises(CvarError, match="version 2"):
        CvarBook.from_json(doc)


def test_cap_json_round_trips():
    _, (c,) = step(book_of([-1.0] * 3), make_closed(-2.0), CFG, leverage_cap=10.0)
    assert CvarCap.from_json(json.loads(c.to_bytes())) == c
    assert list(c.to_json()) == sorted(c.to_json())


# ------------------------------------------------------------------ max size
def test_max_size_hand_computed():
    # stop 1.5 x 2 = 3 per unit; tail loss 3 x 1.5 = 4.5 per unit; budget 10,000 x 0.5 % = 50
    qty, lev = max_size(10_000, 100.0, 1.5, 2.0, -1.5, 0.005, 10.0)
    assert qty == pytest.approx(50 / 4.5)
    assert lev == pytest.approx(50 / 4.5 * 100 / 10_000)
    qty, lev = max_size(10_000, 100.0, 1.5, 2.0, -1.5, 0.005, 0.05)  # the leverage cap binds
    assert qty == pytest.approx(5.0)
    assert lev == 0.05
    assert max_size(0.0, 100.0, 1.5, 2.0, -1.5, 0.005, 10.0) == (0.0, 0.0)
    assert max_size(10_000, 100.0, 1.5, 2.0, -1.5, 0.005, math.inf)[1] == pytest.approx(0.1111111)


@pytest.mark.parametrize(
    "args",
    [
        (10_000, 0.0, 1.5, 2.0, -1.5, 0.005, 10.0),
        (10_000, 100.0, 1.5, -2.0, -1.5, 0.005, 10.0),
        (10_000, 100.0, 1.5, 2.0, 0.0, 0.005, 10.0),
        (10_000, 100.0, 1.5, 2.0, -1.5, 0.0, 10.0),
        (10_000, 100.0, 1.5, 2.0, -1.5, 0.005, -1.0),
        (10_000, 100.0, 1.5, 2.0, -1.5, 0.005, math.nan),
        (math.nan, 100.0, 1.5, 2.0, -1.5, 0.005, 10.0),
    ],
)
def test_max_size_rejects_bad_inputs(args):
    with pytest.raises(CvarError):
        max_size(*args)


@given(
    a=st.floats(-20, -0.01),
    b=st.floats(-20, -0.01),
    atr=st.floats(0.01, 50),
)
def test_a_fatter_tail_never_allows_more_leverage(a, b, atr):
    worse, better = min(a, b), max(a, b)
    lev_worse = max_size(10_000, 100.0, 1.5, atr, worse, 0.005, 10.0)[1]
    assert lev_worse <= max_size(10_000, 100.0, 1.5, atr, better, 0.005, 10.0)[1]


def test_a_volatility_spike_lowers_max_leverage():
    """Golden path step 2: bigger losses -> more negative CVaR -> lower max_lev."""
    calm = [1.2, -1.0, 0.6, -1.05, 2.0, -0.4] * 10  # 60 trades, stops slip 5 % at worst
    book = book_of(calm)
    before = cap(book, side=None, stop_fraction=0.003, leverage_cap=10.0)
    for i, r in enumerate([-2.5, -3.0, -1.8, -3.4, -2.2]):  # the spike's stops gap through
        book, (after,) = step(
            book, make_closed(r, closed_ms=T0 + 10**8 + i, stop=99.7), CFG, leverage_cap=10.0
        )
    assert before.source == after.source == "own"
    assert after.cvar_r < before.cvar_r <= -1.0
    assert after.stop_fraction == pytest.approx(0.003)
    assert before.max_leverage is not None
    assert after.max_leverage is not None
    assert after.max_leverage < before.max_leverage
    # and at the sizing stage, with a wider ATR on top
    _, lev_calm = max_size(10_000, 100.0, 1.5, 0.2, before.cvar_r, 0.005, 10.0)
    _, lev_spike = max_size(10_000, 100.0, 1.5, 0.4, after.cvar_r, 0.005, 10.0)
    assert lev_spike < lev_calm


# ------------------------------------------------------------------ POST /sizing
REQ = {"equity": 10_000, "price": 100.0, "sl_kATR": 1.5, "atr": 2.0, "alpha": 0.95}


def test_sizing_request_with_the_spec_shape_uses_the_prior():
    out = sizing_request(REQ, cfg=CFG, leverage_cap=10.0)
    qty, lev = max_size(10_000, 100.0, 1.5, 2.0, -1.5, 0.005, 10.0)
    assert out == {
        "alpha": 0.95,
        "cvar_r": -1.5,
        "max_lev": lev,
        "max_size": qty,
        "n_samples": 0,
        "source": "prior",
    }


def test_sizing_request_reads_the_book_or_an_explicit_cvar():
    rs = [1.0] * 36 + [-5.0, -1.0, -1.2, -1.1]
    book = book_of(rs)
    out = sizing_request(
        {**REQ, "symbol": "BTC", "tf": "15m", "side": "long"},
        cfg=CFG,
        leverage_cap=10.0,
        book=book,
        cluster_of={"BTC": "majors"}.__getitem__,
    )
    assert (out["source"], out["n_samples"]) == ("own", 40)
    assert out["cvar_r"] == pytest.approx((-5.0 - 1.2) / 2)
    at_975 = sizing_request(
        {**REQ, "alpha": 0.975, "symbol": "BTC", "tf": "15m", "cluster": "majors"},
        cfg=CFG,
        leverage_cap=10.0,
        book=book,
    )
    assert at_975["cvar_r"] == -5.0  # ceil(0.025 * 40) = 1
    assert at_975["max_lev"] < out["max_lev"]
    explicit = sizing_request({**REQ, "cvar_r": -2.0}, cfg=CFG, leverage_cap=10.0, book=book)
    assert (explicit["source"], explicit["cvar_r"]) == ("request", -2.0)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], "must be a JSON object"),
        ({k: v for k, v in REQ.items() if k != "atr"}, "missing field atr"),
        ({**REQ, "sl_katr": 1.5}, "unknown field(s) sl_katr"),
        ({**REQ, "price": -1}, "price must be finite and > 0 (got -1)"),
        ({**REQ, "equity": "10000"}, "equity must be a number"),
        ({**REQ, "atr": True}, "atr must be a number"),
        ({**REQ, "atr": math.inf}, "atr must be finite"),
        ({**REQ, "alpha": 0.4}, "alpha must be finite and in (0.5, 1)"),
        ({**REQ, "cvar_r": 1.2}, "cvar_r must be finite and negative"),
        ({**REQ, "symbol": "BTC"}, "symbol and tf go together"),
        ({**REQ, "symbol": "", "tf": "15m"}, "symbol must be a non-empty string"),
        ({**REQ, "side": "up"}, "side must be 'long' or 'short'"),
    ],
)
def test_sizing_request_errors_name_the_problem(payload, message):
    with pytest.raises(SizingRequestError) as err:
        sizing_request(payload, cfg=CFG, leverage_cap=10.0)
    assert message in str(err.value)
    assert str(err.value).startswith("POST /sizing: ")


def test_sizing_request_lists_every_problem_and_needs_a_cluster():
    with pytest.raises(SizingRequestError) as err:
        sizing_request({"price": 0, "alpha": 2}, cfg=CFG, leverage_cap=10.0)
    text = str(err.value)
    for part in ("missing field equity", "missing field atr", "price must", "alpha must"):
        assert part in text
    with pytest.raises(SizingRequestError, match="cluster is needed"):
        sizing_request(
            {**REQ, "symbol": "BTC", "tf": "15m"}, cfg=CFG, leverage_cap=10.0, book=CvarBook()
        )
