"""``alpha hrp backtest`` on the bundled 1h candles: the table, the JSON, one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from packs.risk import load_risk_policy
from processors.downstream.hrp import HrpBudget, compute_budget
from tests.kit.stack import alpha, stack_settings
from topology.cli import main
from topology.hrp_cli import DEFAULT_DATA, HOUR_MS, Candles, closes_until, read_candles

CUTOFF_MS = 1_751_328_000_000  # 2025-07-01T00:00Z


def test_json_is_the_budget_of_the_closes_before_midnight(capsys):
    code = main(["hrp", "backtest", "--date", "2025-07-01", "--open-risk", "l1=0.06", "--json"])
    assert code == 0
    budget = HrpBudget.from_json(json.loads(capsys.readouterr().out))
    params = load_risk_policy().hrp
    closes, skipped = closes_until(
        read_candles(DEFAULT_DATA), CUTOFF_MS, params.lookback_d * 24 + 1
    )
    assert skipped == {}
    assert budget == compute_budget("2025-07-01", closes, {"l1": 0.06}, params)
    assert budget.n_returns == 90 * 24
    assert len(budget.symbols) == 30
    l1 = budget.cluster("l1")
    assert l1 is not None
    assert l1.open_risk_pct == 0.06
    assert l1.scale < 1.0


def test_table_lists_clusters_scales_and_top_symbols(capsys):
    argv = ["hrp", "backtest", "--date", "2025-07-01", "--lookback-d", "60", "--top", "3"]
    assert main([*argv, "--open-risk", "l1=0.2", "memes=0.001", "--open-risk", "l1=0.01"]) == 0
    out = capsys.readouterr().out
    assert "HRP budget 2025-07-01 (sha256:" in out
    assert "1440 1h returns (lookback 60 d)" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for cluster in ("majors", "l1", "l2", "defi", "infra", "ai", "memes"):
        assert cluster in rows
    assert rows["l1"][-1] == "0.500"  # 21 % open against a ~5 % budget: clamped
    assert rows["l1"][-3] == "21.00"  # both --open-risk l1=... add up
    assert rows["memes"][-1] == "1.000"
    assert "top 3 symbols" in out


def test_symbols_without_enough_history_are_listed(capsys):
    # HYPE's candles start 2024-12-05T09:00Z: 158 returns before 2024-12-12.
    assert main(["hrp", "backtest", "--date", "2024-12-12"]) == 0
    out = capsys.readouterr().out
    assert "left out HYPE: 158 1h returns < min_history_h" in out
    assert "29 symbols" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--date", "2025-08-01"],
            "--date 2025-08-01 is outside the data: ",
        ),
        (["--date", "2024-09-01"], "can be computed for 2024-09-12 .. 2025-07-26"),
        (["--date", "01/07/2025"], "--date '01/07/2025': expected YYYY-MM-DD"),
        (["--date", "2025-07-01", "--open-risk", "l1"], "expected CLUSTER=FRACTION"),
        (["--date", "2025-07-01", "--open-risk", "l1=-1"], "expected CLUSTER=FRACTION"),
        (["--date", "2025-07-01", "--lookback-d", "1"], "--lookback-d: "),
        (["--date", "2025-07-01", "--data", "/nonexistent"], "/nonexistent: no such folder"),
    ],
)
def test_errors_are_one_line(capsys, argv, message):
    assert main(["hrp", "backtest", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("alpha: error: ")
    assert message in err


def test_a_folder_without_candles_is_an_error(tmp_path, capsys):
    shutil.copy(DEFAULT_DATA / "PROVENANCE.md", tmp_path)
    assert main(["hrp", "backtest", "--date", "2025-07-01", "--data", str(tmp_path)]) == 1
    assert "no *-1h-futures.feather files" in capsys.readouterr().err


def test_closes_stop_at_the_cutoff_and_after_the_last_gap():
    hours = np.array([0, 1, 2, 4, 5, 6, 7], dtype=np.int64) * HOUR_MS  # hour 3 missing
    candles = {
        "AAA": Candles("AAA", hours, np.arange(1.0, 8.0)),
        "OLD": Candles("OLD", hours[:3], np.arange(1.0, 4.0)),
    }
    closes, skipped = closes_until(candles, 7 * HOUR_MS, max_closes=10)
    assert closes == {"AAA": [4.0, 5.0, 6.0]}  # hours 4, 5, 6; the 7:00 candle closes at 8:00
    assert list(skipped) == ["OLD"]
    assert "no candle for the hour before the cut-off" in skipped["OLD"]
    assert closes_until(candles, 7 * HOUR_MS, max_closes=2)[0] == {"AAA": [5.0, 6.0]}


def test_the_installed_command_prints_one_line_without_traceback(tmp_path):
    result = alpha(stack_settings(tmp_path / "home"), "hrp", "backtest", "--date", "2030-01-01")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "alpha: error: --date 2030-01-01 is outside the data: "
        f"{DEFAULT_DATA} has 1h candles from 2024-09-04T11:00Z to 2025-07-26T04:00Z, so budgets"
        " (min_history_h 168) can be computed for 2024-09-12 .. 2025-07-26"
    ]
