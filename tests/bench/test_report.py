"""bench/report.py: the PASS/FAIL column judges each phase against the issue's targets and the run's own limits."""

import json

import pytest

from bench import report


def _figures(stored_per_s: float, requests_per_s: float | None = None, ack_p99=1.0, dashboard_p99=1.0) -> dict:
    percentiles = lambda p99: {"p50": p99 / 2, "p95": p99, "p99": p99, "n": 100}  # noqa: E731
    return {"stored_per_s": stored_per_s, "requests_per_s": requests_per_s, "ack_ms": percentiles(ack_p99),
            "dashboard_ms": percentiles(dashboard_p99), "seconds": 10.0, "window_us": [0, 10e6],
            "reconciliation": {"sent": 1, "accepted": 1, "unanswered": 0, "refused": 0, "stored": 1, "lost": 0,
                               "doubled": 0, "unexpected": 0, "ledger_mismatch": 0},
            "dashboard": {"stored": 1, "seen": 1, "repeated": 0}, "cpu_s": {"daphne": 5.0, "client": 0.5},
            "peak_rss_mb": {"daphne": 150.0}, "other_cpu_s": 0.0}  # fmt: skip


META = {"started_at": "now", "cpus": 2, "cpu_model": "cpu", "memory_gb": 8.0, "commit": "abc",
        "load_average": [0.1, 0.1, 0.1], "warmup_s": 3, "measure_s": 10}  # fmt: skip
LIMITS = {"bare_view": {"requests_per_s": 1000.0}, "postgres": {"executemany_per_s": 40_000.0, "copy_per_s": 50_000.0},
          "bare_paho": {"messages_per_s": 20_000.0}}  # fmt: skip


@pytest.mark.parametrize(
    "phase, figures, expected",
    [
        ("rest_batch", _figures(30_000), [True]),
        ("rest_batch", _figures(29_999), [False]),
        ("rest_single", _figures(590, requests_per_s=600), [True]),  # the ratio is of requests, health included
        ("rest_single", _figures(590, requests_per_s=599), [False]),
        ("mqtt", _figures(11_000), [True, False]),  # 11,000 is under 0.6 of bare paho's 20,000
        ("mqtt", _figures(12_000), [True, True]),
        ("websocket", _figures(4_999), [False]),
        ("socketio", _figures(3_000), [True]),
        ("mixed", _figures(1_000, dashboard_p99=49.9), [True]),
        ("mixed", _figures(1_000, dashboard_p99=50.0), [False]),
        ("ws_ack", _figures(1_000, ack_p99=9.9), [True]),
    ],
)
def test_verdicts_follow_the_targets(phase, figures, expected):
    assert report.verdicts(phase, figures, LIMITS) == expected


def test_a_ratio_target_without_its_limit_is_not_judged():
    assert report.verdicts("mqtt", _figures(12_000), {}) == [True, None]


def test_the_table_names_a_lost_read_and_a_busy_machine(tmp_path):
    figures = _figures(31_000)
    figures["reconciliation"]["lost"], figures["other_cpu_s"] = 1, 5.0
    results = {"meta": {**META, "load_average": [1.5, 1.0, 1.0]}, "phases": {"rest_batch": figures}, "limits": LIMITS}

    text = report.table(results)

    assert "WARNING: the machine is busy" in text and "lost 1" in text and "other users" in text
    report.write_json(results, tmp_path / "a.json")
    report.write_json(results, tmp_path / "b.json")
    assert "REST batch" in report.compare(tmp_path / "a.json", tmp_path / "b.json")
    assert json.loads((tmp_path / "a.json").read_text())["phases"]["rest_batch"]["stored_per_s"] == 31_000


def test_the_load_generators_own_loop_lag_is_shown_for_the_worst_of_them():
    from bench.generators import Result
    from bench.phases import client_lag

    results = [Result([], (0, 1), {"loop_lag_ms": {"p50": 0.2, "p99": 3.5}}),
               Result([], (0, 1), {"loop_lag_ms": {"p50": 0.4, "p99": 1.0}}),
               Result([], (0, 1), {})]  # wrk, which does not report it  # fmt: skip
    figures = _figures(1_000)
    figures["client_lag_ms"] = client_lag(results)

    lines = report.table({"meta": META, "phases": {"ws_ack": figures}, "limits": LIMITS}).splitlines()

    assert figures["client_lag_ms"] == {"p50": 0.4, "p99": 3.5}
    assert [line.split()[-1] for line in lines if line.startswith("client loop lag")] == ["0.4", "3.5"]
    assert client_lag([results[2]]) is None
