"""Plate search per mode against real PostgreSQL: what each must find and what it must not."""

import re
from datetime import timedelta

import pytest
from django.test import Client

from detections.search import InvalidSearch, Query, search
from tests.factories import DeviceFactory, OperatorFactory

from .helpers import T0, ingest

pytestmark = pytest.mark.django_db

# name: (plate as sent, candidate plates)
READS = {
    "r1": ("AB-123-CD", []),
    "r2": ("A8123CD", []),  # B read as 8
    "r3": ("AB123C", []),  # last character lost
    "r4": ("XB128CD", []),  # two errors after folding: A->X, 3->8
    "r5": ("ZZ999ZZ", ["AB123CD"]),  # the right plate only among the candidates
    "r6": ("QW7788K", []),
    "r7": ("AB12", []),
    "r8": ("DO1-ISB", ["00115B"]),
}

CASES = [
    ("exact", "ab 123 cd", None, {"r1"}),
    ("exact", "A8123CD", None, {"r2"}),
    ("prefix", "AB1", None, {"r1", "r3", "r7"}),
    ("prefix", "ab-12", None, {"r1", "r3", "r7"}),
    ("wildcard", "AB*CD", None, {"r1"}),
    ("wildcard", "A?123CD", None, {"r1", "r2"}),
    ("wildcard", "*123*", None, {"r1", "r2", "r3"}),
    ("wildcard", "*88K", None, {"r6"}),
    ("fuzzy", "AB123CD", 0, {"r1", "r2", "r5"}),  # confusables fold alike; r5 by its candidate
    ("fuzzy", "4B1Z3CD", 0, {"r1", "r2", "r5"}),  # A/4 and 2/Z folded in the query too
    ("fuzzy", "AB123CD", 1, {"r1", "r2", "r3", "r5"}),
    ("fuzzy", "AB123CD", 2, {"r1", "r2", "r3", "r4", "r5"}),
    ("fuzzy", "AB123CD", None, {"r1", "r2", "r3", "r5"}),  # default: 1 for a 7-character plate (2 from 8)
    ("fuzzy", "OD1158", 0, {"r8"}),  # O/D/0 and I/1 and S/5 and B/8
    ("fuzzy", "QW7788", 1, {"r6"}),
]


@pytest.fixture
def reads():
    device = DeviceFactory()
    ids = {}
    for n, (name, (plate, candidates)) in enumerate(READS.items()):
        # a minute apart, so no two reads form one passage
        ingest(device, plate, timedelta(minutes=n), candidates=[{"plate": c, "confidence": 0.5} for c in candidates])
        ids[name] = plate
    return {plate: name for name, plate in ids.items()}


@pytest.mark.parametrize(("match", "plate", "distance", "expected"), CASES)
def test_each_search_mode_finds_what_it_must_and_nothing_else(reads, match, plate, distance, expected):
    found = {reads[d.plate] for d in search(Query(plate=plate, match=match, distance=distance))}
    assert found == expected


@pytest.mark.parametrize(("match", "plate"), [("wildcard", "*"), ("wildcard", "**?"), ("wildcard", "A*"),
                                              ("prefix", "A"), ("fuzzy", "AB"), ("fuzzy", "AB*CD"), ("exact", "--")])
def test_patterns_that_would_scan_everything_are_refused(match, plate):
    with pytest.raises(InvalidSearch) as exc:
        search(Query(plate=plate, match=match))
    assert exc.value.field == "plate"


def test_fuzzy_search_uses_the_trigram_index_on_postgresql(reads):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the trigram index exists on PostgreSQL only")
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a tiny table would otherwise be scanned, index or not
        cursor.execute("EXPLAIN SELECT id FROM detections_detection WHERE %s <<%% search_text", ["48123C0"])
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    # Each partition has its own copy of the index (named after the partition and the column).
    assert re.search(r"Index Scan on detections_detection_\w+search_text\w*", plan), plan


def test_api_search_modes_and_refusal_in_the_contract_format(reads):
    client = Client()
    client.force_login(OperatorFactory())
    fuzzy = client.get("/api/v1/detections/", {"plate": "AB123CD", "match": "fuzzy", "distance": 1}).json()
    assert {r["plate"] for r in fuzzy["results"]} == {"AB-123-CD", "A8123CD", "AB123C", "ZZ999ZZ"}
    refused = client.get("/api/v1/detections/", {"plate": "*", "match": "wildcard"})
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid" and refused.json()["field"] == "plate"
    bad_match = client.get("/api/v1/detections/", {"plate": "AB1", "match": "regex"})
    assert (bad_match.status_code, bad_match.json()["field"]) == (400, "match")


def test_filters_device_site_confidence_vehicle_and_direction():
    north, south = DeviceFactory(site="north"), DeviceFactory(site="south")
    car = {"type": "car", "make": "Volvo", "model": "V70", "color": "red"}
    ingest(north, "AB123CD", timedelta(0), confidence=0.95, vehicle=car, direction="approaching")
    ingest(north, "AB123CD", timedelta(minutes=1), confidence=0.55, vehicle={**car, "color": "blue"}, direction="receding")
    ingest(south, "AB123CD", timedelta(minutes=2), confidence=0.9, vehicle={"type": "truck"}, direction=90)

    def plates(**filters):
        return [(d.device_id, d.confidence) for d in search(Query(plate="AB123CD", **filters))]

    assert plates(site="south") == [(south.id, 0.9)]
    assert plates(device=north.id, min_confidence=0.9) == [(north.id, 0.95)]
    assert plates(color="RED", make="volvo") == [(north.id, 0.95)]
    assert plates(vehicle_type="truck") == [(south.id, 0.9)]
    assert plates(direction="receding") == [(north.id, 0.55)]
    assert plates(direction="90") == [(south.id, 0.9)]
    assert plates(since=T0 + timedelta(seconds=30), until=T0 + timedelta(minutes=2)) == [(north.id, 0.55)]
    with pytest.raises(InvalidSearch):
        search(Query(since=T0, until=T0))


def test_fuzzy_search_never_misses_a_plate_within_its_distance():
    """The index threshold is a proven lower bound; random edits anywhere (ends included) must all be found."""
    import random

    from detections.plates import distance, fold

    rng = random.Random(11)
    alphabet = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
    device = DeviceFactory()
    pairs = []
    for n in range(150):
        plate = "".join(rng.choice(alphabet) for _ in range(rng.randint(5, 8)))
        query = list(plate)
        for _ in range(2 if len(plate) >= 6 else 1):
            edit, at = rng.choice("sdi"), rng.randrange(len(query) + 1)
            if edit == "i":
                query.insert(at, rng.choice(alphabet))
            elif at < len(query):
                query[at : at + 1] = [] if edit == "d" else [rng.choice(alphabet)]
        pairs.append((plate, "".join(query)))
        ingest(device, plate, timedelta(minutes=n))
    for plate, query in pairs:
        k = 2 if len(fold(query)) >= 6 else 1
        if distance(fold(plate), fold(query), k) > k:
            continue  # the edits cancelled out differently than planned; nothing to assert
        found = set(search(Query(plate=query, match="fuzzy", distance=k)).values_list("plate", flat=True))
        assert plate in found, (plate, query)
