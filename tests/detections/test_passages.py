"""Grouping reads into passages: same or nearly same plate, one device, within the window."""

import json
import uuid
from datetime import timedelta

import pytest
from django.test import Client

from detections.models import Detection, Passage
from tests.factories import DeviceFactory, OperatorFactory, envelope
from transport import pipeline

from .helpers import T0, ingest

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("both_write_paths")]


def _passage_of(message_id: str) -> Passage:
    return Detection.objects.select_related("passage").get(message_id=message_id).passage


def test_reads_of_one_car_form_one_passage_with_its_best_read():
    gate, other_gate = DeviceFactory(), DeviceFactory()
    first = ingest(gate, "AB123CD", timedelta(seconds=0), confidence=0.80)
    best = ingest(gate, "AB123C0", timedelta(seconds=2), confidence=0.95)  # D read as 0: same car
    ingest(gate, "A8123CD", timedelta(seconds=4), confidence=0.70)  # B read as 8
    ingest(gate, "AB123D", timedelta(seconds=5), confidence=0.60)  # a character lost: within one edit
    later = ingest(gate, "AB123CD", timedelta(seconds=20))  # past the 5 s window: the car came back
    elsewhere = ingest(other_gate, "AB123CD", timedelta(seconds=1))  # another camera
    different = ingest(gate, "ZZ999ZZ", timedelta(seconds=1))  # another car at the same gate

    passage = _passage_of(first)
    assert passage.read_count == 4
    assert (passage.first_at, passage.last_at) == (T0, T0 + timedelta(seconds=5))
    assert (str(passage.best_message_id), passage.plate_normalized, passage.best_confidence) == (best, "AB123C0", 0.95)
    assert len({_passage_of(m).id for m in (first, later, elsewhere, different)}) == 4
    assert Passage.objects.count() == 4
    assert Detection.objects.filter(passage=passage).count() == 4


def test_a_passage_keeps_its_id_as_later_batches_extend_it():
    gate = DeviceFactory()
    first = ingest(gate, "AB123CD", timedelta(seconds=0), confidence=0.7)
    passage_id = _passage_of(first).id
    late = ingest(gate, "AB123CD", timedelta(seconds=-3), confidence=0.6)  # queued offline, arrives after
    better = ingest(gate, "AB123CD", timedelta(seconds=4), confidence=0.99)
    assert _passage_of(late).id == passage_id == _passage_of(better).id
    passage = Passage.objects.get(id=passage_id)
    assert passage.read_count == 3
    assert (passage.first_at, passage.last_at) == (T0 - timedelta(seconds=3), T0 + timedelta(seconds=4))
    assert (str(passage.best_message_id), passage.best_confidence) == (better, 0.99)


def test_one_batch_of_many_reads_groups_like_single_reads():
    gate = DeviceFactory()
    at = [T0 + timedelta(seconds=s) for s in (0, 1, 2, 30, 31)]
    envs = [envelope(gate.id, payload={"plate": p, "confidence": 0.9}, timestamp=t.isoformat())
            for p, t in zip(["AB123CD", "AB123CD", "AB123CO", "AB123CD", "AB123CD"], at)]  # fmt: skip
    acks = pipeline.ingest_batch([pipeline.Inbound(e, gate, "rest") for e in reversed(envs)])
    assert {a.status for a in acks} == {"accepted"}
    counts = sorted(Passage.objects.filter(device=gate).values_list("read_count", flat=True))
    assert counts == [2, 3]


def test_the_window_is_configurable(settings):
    settings.PASSAGE_WINDOW_S = 1.0
    gate = DeviceFactory()
    ingest(gate, "AB123CD", timedelta(seconds=0))
    ingest(gate, "AB123CD", timedelta(seconds=3))
    assert Passage.objects.filter(device=gate).count() == 2


def test_search_can_return_passages_instead_of_reads():
    gate = DeviceFactory()
    for s in (0, 1, 2):
        ingest(gate, "AB123CD", timedelta(seconds=s))
    ingest(gate, "AB123CD", timedelta(minutes=5))
    client = Client()
    client.force_login(OperatorFactory())
    reads = client.get("/api/v1/detections/", {"plate": "AB123CD"}).json()
    passages = client.get("/api/v1/detections/", {"plate": "AB123CD", "view": "passages"}).json()
    assert reads["count"] == 4
    assert passages["count"] == 2
    assert [p["read_count"] for p in passages["results"]] == [1, 3]
    assert {"first_at", "last_at", "best_message_id", "best_confidence"} <= set(passages["results"][0])


def test_near_means_one_edit_by_default_and_is_configurable(settings):
    gate = DeviceFactory()
    first = ingest(gate, "AB123CD", timedelta(seconds=0))
    two_off = ingest(gate, "AB12XCY", timedelta(seconds=1))  # two edits: another car by default
    one_off = ingest(gate, "AB123CX", timedelta(seconds=2))  # substitution at the same place
    inserted = ingest(gate, "AB1234CD", timedelta(seconds=3))  # one character more
    assert _passage_of(two_off).id != _passage_of(first).id
    assert _passage_of(one_off).id == _passage_of(inserted).id == _passage_of(first).id

    settings.PASSAGE_MAX_DISTANCE = 2
    other = DeviceFactory()
    a = ingest(other, "AB123CD", timedelta(seconds=0))
    b = ingest(other, "AB12XCY", timedelta(seconds=1))
    c = ingest(other, "XY999ZZ", timedelta(seconds=2))
    assert _passage_of(a).id == _passage_of(b).id != _passage_of(c).id


@pytest.mark.parametrize(
    "later",
    ["XB123CD", "B123CD", "XAB123CD", "AB1X3CD", "AB13CD", "AB123CX", "AB123C", "AB123CDX"],
    ids=["first changed", "first lost", "one before", "middle changed", "middle lost", "last changed", "last lost",
         "one after"],
)  # fmt: skip
def test_a_read_one_edit_from_a_stored_passage_joins_it_wherever_the_edit_is(later):
    gate = DeviceFactory()
    first = ingest(gate, "AB123CD", timedelta(seconds=0))
    batch = [envelope(gate.id, payload={"plate": plate, "confidence": 0.9}, timestamp=(T0 + timedelta(seconds=1)).isoformat())
             for plate in (later, "ZZ9", "QQ77QQ77")]  # other cars in the batch, of other lengths  # fmt: skip
    acks = pipeline.ingest_batch([pipeline.Inbound(e, gate, "rest") for e in batch])
    assert {a.status for a in acks} == {"accepted"}
    assert _passage_of(batch[0]["message_id"]).id == _passage_of(first).id
    assert _passage_of(batch[1]["message_id"]).id != _passage_of(first).id


def test_the_affix_test_lets_every_plate_within_one_edit_through():
    """passages.affixes, checked against every edit of random plates, beside other plates of other lengths."""
    import random

    from detections.passages import affixes
    from detections.plates import near

    alphabet = "AB0128XYZ"
    rng = random.Random(7)

    def passes(plate: str, test: tuple) -> bool:
        n, heads, m, tails = test
        return n == 0 or plate[:n] in heads.split(" ") or plate[-m:] in tails.split(" ")

    for _ in range(300):
        word = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10)))
        others = {"".join(rng.choice(alphabet) for _ in range(rng.randint(3, 10))) for _ in range(rng.randint(0, 4))}
        test = affixes({word, *others}, 1)
        edits = {word}
        for i in range(len(word) + 1):
            edits.add(word[:i] + word[i + 1 :])
            edits.update(word[:i] + c + word[i + 1 :] for c in alphabet)
            edits.update(word[:i] + c + word[i:] for c in alphabet)
        assert all(near(word, e, 1) for e in edits)
        missed = [e for e in edits if not passes(e, test)]
        assert not missed, (word, others, test, missed)
    assert affixes({"AB123CD"}, 2) == (0, "", 0, "")  # two edits: no shortcut
    assert affixes({"AB123CD", "Z"}, 1)[0] == 0  # a one-character plate: no shortcut
    n, heads, m, tails = affixes({"AB123CD", "XY98"}, 1)
    assert (n, m) == (2, 1) and heads.split() == ["AB", "XY"] and tails.split() == ["8", "D"]


@pytest.mark.django_db(transaction=True)
def test_two_batches_extending_one_passage_at_once_both_count():
    """Both transactions read the passage before either writes: the UPDATE adds, it does not overwrite."""
    import threading
    import time

    from django.db import connection, transaction

    gate = DeviceFactory()
    passage_id = _passage_of(ingest(gate, "AB123CD", timedelta(seconds=0), confidence=0.5)).id
    done = []

    def read(at: int, confidence: float) -> None:
        try:
            done.append(ingest(gate, "AB123CD", timedelta(seconds=at), confidence=confidence))
        finally:
            connection.close()

    threads = [threading.Thread(target=read, args=(1, 0.9)), threading.Thread(target=read, args=(3, 0.7))]
    with transaction.atomic():
        Passage.objects.select_for_update().get(id=passage_id)  # both writers find the passage, then wait here
        for t in threads:
            t.start()
        time.sleep(1.0)
    for t in threads:
        t.join(10)
    passage = Passage.objects.get(id=passage_id)
    assert len(done) == 2 and {_passage_of(m).id for m in done} == {passage_id}
    assert (passage.read_count, passage.last_at, passage.best_confidence) == (3, T0 + timedelta(seconds=3), 0.9)


def test_detections_stored_before_passages_are_backfilled():
    from django.core.management import call_command

    gate = DeviceFactory()
    ids = [ingest(gate, plate, timedelta(seconds=s)) for plate, s in [("AB123CD", 0), ("AB123C0", 2), ("ZZ999ZZ", 60)]]
    Detection.objects.update(passage=None, search_text="")  # as rows from before migration 0002 look
    Passage.objects.all().delete()
    call_command("backfill_detections", batch=2)
    rows = {str(d.message_id): d for d in Detection.objects.all()}
    assert rows[ids[0]].passage_id == rows[ids[1]].passage_id != rows[ids[2]].passage_id
    assert rows[ids[0]].search_text == "48123C0"
    assert Passage.objects.get(id=rows[ids[0]].passage_id).read_count == 2


def test_finding_open_passages_reads_each_device_s_recent_index_range_not_the_table():
    """With many passages stored, a batch from a few devices must not read the whole table: that cost grows with
    the table and once took most of a small batch's time. The plan is read as PostgreSQL makes it for a prepared
    statement (generic), which cannot see how many devices the arrays hold."""
    from django.db import connection

    from detections import passages
    from detections.models import Passage
    busy, quiet = DeviceFactory(), DeviceFactory()
    Passage.objects.bulk_create(
        Passage(device=busy, plate_normalized=f"P{i:05d}", plate_folded=f"P{i:05d}", best_message_id=uuid.uuid4(),
                best_confidence=0.9, first_at=T0 - timedelta(seconds=i), last_at=T0 - timedelta(seconds=i))
        for i in range(5000)
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE detections_passage")
    span = {quiet.id: [T0, T0, {"AB123CD"}], busy.id: [T0, T0, {"XY987ZZ"}]}
    sql, params = passages.open_passages_query(span, timedelta(seconds=5))
    with connection.cursor() as cursor:  # binds client-side: EXECUTE's arguments arrive as typed literals
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        cursor.execute("PREPARE open_passages AS " + _numbered(sql))
        cursor.execute(f"EXPLAIN (FORMAT JSON) EXECUTE open_passages({', '.join(['%s'] * len(params))})", params)
        plan = cursor.fetchone()[0]
        cursor.execute("DEALLOCATE open_passages")
        cursor.execute("RESET plan_cache_mode")
    assert '"Node Type": "Seq Scan"' not in plan, plan
    reads = [node["Node Type"] for node in _nodes(plan[0]["Plan"]) if node.get("Relation Name") == "detections_passage"]
    assert reads and all(kind in ("Index Scan", "Bitmap Heap Scan") for kind in reads), json.dumps(plan)


def _nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _numbered(sql: str) -> str:
    """`%b` placeholders as PostgreSQL's `$1`, `$2`... (for PREPARE)."""
    parts = sql.split("%b")
    return "".join(part + (f"${n}" if n < len(parts) else "") for n, part in enumerate(parts, 1))


@pytest.mark.parametrize("k", [0, 1, 2])
def test_the_open_passage_query_returns_each_passage_a_read_may_join_and_no_other(settings, k):
    """Against a brute-force check: every stored passage of the device, in the window, whose plate is one of the
    batch's plates or within k edits of one of the device's plates; beside it plates two edits away, plates of
    another device's batch, and passages out of the window. (The query tests plates through hash tables first.)"""
    import random

    from detections import passages
    from detections.plates import near

    settings.PASSAGE_MAX_DISTANCE = k
    rng = random.Random(11)
    alphabet = "AB0128XYZ"
    gate, other = DeviceFactory(), DeviceFactory()
    words = {"".join(rng.choice(alphabet) for _ in range(rng.randint(2, 9))) for _ in range(40)}
    other_words = {"".join(rng.choice(alphabet) for _ in range(7)) for _ in range(10)}

    def edits(word: str) -> set[str]:
        out = set()
        for i in range(len(word) + 1):
            out.add(word[:i] + word[i + 1 :])
            out.update(word[:i] + c + word[i + 1 :] for c in alphabet)
            out.update(word[:i] + c + word[i:] for c in alphabet)
        return out - {""}

    stored = set(words) | set(other_words)
    for w in words:
        once = sorted(edits(w))
        stored.update(rng.sample(once, 6))
        stored.update(rng.sample(sorted(edits(rng.choice(once))), 4))  # mostly two edits away
    stored.update("".join(rng.choice(alphabet) for _ in range(7)) for _ in range(200))
    rows = []
    for plate in sorted(stored):
        for device, seconds in ((gate, 0), (gate, 60), (other, 0)):  # 60 s: outside the window
            at = T0 + timedelta(seconds=seconds)
            rows.append(Passage(device=device, plate_normalized=plate, plate_folded=plate, best_message_id=uuid.uuid4(),
                                best_confidence=0.9, first_at=at, last_at=at))  # fmt: skip
    Passage.objects.bulk_create(rows)
    span = {gate.id: [T0, T0 + timedelta(seconds=1), set(words)], other.id: [T0, T0, set(other_words)]}

    found = {(p.device_id, p.folded) for p in passages._open_passages_near(span, timedelta(seconds=5))}

    expected = {
        (device.id, plate)
        for device, mine in ((gate, words), (other, other_words))
        for plate in stored
        if plate in words | other_words or any(near(plate, w, k) for w in mine)
    }
    assert found == expected
    assert any(plate not in words | other_words for _, plate in found) == (k > 0)  # near, not the same plate


@pytest.mark.parametrize("k", [1, 2])
def test_the_in_memory_index_finds_every_passage_within_the_distance_and_no_other(k):
    """passages._Index (a batch's open passages, filed under their deletion neighbourhoods)
    against comparing with every passage, on random plates of 1 to 9 characters and edits of them."""
    import random

    from detections.passages import _Index, _Open
    from detections.plates import near

    rng = random.Random(3)
    alphabet = "AB0128XYZ"
    plates = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9))) for _ in range(150)]
    for plate in list(plates):
        i = rng.randrange(len(plate) + 1)
        plates += [plate[:i] + rng.choice(alphabet) + plate[i + 1 :], plate[:i] + rng.choice(alphabet) + plate[i:],
                   plate[:i] + plate[i + 1 :]]  # fmt: skip
    index = _Index(k, timedelta(seconds=5))
    stored = [index.add(_Open(n, "gate", plate, T0, T0)) for n, plate in enumerate(p for p in plates if p)]
    index.add(_Open(-1, "other gate", plates[0], T0, T0))
    for word in set(plates[:200]) - {""}:
        found = {p.id for p in index._near("gate", word)}
        assert found == {p.id for p in stored if near(word, p.folded, k)}, word
