"""bench/measure.py: how a benchmark phase's logs and database rows become its figures and its reconciliation."""

from bench import measure
from bench.measure import Sent, Stored


def _sent(rows: list[tuple[str, str, int, int, str]]) -> Sent:
    sent = Sent()
    for message_id, kind, send_us, ack_us, status in rows:
        sent.kind[message_id], sent.send_us[message_id] = kind, send_us
        if ack_us:
            sent.ack_us[message_id], sent.status[message_id] = ack_us, status
    return sent


def test_reconciliation_counts_lost_doubled_and_unexpected_reads():
    sent = _sent([("a", "d", 1, 2, "accepted"), ("b", "d", 1, 2, "accepted"), ("c", "d", 1, 0, "-"),
                  ("h", "h", 1, 2, "accepted")])  # fmt: skip
    stored = Stored(count={"a": 2, "c": 1, "x": 1}, in_window=4, ledger=3)

    check = measure.reconcile(sent, stored)

    assert check == {"sent": 3, "accepted": 2, "unanswered": 1, "refused": 0, "stored": 4, "lost": 1, "doubled": 1,
                     "unexpected": 1, "ledger_mismatch": 0}  # fmt: skip


def test_a_read_sent_but_never_answered_and_not_stored_is_not_lost():
    check = measure.reconcile(_sent([("a", "d", 1, 0, "-")]), Stored(count={}, in_window=0, ledger=0))

    assert (check["lost"], check["unanswered"]) == (0, 1)


def test_latencies_cover_accepted_detections_sent_in_the_window_only():
    sent = _sent([("early", "d", 5, 1_000, "accepted"), ("a", "d", 10, 2_010, "accepted"),
                  ("b", "d", 20, 4_020, "accepted"), ("h", "h", 15, 9_000, "accepted"),
                  ("refused", "d", 30, 9_000, "rejected"), ("late", "d", 100, 9_000, "accepted")])  # fmt: skip

    figures = measure.latencies(sent, {"a": 3_010, "b": 24_020}, 10, 100)

    assert figures["ack_ms"] == {"p50": 4.0, "p95": 4.0, "p99": 4.0, "n": 2}
    assert figures["dashboard_ms"]["n"] == 2 and figures["dashboard_ms"]["p99"] == 24.0


def test_the_dashboard_log_gives_first_arrivals_and_repeats_from_an_offset(tmp_path):
    log = tmp_path / "dashboard.log"
    log.write_text("old 1\n")
    offset = log.stat().st_size
    with log.open("a") as f:
        f.write("m1 10\nalert WA001NT 11\nm2 12\nm1 13\nm3 1")  # the last line is still being written

    arrivals, repeated, end = measure.read_dashboard(log, offset)

    assert arrivals == {"m1": 10, "m2": 12} and repeated == {"m1"}
    assert end == log.stat().st_size - len("m3 1")


def test_wrk_logs_pair_answers_with_requests_and_count_unnamed_answers(tmp_path):
    (tmp_path / "run.0").write_text("s id1 d 100\na id1 250 accepted\ns id2 h 300\na - 400 http200\n")

    sent = measure.read_wrk_logs(tmp_path / "run")

    assert sent.kind == {"id1": "d", "id2": "h"} and sent.ack_us == {"id1": 250} and sent.status == {"id1": "accepted"}
    assert measure.answers_between(sent, 0, 1_000) == 2
