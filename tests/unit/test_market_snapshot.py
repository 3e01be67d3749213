"""The market processor (spec 002 §6): kernels and snapshots by hand, sealing, state, properties."""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packs.universe import UniversePolicy, load_universe_policy
from processors.market.kernels import (
    Candidate,
    dispersion,
    lead_index,
    oi_roc,
    pick_leader,
    rs_score,
    shock_count_from_events,
    shock_count_from_flags,
    top_bottom,
)
from processors.market.snapshot import (
    FRAME_KEYS,
    SNAPSHOT_KEYS,
    MarketInError,
    MarketProcessor,
    Output,
)
from tests.kit.packs import changed

L = 1_756_900_860_000  # a minute label (2025-09-03T12:01:00Z)
MINUTE_MS = 60_000
BASE = load_universe_policy()
RS = BASE.market.rs
LEADER = BASE.market.leader


def policy(**changes: Any) -> UniversePolicy:
    return changed(BASE, **changes)


def summary(
    uid: int,
    label: int = L,
    *,
    partition: int = 0,
    symbol: str | None = None,
    dq: str = "ok",
    revision: int = 0,
    tf: str = "m1",
    **fields: Any,
) -> dict[str, Any]:
    """Return a decoded market.in.v0 AssetSummary value (quiet defaults)."""
    body = {
        "asset_uid": uid, "symbol": symbol or f"A{uid}", "tf": tf, "exchange_ts": label,
        "revision": revision, "partition": partition, "dq_status": dq, "warmup": False,
        "mid_close": 100.0, "ret_m_1": 0.0, "ret_m_5": 0.0, "v_total_m_1": 1000.0,
        "z_vol_m_1": 0.0, "z_ret_abs_m_1": 0.0, "is_vol_spike_m_1": False,
        "is_price_spike_up_m_1": False, "is_price_spike_down_m_1": False, "oi_close": None,
        "funding_h_1": None, "time_to_next_funding_sec": None, "basis_bp_m_5": None,
    }  # fmt: skip
    body.update(fields)
    return {"body": body}


def seal(partition: int, label: int = L, kind: str = "close") -> dict[str, Any]:
    return {
        "body": {
            "partition": partition, "seal": kind, "exchange_ts": label,
            "watermark": label + 1500, "ingest_ts": label + 1600, "rows": 0,
        }
    }  # fmt: skip


def feed(proc: MarketProcessor, records: list[dict[str, Any]]) -> list[Output]:
    out: list[Output] = []
    for r in records:
        out += proc.step(r)
    return out


def snapshots(outputs: list[Output]) -> list[dict[str, Any]]:
    return [o.value for o in outputs if o.topic == "market.snapshot.v0"]


def frames(outputs: list[Output]) -> list[Output]:
    return [o for o in outputs if o.topic == "lattice.v0"]


# ---------------------------------------------------------------------- kernels
def test_rs_score_by_hand():
    # 0.5 * 2 * sign(-0.01) + 0.3 * 1.5 = -0.55; no oi_roc: OI term 0, complete
    score, incomplete = rs_score(
        z_ret_abs_m_1=2.0, ret_m_5=-0.01, z_vol_m_1=1.5, oi_roc_m_5=None, z_oi_roc_m_5=None, rs=RS
    )
    assert score == pytest.approx(-0.55)
    assert not incomplete
    # + 0.2 * sign(0.02) * min(|4|, 3) = +0.6 -> 0.05
    score, incomplete = rs_score(
        z_ret_abs_m_1=2.0, ret_m_5=-0.01, z_vol_m_1=1.5, oi_roc_m_5=0.02, z_oi_roc_m_5=4.0, rs=RS
    )
    assert score == pytest.approx(0.05)
    assert not incomplete
    # warm-up z: treated as 0, incomplete
    score, incomplete = rs_score(
        z_ret_abs_m_1=None, ret_m_5=0.01, z_vol_m_1=2.0, oi_roc_m_5=0.01, z_oi_roc_m_5=None, rs=RS
    )
    assert score == pytest.approx(0.6)
    assert incomplete


def test_lead_index_by_hand():
    assert lead_index(0.02, 2.0, None, 0.5) == pytest.approx(0.04)
    assert lead_index(0.02, 2.0, 0.01, 0.5) == pytest.approx(0.06)  # OI agrees: x1.5
    assert lead_index(-0.02, 2.0, 0.01, 0.5) == pytest.approx(0.04)  # disagrees: no bonus
    assert lead_index(0.02, -1.0, 0.01, 0.5) == 0.0  # max(z_vol, 0)
    assert lead_index(None, 2.0, 0.01, 0.5) == 0.0


def _leader(cands: list[tuple[int, float]], default: int | None = 1, prev: int | None = None):
    return pick_leader(
        [Candidate(uid, f"A{uid}", lead) for uid, lead in cands],
        default_uid=default,
        previous_uid=prev,
        logic=LEADER,
    )


def test_leader_rules():
    assert _leader([]) is None
    assert _leader([(1, 0.01), (7, 0.05)]) == 7
    assert _leader([(1, 0.0), (7, 1e-7)]) == 1  # low activity: BTC
    assert _leader([(7, 1e-7)], default=None) is None  # low activity, no BTC
    assert _leader([(1, 0.05), (7, 0.05)]) == 1  # tie including BTC
    assert _leader([(1, 0.01), (9, 0.05), (7, 0.05)]) == 7  # tie without BTC: lowest uid


def test_leader_hysteresis():
    # the previous leader keeps the role unless beaten by more than 20 %
    assert _leader([(1, 0.01), (7, 0.05), (9, 0.06)], prev=7) == 7
    assert _leader([(1, 0.01), (7, 0.05), (9, 0.0601)], prev=7) == 9
    assert _leader([(1, 0.0), (7, 0.0)], prev=7) == 1  # low activity overrides it
    assert _leader([(1, 0.01), (9, 0.06)], prev=7) == 9  # previous is no longer a candidate


def test_top_bottom_and_ties():
    scores = {1: 1.0, 2: 3.0, 3: 3.0, 4: -1.0, 5: 0.0, 6: -1.0, 7: 2.0}
    assert top_bottom(scores, 2) == ([2, 3], [6, 4])  # ties: lower uid ranks stronger
    assert top_bottom(scores, 5) == ([2, 3, 7, 1, 5], [6, 4])  # never overlap
    assert top_bottom({}, 5) == ([], [])


def test_dispersion_and_shocks():
    assert dispersion([1.0, 2.0, 3.0, 4.0], 2) == pytest.approx(math.sqrt(1.25))
    assert dispersion([1.0], 2) is None
    rows: list[dict[str, object]] = [
        {"is_vol_spike_m_1": True},
        {"is_price_spike_down_m_1": True, "is_vol_spike_m_1": None},
        {"is_oi_spike_up_m_5": True},
        {"is_vol_spike_m_1": False, "is_price_spike_up_m_1": None},
    ]
    assert shock_count_from_flags(rows) == 3
    events = [(1, L - 10), (1, L - 4000), (2, L - 5000), (3, L), (4, L + 1)]
    assert shock_count_from_events(events, L, 5000) == 2  # (L-5 s, L]: assets 1 and 3
    assert oi_roc(110.0, 100.0) == pytest.approx(0.1)
    assert oi_roc(None, 100.0) is None


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.integers(1, 40), st.sampled_from([-1.0, 0.0, 0.5, 2.0]), max_size=40),
    st.integers(1, 16),
)
def test_rs_top_bottom_disjoint_and_bounded(scores, n):
    top, bottom = top_bottom(scores, n)
    assert not set(top) & set(bottom)
    assert len(top) == min(n, len(scores))
    assert len(bottom) <= n
    assert len(top) + len(bottom) == min(len(scores), 2 * n)
    assert all(scores[a] >= scores[b] for a in top for b in bottom)


# ---------------------------------------------------------------------- one minute by hand
HAND = [
    summary(1, symbol="BTC", ret_m_5=0.01, z_vol_m_1=2.0, z_ret_abs_m_1=1.0, v_total_m_1=5000.0,
            time_to_next_funding_sec=1200),
    summary(2, symbol="ETH", ret_m_5=-0.02, z_vol_m_1=1.0, z_ret_abs_m_1=2.0, v_total_m_1=3000.0,
            time_to_next_funding_sec=1100),
    summary(3, ret_m_5=0.03, z_vol_m_1=3.0, z_ret_abs_m_1=3.0, is_vol_spike_m_1=True),
    summary(4, ret_m_5=0.0, z_vol_m_1=-1.0, z_ret_abs_m_1=0.5, v_total_m_1=500.0),
    summary(5, ret_m_5=None, z_vol_m_1=None, z_ret_abs_m_1=None, v_total_m_1=500.0, warmup=True),
    summary(6, dq="partial", v_total_m_1=10000.0, is_vol_spike_m_1=True),
]  # fmt: skip


def test_snapshot_by_hand():
    proc = MarketProcessor(policy(market={"rs": {"top_n": 2}}), partitions=1)
    out = feed(proc, [*HAND, seal(0)])
    assert [(o.topic, o.key, o.partition) for o in out] == [
        ("market.snapshot.v0", b"m1", 0),
        ("lattice.v0", None, 0),
    ]
    snap = snapshots(out)[0]
    assert tuple(snap) == SNAPSHOT_KEYS
    # RS: BTC .5*1 + .3*2 = 1.1; ETH -1 + .3 = -0.7; A3 1.5 + .9 = 2.4; A4 -0.3; A5 0 (warm-up)
    rs = {r["asset_uid"]: r["rs_score_m_5"] for r in snap["rs_scores"]}
    assert rs == pytest.approx({1: 1.1, 2: -0.7, 3: 2.4, 4: -0.3, 5: 0.0})
    assert [r["rs_incomplete"] for r in snap["rs_scores"]] == [False] * 4 + [True]
    assert (snap["rs_top"], snap["rs_top_uids"]) == (["A3", "BTC"], [3, 1])
    assert (snap["rs_bottom"], snap["rs_bottom_uids"]) == (["ETH", "A4"], [2, 4])
    # leader: candidates BTC, ETH (majors) + A3 (top decile of 5 = 1); leads .02, .02, .09
    assert (snap["leader"], snap["leader_uid"], snap["leader_prev"]) == ("A3", 3, None)
    assert snap["dominance_share"] == pytest.approx(1000 / 10000)  # A6 (partial) not counted
    assert (snap["shock_count_5s"], snap["shock_count_approx"]) == (1, True)  # A6 excluded
    assert snap["return_dispersion_m_5"] == pytest.approx(math.sqrt(3.25e-4))
    assert snap["vol_dispersion_m_5"] == pytest.approx(math.sqrt(2.1875))
    assert snap["rs_dispersion_m_5"] == pytest.approx(statistics.pstdev([1.1, -0.7, 2.4, -0.3, 0]))
    assert snap["time_to_next_funding_sec"] == 1200  # BTC's
    assert (snap["eligible_count"], snap["excluded_count"], snap["dq_status"]) == (5, 1, "ok")
    assert (snap["rs_incomplete_count"], snap["rs_approx"]) == (1, True)  # no z_oi_roc_m_5 sent
    assert (snap["context_scope"], snap["universe_size"], snap["universe_rev"]) == ("all", 0, 0)
    assert (snap["tf"], snap["exchange_ts"], snap["partitions_missing"]) == ("m1", L, [])
    frame = frames(out)[0].value
    assert tuple(frame) == FRAME_KEYS
    assert frame["partition"] == 0
    assert frame["leader"] == "A3"
    assert [a["asset_uid"] for a in frame["assets"]] == [1, 2, 3, 4, 5, 6]
    assert frame["assets"][5] == {
        "asset_uid": 6, "symbol": "A6", "rs_score_m_5": None, "rs_incomplete": None,
        "is_in_universe": False, "is_hot": False, "tier": "mid",
    }  # fmt: skip
    # D.7 tiers by dollar volume: 6 assets, so no top decile; A5 (500, ties A4 by uid) is last.
    assert [a["tier"] for a in frame["assets"]] == ["mid"] * 4 + ["tail", "mid"]
    json.dumps(out[0].value), json.dumps(frame)  # plain JSON data


def test_oi_term_when_the_lattice_sends_it():
    proc = MarketProcessor(BASE, partitions=1)
    rows = [summary(u, z_vol_m_1=1.0, oi_roc_m_5=0.02, z_oi_roc_m_5=5.0) for u in range(1, 6)]
    snap = snapshots(feed(proc, [*rows, seal(0)]))[0]
    assert snap["rs_approx"] is False
    assert snap["rs_scores"][0]["rs_score_m_5"] == pytest.approx(0.3 + 0.2 * 3.0)


def test_funding_without_btc_is_the_minimum():
    proc = MarketProcessor(BASE, partitions=1)
    rows = [summary(2, time_to_next_funding_sec=900), summary(3, time_to_next_funding_sec=300)]
    assert snapshots(feed(proc, [*rows, summary(4), seal(0)]))[0]["time_to_next_funding_sec"] == 300


def test_dq_partial_and_stale():
    proc = MarketProcessor(BASE, partitions=1)
    few = [summary(u) for u in range(1, 5)] + [summary(9, dq="stale")]
    snap = snapshots(feed(proc, [*few, seal(0)]))[0]
    assert (snap["eligible_count"], snap["excluded_count"], snap["dq_status"]) == (4, 1, "partial")
    out = feed(proc, [summary(1, L + MINUTE_MS, dq="stale"), seal(0, L + MINUTE_MS)])
    dead = snapshots(out)[0]
    assert dead["dq_status"] == "stale"
    assert dead["leader"] is None
    assert dead["dominance_share"] is None
    assert dead["return_dispersion_m_5"] is None


def test_leader_low_activity_defaults_to_btc_and_leader_prev_follows():
    proc = MarketProcessor(BASE, partitions=1)
    quiet = [summary(1, symbol="BTC"), summary(2, symbol="ETH", ret_m_5=0.01, z_vol_m_1=1e-5)]
    first = snapshots(feed(proc, [*quiet, seal(0)]))[0]
    assert first["leader"] == "BTC"  # ETH's lead 1e-7 < epsilon
    loud = [summary(1, L + MINUTE_MS, symbol="BTC"),
            summary(2, L + MINUTE_MS, symbol="ETH", ret_m_5=0.01, z_vol_m_1=2.0)]  # fmt: skip
    second = snapshots(feed(proc, [*loud, seal(0, L + MINUTE_MS)]))[0]
    assert (second["leader"], second["leader_prev"], second["leader_prev_uid"]) == ("ETH", "BTC", 1)


def test_event_driven_shock_count_is_exact():
    proc = MarketProcessor(BASE, partitions=1, spike_events=True)
    proc.note_spike(1, L - 1000)
    proc.note_spike(1, L - 10)
    proc.note_spike(2, L - 6000)  # outside the 5 s window
    rows = [summary(u, is_vol_spike_m_1=True) for u in range(1, 4)]
    snap = snapshots(feed(proc, [*rows, seal(0)]))[0]
    assert (snap["shock_count_5s"], snap["shock_count_approx"]) == (1, False)


# ---------------------------------------------------------------------- sealing
def test_waits_for_every_partition_and_fans_frames_out():
    proc = MarketProcessor(BASE, partitions=2)
    assert feed(proc, [summary(1, partition=0), seal(0)]) == []
    assert proc.pending_minutes == 1
    out = feed(proc, [summary(2, partition=1), summary(3, partition=1), seal(1)])
    fs = frames(out)
    assert [(f.partition, [a["asset_uid"] for a in f.value["assets"]]) for f in fs] == [
        (0, [1]),
        (1, [2, 3]),
    ]
    assert snapshots(out)[0]["eligible_count"] == 3


def test_duplicate_and_out_of_order_seals_are_ignored():
    proc = MarketProcessor(BASE, partitions=1)
    assert len(snapshots(feed(proc, [summary(1), seal(0)]))) == 1
    assert feed(proc, [seal(0)]) == []
    assert feed(proc, [summary(1, L + MINUTE_MS), seal(0, L + MINUTE_MS), seal(0)]) != []
    assert feed(proc, [seal(0, L - MINUTE_MS), seal(0, L, "final")]) == []
    assert proc.counters["duplicate_seal"] == 3
    assert proc.counters["final_seals"] == 1


def test_a_late_partition_releases_every_waiting_minute_in_order():
    proc = MarketProcessor(BASE, partitions=2)
    early = [
        r for m in range(3) for r in (summary(1, L + m * MINUTE_MS), seal(0, L + m * MINUTE_MS))
    ]
    assert feed(proc, early) == []
    out = feed(proc, [summary(2, L, partition=1), seal(1, L)])
    assert [s["exchange_ts"] for s in snapshots(out)] == [L]
    # partition 1 skips a seal: its close of L+2 covers L+1
    out = feed(proc, [summary(2, L + 2 * MINUTE_MS, partition=1), seal(1, L + 2 * MINUTE_MS)])
    assert [s["exchange_ts"] for s in snapshots(out)] == [L + MINUTE_MS, L + 2 * MINUTE_MS]
    assert [len(s["rs_scores"]) for s in snapshots(out)] == [1, 2]  # 2 has no row at L+1


def test_a_partition_that_starts_later_does_not_block_earlier_minutes():
    proc = MarketProcessor(BASE, partitions=2)
    feed(proc, [summary(1, L), seal(0, L), summary(1, L + MINUTE_MS), seal(0, L + MINUTE_MS)])
    out = feed(proc, [summary(2, L + MINUTE_MS, partition=1), seal(1, L + MINUTE_MS)])
    assert [(s["exchange_ts"], s["partitions_missing"]) for s in snapshots(out)] == [
        (L, []),
        (L + MINUTE_MS, []),
    ]


def test_max_partition_lag_forces_a_minute_out():
    proc = MarketProcessor(policy(market={"max_partition_lag_min": 2}), partitions=2)
    rows = [summary(u, L) for u in range(1, 7)]
    assert feed(proc, [*rows, seal(0, L), seal(0, L + MINUTE_MS)]) == []
    out = feed(proc, [seal(0, L + 2 * MINUTE_MS)])
    [snap] = snapshots(out)
    assert (snap["exchange_ts"], snap["partitions_missing"], snap["dq_status"]) == (
        L,
        [1],
        "partial",
    )
    assert feed(proc, [summary(9, L, partition=1)]) == []
    assert proc.counters["late_summary"] == 1


def test_missing_asset_and_ignored_records():
    proc = MarketProcessor(BASE, partitions=1)
    feed(proc, [summary(1), summary(2), seal(0)])
    out = feed(proc, [summary(1, L + MINUTE_MS), summary(2, L + MINUTE_MS, tf="m15"),
                      seal(0, L + MINUTE_MS)])  # fmt: skip
    assert [a["asset_uid"] for a in frames(out)[0].value["assets"]] == [1]
    assert proc.universe.assets[2]["stale"] == 1  # missing counts as stale for §7.6
    assert proc.counters["ignored_tf"] == 1
    assert feed(proc, [summary(1, L + MINUTE_MS)]) == []  # revision 0 of an emitted minute
    assert proc.counters["late_summary"] == 1


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ({"body": {"what": 1}}, "neither"),
        ({"body": {k: v for k, v in summary(1)["body"].items() if k != "v_total_m_1"}}, "v_total"),
        (summary(1, dq="meh"), "dq_status"),
        (summary(1, partition=3), "partition 3"),
        (seal(5), "partition 5"),
        ({"body": {"seal": "close"}}, "PartitionSeal"),
    ],
)
def test_malformed_records_raise(record, match):
    proc = MarketProcessor(BASE, partitions=2)
    with pytest.raises(MarketInError, match=match):
        proc.step(record)
    assert proc.to_state() == MarketProcessor(BASE, partitions=2).to_state()


def test_amended_rows_revise_the_history_of_the_next_minute():
    proc = MarketProcessor(BASE, partitions=1)
    base = [summary(1, symbol="BTC", v_total_m_1=5000.0), summary(3, ret_m_5=0.03, z_vol_m_1=3.0)]
    feed(proc, [*base, seal(0)])
    amended = summary(3, revision=1, ret_m_5=0.03, z_vol_m_1=3.0, v_total_m_1=3000.0)
    nxt = [{"body": dict(r["body"], exchange_ts=L + MINUTE_MS)} for r in base]
    snap = snapshots(feed(proc, [amended, seal(0, L, "final"), *nxt, seal(0, L + MINUTE_MS)]))[0]
    # A3's 5-minute dollar volume: 1000 now + 3000 (amended) before; BTC 5000 + 5000
    assert snap["leader"] == "A3"
    assert snap["dominance_share"] == pytest.approx(4000 / 14000)
    assert proc.universe.dv_l1(3) == 4000
    assert proc.counters["revised_rows"] == 1


def test_universe_membership_reaches_the_frames():
    proc = MarketProcessor(BASE, partitions=2)
    out: list[Output] = []
    for m in range(3):  # k_entry = 3: the universe bootstraps at the third minute
        label = L + m * MINUTE_MS
        out = feed(
            proc,
            [summary(1, label, symbol="BTC"), seal(0, label), summary(2, label, partition=1),
             seal(1, label)],
        )  # fmt: skip
    audit = [o for o in out if o.topic == "universe.v0"]
    assert [(o.key, o.partition, o.value["added"]) for o in audit] == [(b"universe", 0, [1, 2])]
    assert out[0].topic == "universe.v0"  # the audit precedes the snapshot and the frames
    snap = snapshots(out)[0]
    assert (snap["universe_size"], snap["universe_rev"], snap["context_scope"]) == (
        2,
        1,
        "universe",
    )
    flags = [(a["asset_uid"], a["is_in_universe"], a["is_hot"]) for f in frames(out)
             for a in f.value["assets"]]  # fmt: skip
    assert flags == [(1, True, False), (2, True, False)]
    [hot] = proc.hot(7, 90, "basis_jolt", L + 3 * MINUTE_MS)
    assert (hot.topic, hot.value["rev"], hot.value["hot_added"]) == ("universe.v0", 2, [7])


def test_aggregates_cover_only_universe_and_hot_assets():
    proc = MarketProcessor(BASE, partitions=1)
    for m in range(3):
        feed(proc, [summary(u, L + m * MINUTE_MS) for u in (1, 2)] + [seal(0, L + m * MINUTE_MS)])
    label = L + 3 * MINUTE_MS
    rows = [summary(1, label), summary(2, label), summary(8, label, dq="stale"),
            summary(9, label, is_vol_spike_m_1=True)]  # fmt: skip
    snap = snapshots(feed(proc, [*rows, seal(0, label)]))[0]
    assert (snap["context_scope"], snap["eligible_count"], snap["excluded_count"]) == (
        "universe", 2, 0)  # fmt: skip
    assert snap["shock_count_5s"] == 0  # 9 is not covered
    assert [r["asset_uid"] for r in snap["rs_scores"]] == [1, 2, 9]  # RS for every ok row


# ---------------------------------------------------------------------- state and determinism
def stream(partitions: int, minutes: int, seed: int) -> list[list[dict[str, Any]]]:
    """Return each partition's market.in.v0 sequence: summaries, close, amendments, final."""
    per: list[list[dict[str, Any]]] = [[] for _ in range(partitions)]
    for m in range(minutes):
        label = L + m * MINUTE_MS
        for uid in range(1, 10):
            p = uid % partitions
            x = (uid * 7919 + m * 104729 + seed) % 1000 / 1000
            per[p].append(summary(
                uid, label, partition=p, symbol="BTC" if uid == 1 else f"A{uid}",
                ret_m_5=(x - 0.5) / 50, z_vol_m_1=4 * x - 1, z_ret_abs_m_1=3 * x,
                v_total_m_1=1000.0 * (uid + x), oi_close=1e5 * (1 + x), mid_close=10.0 + uid,
                is_vol_spike_m_1=x > 0.8, time_to_next_funding_sec=3600 - m * 60 - uid,
                dq="partial" if (uid + m) % 11 == 0 else "ok",
            ))  # fmt: skip
        for p in range(partitions):
            per[p].append(seal(p, label))
        for uid in range(1, 10, 4):
            amended = summary(uid, label, partition=uid % partitions, revision=1,
                              v_total_m_1=2000.0 + m)  # fmt: skip
            per[uid % partitions].append(amended)
        for p in range(partitions):
            per[p].append(seal(p, label, "final"))
    return per


def sequential(per: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Round-robin by minute-ish chunks: one fixed interleaving."""
    out: list[dict[str, Any]] = []
    cursors = [0] * len(per)
    while any(c < len(s) for c, s in zip(cursors, per, strict=True)):
        for p, s in enumerate(per):
            if cursors[p] < len(s):
                out.append(s[cursors[p]])
                cursors[p] += 1
    return out


def test_state_round_trip_continues_bit_identically():
    records = sequential(stream(3, 8, seed=5))
    whole = MarketProcessor(BASE, partitions=3)
    expected = feed(whole, records)
    cut = len(records) // 2
    first = MarketProcessor(BASE, partitions=3)
    got = feed(first, records[:cut])
    blob = json.dumps(first.to_state(), sort_keys=True)
    resumed = MarketProcessor.from_state(BASE, json.loads(blob))
    assert json.dumps(resumed.to_state(), sort_keys=True) == blob
    got += feed(resumed, records[cut:])
    assert got == expected
    assert resumed.to_state() == whole.to_state()
    assert len(snapshots(expected)) == 8


def test_unknown_state_version_is_refused():
    state = MarketProcessor(BASE, partitions=1).to_state() | {"v": 7}
    with pytest.raises(MarketInError, match="version"):
        MarketProcessor.from_state(BASE, state)


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(0, 10_000))
def test_interleaving_of_partitions_does_not_change_the_output(rnd, seed):
    per = stream(3, 6, seed)
    expected = feed(MarketProcessor(BASE, partitions=3), sequential(per))
    cursors, merged = [0, 0, 0], []
    while any(c < len(s) for c, s in zip(cursors, per, strict=True)):
        p = rnd.choice([i for i in range(3) if cursors[i] < len(per[i])])
        merged.append(per[p][cursors[p]])
        cursors[p] += 1
    assert feed(MarketProcessor(BASE, partitions=3), merged) == expected


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False))
def test_order_of_same_minute_summaries_does_not_matter(rnd):
    proc_a, proc_b = MarketProcessor(BASE, partitions=1), MarketProcessor(BASE, partitions=1)
    rows = [r for r in stream(1, 1, seed=3)[0] if "asset_uid" in r["body"]][:9]
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    assert feed(proc_a, [*rows, seal(0)]) == feed(proc_b, [*shuffled, seal(0)])
