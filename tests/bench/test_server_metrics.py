"""bench/server_metrics.py: the server's queue and write times in a latency phase, from its /metrics."""

import time

import pytest

from bench import report, server_metrics
from tests.bench.test_report import LIMITS, _figures
from tests.support import free_port, http_servers
from transport import metrics


def _text(name: str, cumulative: dict[str, int]) -> str:
    lines = [f'{name}_bucket{{le="{le}"}} {n}' for le, n in cumulative.items()]
    return "\n".join([f"# TYPE {name} histogram", *lines, f"{name}_count {list(cumulative.values())[-1]}"])


def test_percentiles_interpolate_within_the_bucket_they_fall_in():
    buckets = {0.001: 0.0, 0.002: 50.0, 0.005: 90.0, 0.01: 100.0, float("inf"): 100.0}

    assert server_metrics.quantile(0.5, buckets) == pytest.approx(0.002)
    assert server_metrics.quantile(0.25, buckets) == pytest.approx(0.0015)
    assert server_metrics.quantile(0.99, buckets) == pytest.approx(0.0095)
    assert server_metrics.quantile(0.5, {0.001: 0.0, float("inf"): 0.0}) is None
    assert server_metrics.quantile(0.99, {0.01: 1.0, float("inf"): 100.0}) == 0.01  # past the last bound: the bound


def test_a_phase_counts_only_what_the_histograms_gained_in_its_window():
    before = server_metrics.parse(_text("lpr_realtime_wait_seconds", {"0.001": 1000, "0.01": 1000, "+Inf": 1000}))
    after = server_metrics.parse(_text("lpr_realtime_wait_seconds", {"0.001": 1000, "0.01": 1100, "+Inf": 1100})
                                 + "\n" + _text("lpr_ingest_commit_seconds", {"0.005": 10, "+Inf": 10}))  # fmt: skip

    figures = server_metrics.figures(before, after)

    assert 1.0 < figures["queue_ms"]["p50"] < 10.0  # the hundred new ones, not the thousand before the window
    assert figures["write_ms"]["p99"] == pytest.approx(4.95)
    assert server_metrics.figures(after, after)["queue_ms"] == {"p50": None, "p99": None}


@pytest.fixture
def two_web_processes():
    """Two HTTP servers answering with what `transport.metrics` renders, as each Daphne's /metrics does."""
    with http_servers(lambda: metrics.render().encode(), lambda: metrics.render().encode()) as servers:
        yield [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]


def test_the_window_reads_each_web_process_from_its_opening_and_the_table_shows_it(two_web_processes):
    metrics.realtime_wait.observe_many([0.5] * 10)  # before the window: left out
    window = server_metrics.Window(two_web_processes, time.time())
    window.timer.join()
    metrics.realtime_wait.observe_many([0.004] * 10)  # in it: seen through each of the two processes
    metrics.ingest_commit.observe(0.002)

    figures = window.close()

    assert 3.0 < figures["queue_ms"]["p50"] <= 5.0 and 3.0 < figures["queue_ms"]["p99"] <= 5.0
    assert 1.0 < figures["write_ms"]["p50"] <= 2.0
    phase = {**_figures(1_000), "server": figures}
    results = {"meta": {"started_at": "now", "cpus": 2, "cpu_model": "cpu", "memory_gb": 8.0, "commit": "abc",
                        "load_average": [0.1, 0.1, 0.1], "warmup_s": 3, "measure_s": 10},
               "phases": {"ws_ack": phase}, "limits": LIMITS}  # fmt: skip
    rows = {line.split("  ")[0]: line for line in report.table(results).splitlines()}
    assert rows["server queue p99 ms"].split()[-1] == f"{figures['queue_ms']['p99']:.1f}"


def test_a_web_process_that_does_not_answer_leaves_the_figures_out_not_the_run():
    window = server_metrics.Window([f"http://127.0.0.1:{free_port()}"], time.time())

    assert window.close() == {}
    cells = {label: cell for label, cell, _ in report.ROWS}
    assert cells["server queue p99 ms"]("ws_ack", {**_figures(1_000), "server": {}}, LIMITS) == "-"
