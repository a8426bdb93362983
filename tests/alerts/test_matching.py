"""Watchlist matching through the pipeline: exact against lenient, candidates, scope, time window, patterns, passages."""

from __future__ import annotations

import json

from datetime import datetime, timedelta, timezone

import pytest

from detections import alerts, watchlists
from detections.alert_models import Alert, Delivery
from tests.alerts.conftest import detection, make_watchlist, make_webhook
from transport.pipeline import ingest

pytestmark = pytest.mark.django_db

CONFUSABLE_VARIANTS = ["8A5123", "BA5I23", "BA5l23", "BAS123", "B4S1Z3"]  # BA5123 misread by OCR


def read_and_match(device, plate: str, candidates=(), **fields) -> list[Alert]:
    env = detection(device.id, plate, candidates, **fields)
    assert ingest(env, device, "rest").status == "accepted"
    return alerts.match([env["message_id"]])


@pytest.mark.parametrize("variant", CONFUSABLE_VARIANTS)
def test_lenient_entry_catches_a_confusable_variant_and_exact_does_not(make_device, variant):
    exact = make_watchlist([{"value": "BA-5123", "match": "exact"}], name="exact")
    lenient = make_watchlist([{"value": "BA 5123", "match": "lenient"}], name="lenient")
    raised = read_and_match(make_device(), variant)
    assert [a.watchlist_id for a in raised] == [lenient.id]
    assert raised[0].matched == variant.upper() and exact.alerts.count() == 0


def test_exact_entry_matches_the_same_plate_written_differently(make_device):
    make_watchlist([{"value": "ba-5123", "match": "exact"}])
    assert [a.plate for a in read_and_match(make_device(), "BA 5123")] == ["BA 5123"]


def test_lenient_allows_one_edit_more_but_not_an_unrelated_plate(make_device):
    make_watchlist([{"value": "XY98765", "match": "lenient"}])
    device = make_device()
    assert len(read_and_match(device, "XY9876")) == 1  # one character dropped
    assert read_and_match(make_device(), "QQ11111") == []


def test_lenient_matches_a_candidate_exact_does_not(make_device):
    make_watchlist([{"value": "KL4402", "match": "lenient"}], name="lenient")
    make_watchlist([{"value": "KL4403", "match": "exact"}], name="exact")
    raised = read_and_match(make_device(), "ZZ9999", candidates=("KL44O2", "KL4403"))
    assert [(a.watchlist.name, a.matched) for a in raised] == [("lenient", "KL44O2")]


def test_scope_by_device_and_site_and_time_window(make_device):
    here, there = make_device(site="north"), make_device(site="south")
    now = datetime.now(timezone.utc)
    make_watchlist([
        {"value": "DEV001", "device": here},
        {"value": "SITE01", "site": "north"},
        {"value": "LATER1", "active_from": now + timedelta(hours=1)},
        {"value": "OVER01", "active_until": now - timedelta(hours=1)},
    ])  # fmt: skip
    assert len(read_and_match(here, "DEV001")) == 1
    assert read_and_match(there, "DEV001") == []
    assert len(read_and_match(here, "SITE01")) == 1
    assert read_and_match(there, "SITE01") == []
    assert read_and_match(here, "LATER1") == [] and read_and_match(here, "OVER01") == []


def test_pattern_entries_match_whole_normalised_plates(make_device):
    make_watchlist([{"kind": "pattern", "value": r"GOV\d{3}", "match": "exact", "priority": 5}])
    assert [a.priority for a in read_and_match(make_device(), "gov-123")] == [5]
    assert read_and_match(make_device(), "GOV1234") == []


def test_a_pattern_that_does_not_compile_is_refused():
    with pytest.raises(watchlists.InvalidEntry, match="does not compile"):
        watchlists.clean_value("pattern", "AB[12")


def test_one_alert_per_passage_however_many_reads_and_matches(make_device):
    make_watchlist([{"value": "PQ7788", "match": "lenient", "priority": 1},
                    {"value": "PQ7788", "match": "exact", "priority": 9}])  # fmt: skip
    make_webhook("http://127.0.0.1:9/hook")
    device = make_device()
    base = datetime.now(timezone.utc)
    envs = [detection(device.id, p, timestamp=(base + timedelta(seconds=i)).isoformat())
            for i, p in enumerate(["PQ7788", "PQ77B8", "PQ7788"])]  # fmt: skip
    for env in envs:
        assert ingest(env, device, "rest").status == "accepted"
    first = alerts.match([envs[0]["message_id"]])
    again = alerts.match([e["message_id"] for e in envs])
    assert len(first) == 1 and again == [] and first[0].priority == 9
    assert Alert.objects.count() == 1
    assert sorted(Delivery.objects.values_list("channel", flat=True)) == ["dashboard", "webhook"]


def test_a_new_passage_of_the_same_plate_raises_a_new_alert(make_device):
    make_watchlist([{"value": "RS1010"}])
    device = make_device()
    base = datetime.now(timezone.utc) - timedelta(hours=1)
    assert len(read_and_match(device, "RS1010", timestamp=base.isoformat())) == 1
    assert len(read_and_match(device, "RS1010", timestamp=(base + timedelta(minutes=10)).isoformat())) == 1


def test_inactive_watchlists_and_edits_are_seen_by_the_next_batch(make_device):
    watchlist = make_watchlist([{"value": "UV2020"}], active=False)
    device = make_device()
    base = datetime.now(timezone.utc) - timedelta(hours=2)
    assert read_and_match(device, "UV2020", timestamp=base.isoformat()) == []
    watchlist.active = True
    watchlist.save()
    assert len(read_and_match(device, "UV2020", timestamp=(base + timedelta(minutes=30)).isoformat())) == 1


def test_acknowledgement_records_who_and_when_once(make_device, django_user_model):
    make_watchlist([{"value": "WX3030"}])
    alert = read_and_match(make_device(), "WX3030")[0]
    user = django_user_model.objects.create_user("op1", password="secret-pass-123")
    acked = alerts.acknowledge(alert.id, user, "on it")
    assert acked.acknowledged_by == user and acked.acknowledged_at is not None and acked.ack_comment == "on it"
    with pytest.raises(alerts.AlreadyAcknowledged):
        alerts.acknowledge(alert.id, user)


def test_the_lenient_index_finds_exactly_what_comparing_with_every_entry_finds():
    import random
    import string

    from detections.plates import distance, fold, max_fuzzy_distance

    rng = random.Random(11)
    alphabet = string.ascii_uppercase + string.digits
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9))) for _ in range(600)]
    rules = [watchlists.Rule(i, 1, "plate", "lenient", w, fold(w), max_fuzzy_distance(fold(w)), None, None, "", None,
                             None, 1, "") for i, w in enumerate(words)]  # fmt: skip
    index = watchlists.Index(rules)
    at = datetime.now(timezone.utc)
    for _ in range(1500):
        read = list(rng.choice(words))
        for _ in range(rng.randint(0, 3)):  # substitutions, insertions, deletions
            op, pos = rng.choice("sid"), rng.randrange(len(read) + 1)
            if op == "i":
                read.insert(pos, rng.choice(alphabet))
            elif len(read) > 1:
                read[min(pos, len(read) - 1) : min(pos, len(read) - 1) + (op == "d")] = [rng.choice(alphabet)] * (op == "s")
        text = "".join(read)
        found = {rule.entry_id for rule, _ in index.hits(watchlists.Read("cam", "", at, text, []))}
        expected = {r.entry_id for r in rules if distance(fold(text), r.folded, r.limit) <= r.limit}
        assert found == expected, text


class _Sender:
    """What alert intake hands to Celery, kept; `done` is set once `expected` ids have gone."""

    def __init__(self, expected: int):
        import threading

        self.sent: list[list[str]] = []
        self.expected, self.done = expected, threading.Event()

    def __call__(self, ids: list[str]) -> None:
        self.sent.append(ids)
        if sum(map(len, self.sent)) == self.expected:
            self.done.set()


def test_intake_sends_a_burst_of_single_commits_as_few_batches():
    import time

    from detections.alert_intake import Batcher

    send = _Sender(200)
    sent, done = send.sent, send.done
    batcher = Batcher(send, interval=1.0)
    for n in range(200):  # 200 REST requests, one detection each, committed within a few milliseconds
        batcher.add([f"id-{n}"])
        time.sleep(0.0005)
    assert done.wait(5)
    assert [i for ids in sent for i in ids] == [f"id-{n}" for n in range(200)]
    assert len(sent) <= 3  # the first at once, the rest together after the interval


def test_intake_wakes_its_thread_only_when_it_has_something_to_do():
    """Commits that add to a buffer already waiting for the interval do not wake the sending thread (each wake-up
    takes the interpreter lock from the thread that is storing)."""
    from detections.alert_intake import Batcher
    from tests.support import wait_until

    send = _Sender(300)
    sent, done = send.sent, send.done
    batcher = Batcher(send, interval=0.5, max_ids=1000)
    wakes = 0
    notify = batcher._cond.notify

    def counted(n=1):
        nonlocal wakes
        wakes += 1
        notify(n)

    batcher._cond.notify = counted
    batcher.add(["first"])  # starts the thread, which sends it at once
    wait_until(lambda: len(sent) == 1, 5, every=0.005, what="the first send")
    for n in range(299):
        batcher.add([f"id-{n}"])
    assert done.wait(5)
    assert wakes == 2  # "first", then the first id after that send; the other 298 commits woke nothing

    batcher.add(["one"])  # wakes the thread, which then waits out the interval...
    batcher.add([f"more-{n}" for n in range(999)])  # ...unless the batch fills up: then it goes at once
    wait_until(lambda: len(sent) == 3, 0.4, every=0.005, what="the full batch to go before the interval")
    assert len(sent[-1]) == 1000 and wakes == 4



@pytest.mark.parametrize("other", [None, {"value": "QQ111", "match": "lenient"}, {"value": "Z.*", "kind": "pattern"}],
                         ids=["exact entries alone", "and a lenient entry", "and a pattern"])  # fmt: skip
def test_ingest_hands_matching_only_the_reads_that_could_hit(make_device, monkeypatch, settings, other,
                                                             django_capture_on_commit_callbacks):  # fmt: skip
    """While every active entry is an exact plate, only reads of a listed plate go to the worker; a lenient entry
    or a pattern can hit any read. A plate added to a list is handed over from the next check on."""
    from detections import alert_intake

    settings.ALERT_INDEX_CHECK_S = 0
    watchlists.forget_index()
    handed: list[list] = []
    monkeypatch.setattr(alert_intake.batcher, "add", handed.extend)
    listed = make_watchlist([{"value": "AB-1234"}] + ([other] if other else []))
    device = make_device()

    def ingest_plates(*plates: str) -> list[str]:
        handed.clear()
        with django_capture_on_commit_callbacks(execute=True):
            for plate in plates:
                assert ingest(detection(device.id, plate), device, "rest").status == "accepted"
        return [read[4] for read in handed]  # StoredRead.plate_normalized

    assert ingest_plates("AB 1234", "XY 9999") == (["AB1234"] if other is None else ["AB1234", "XY9999"])
    listed.entries.create(value="XY9999")
    assert ingest_plates("XY 9999", "CD 5678") == (["XY9999"] if other is None else ["XY9999", "CD5678"])
    listed.active = False
    listed.save()
    assert ingest_plates("AB 1234") == []


@pytest.mark.django_db(transaction=True)
def test_a_write_never_waits_for_the_watchlist_lookup(make_device, monkeypatch, settings,
                                                      django_assert_num_queries):  # fmt: skip
    """With ALERT_INDEX_CHECK_S set, the lists are looked up on a thread of their own: the committing thread
    makes no query for them (at 100,000 entries the check takes 10 ms), and until the first look every read
    goes to matching; a plate added to a list is handed over once the thread has looked again."""
    from detections import alert_intake
    from detections.alert_models import WatchlistEntry
    from tests.support import wait_until
    from transport.store import Stored

    settings.ALERT_INDEX_CHECK_S = 0.05
    watchlists.forget_index()
    monkeypatch.setattr(alert_intake, "watched", alert_intake._Watched())
    handed: list[list] = []
    monkeypatch.setattr(alert_intake.batcher, "add", handed.extend)
    listed = make_watchlist([{"value": "AB-1234"}])
    device = make_device()

    def stored(plate: str) -> Stored:
        from transport.envelope import parse

        env = parse(json.dumps(detection(device.id, plate)).encode())
        return Stored(device.id, "rest", env, env.timestamp, 1.0, plate_normalized=plate.replace(" ", ""))

    with django_assert_num_queries(0):
        alert_intake.on_stored([stored("XY 9999")])  # not looked up yet: handed over
    assert [r[4] for r in handed] == ["XY9999"]
    wait_until(lambda: alert_intake.watched.value is not watchlists.EVERY_READ, 5, what="the first look at the lists")
    handed.clear()
    with django_assert_num_queries(0):
        alert_intake.on_stored([stored("XY 9999"), stored("AB 1234")])
    assert [r[4] for r in handed] == ["AB1234"]

    WatchlistEntry.objects.create(watchlist=listed, value="XY9999")

    def handed_over() -> bool:
        handed.clear()
        alert_intake.on_stored([stored("XY 9999")])
        return [r[4] for r in handed] == ["XY9999"]

    wait_until(handed_over, 5, every=0.02, what="the new entry to reach alert intake")
