"""Hypothesis against the decoders cameras reach: any input gives a result or the module's documented error.

The envelope decoder (`transport.envelope.parse`, documented error `EnvelopeError`) and each camera format
(`transport.compat`: OpenALPR, Plate Recognizer, Hikvision; documented error `CompatError`), whose mapped
envelopes must in turn decode or be refused by `parse`. No database: these run in a few seconds.
"""

from __future__ import annotations

import msgspec
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transport import envelope
from transport.compat import hikvision, openalpr, platerecognizer
from transport.compat.common import CompatError
from transport.errors import STATUS

from . import strategies as fz

KEY = Fernet.generate_key()
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def parses_or_refuses(raw) -> envelope.Envelope | None:
    """The contract for `parse`: an Envelope, or an EnvelopeError whose code the contract knows."""
    try:
        return envelope.parse(raw, lambda: KEY)
    except envelope.EnvelopeError as exc:
        assert exc.code in STATUS and isinstance(exc.detail, str) and exc.detail
        assert exc.field is None or isinstance(exc.field, str)
        return None


@FUZZ
@given(fz.raw_inputs(KEY))
def test_the_envelope_decoder_answers_any_bytes_with_an_envelope_or_its_error(raw):
    parsed = parses_or_refuses(raw)
    envelope.message_id_of(raw)  # used to name refused input: must never raise either
    if parsed is not None:
        assert parsed.device_id and parsed.data_type in envelope.PAYLOAD_TYPES


@FUZZ
@given(fz.envelopes(KEY))
def test_the_envelope_decoder_answers_any_parsed_object_as_it_does_its_json(env):
    """Batches hand the decoder objects, not bytes: the same verdict either way."""
    from_object = parses_or_refuses(env)
    from_bytes = parses_or_refuses(fz.dumps(env))
    assert (from_object is None) == (from_bytes is None) or not _json_roundtrips(env)


def _json_roundtrips(env) -> bool:
    try:
        return msgspec.json.decode(fz.dumps(env)) == env
    except (msgspec.DecodeError, ValueError):
        return False


@FUZZ
@given(st.one_of(fz.JSON.map(fz.dumps), st.binary(max_size=200), fz.envelopes(KEY).map(lambda e: fz.dumps(e.get("payload")))))
def test_a_command_answer_body_decodes_or_is_refused(raw):
    try:
        envelope.parse_control(raw)
    except envelope.EnvelopeError as exc:
        assert exc.code == "invalid"


# --- camera formats -------------------------------------------------------------------------------------------

OPENALPR_KINDS = {
    "alpr_group": {
        "best_plate_number": fz.value("AB123CD"), "best_confidence": fz.value(93.5, 0.9),
        "best_plate": fz.value({"plate": "AB123CD", "confidence": 90, "coordinates": [{"x": 1, "y": 2}],
                                "candidates": [{"plate": "AB123CE", "confidence": 80}]}),
        "best_uuid": fz.value("abc"), "uuids": fz.value(["a", "b"]), "epoch_start": fz.value(1764150000000),
        "epoch_end": fz.value(1764150000), "vehicle": fz.value({"color": [{"name": "red", "confidence": 80}]}),
        "travel_direction": fz.value(180, -5), "vehicle_crop_jpeg": fz.value("/9j/4AAQ", "not base64!"),
    },
    "alpr_results": {
        "results": fz.value([{"plate": "AB1", "confidence": 88, "coordinates": [{"x": 1, "y": 1}]}], [{}], [1]),
        "uuid": fz.value("frame-1"), "epoch_time": fz.value(1764150000000, "1764150000"),
    },
    "heartbeat": {
        "cpu_usage_percent": fz.value(12), "memory_consumed_bytes": fz.value(10), "memory_total_bytes": fz.value(0, 100),
        "disk_drive_total_bytes": fz.value(100), "disk_drive_free_bytes": fz.value(200),
        "daemon_uptime_seconds": fz.value(5), "video_streams": fz.value([{"fps": 10}, {"fps": "x"}]),
        "beanstalk_queue_size": fz.value(3, -1, "inf"), "agent_version": fz.value("4.1"), "agent_uid": fz.value("u"),
        "timestamp": fz.value(1764150000000), "epoch_time": fz.value(1764150000),
    },
    "alpr_alert": {
        "group": fz.value({"best_plate_number": "AB1", "best_confidence": 90}), "plate_number": fz.value("AB1"),
        "confidence": fz.value(90), "uuid": fz.value("alert-1"), "epoch_time": fz.value(1764150000000),
    },
}
PLATERECOGNIZER_RESULT = {
    "plate": fz.value("ab1", ""), "score": fz.value(0.9, 90), "box": fz.value({"xmin": 1, "ymin": 2, "xmax": 3, "ymax": 4}),
    "region": fz.value({"code": "de"}, "de"), "vehicle": fz.value({"type": "car", "score": 0.8}),
    "model_make": fz.value([{"make": "VW", "model": "Golf", "score": 0.7}]), "color": fz.value([{"color": "red", "score": 0.6}]),
    "direction": fz.value(270), "candidates": fz.value([{"plate": "ab2", "score": 0.5}]),
}  # fmt: skip
PLATERECOGNIZER_DATA = {
    "timestamp": fz.value("2026-11-26T10:30:00Z", 1764150000), "timestamp_local": fz.value("2026-11-26T10:30:00"),
    "camera_id": fz.value("cam"), "filename": fz.value("f.jpg"),
}  # fmt: skip


@st.composite
def openalpr_bodies(draw):
    kind = draw(st.sampled_from(sorted(OPENALPR_KINDS)))
    return {"data_type": kind, **draw(fz.shaped(OPENALPR_KINDS[kind]))}


@st.composite
def platerecognizer_bodies(draw):
    results = draw(st.lists(fz.shaped(PLATERECOGNIZER_RESULT), max_size=3))
    data = {**draw(fz.shaped(PLATERECOGNIZER_DATA)), "results": draw(st.one_of(st.just(results), fz.value()))}
    if draw(st.booleans()):
        return data  # Snapshot's bare answer
    return {"hook": draw(fz.value({"id": "cam-1", "event": "recognition"})), "data": data}


def mapped_or_refused(map_call):
    """A mapping gives envelopes the decoder answers (an Envelope or EnvelopeError), or raises CompatError."""
    try:
        mapped = map_call()
    except CompatError as exc:
        assert exc.code in STATUS and exc.detail
        return
    assert isinstance(mapped, list)
    for m in mapped:
        parses_or_refuses(envelope.encode_json(m.envelope))


@FUZZ
@given(st.one_of(openalpr_bodies(), fz.JSON))
def test_openalpr_bodies_map_or_are_refused(body):
    mapped_or_refused(lambda: openalpr.map_body(body, "CAM001", fz.dumps(body)))


@FUZZ
@given(st.one_of(platerecognizer_bodies(), fz.JSON), st.one_of(st.none(), st.binary(max_size=20)))
def test_platerecognizer_bodies_map_or_are_refused(body, upload):
    mapped_or_refused(lambda: platerecognizer.map_body(body, "CAM001", fz.dumps(body), upload))


HIKVISION_TAGS = ["EventNotificationAlert", "eventType", "ANPR", "licensePlate", "confidenceLevel", "dateTime", "UUID",
                  "macAddress", "channelID", "countryAbbreviation", "direction", "line", "vehicleType", "vehicleInfo",
                  "color", "pictureInfoList", "pictureInfo", "fileName", "type", "plateRect", "X", "Y", "width",
                  "height"]  # fmt: skip
XML_TEXT = st.one_of(st.sampled_from(["ANPR", "97", "PECT600", "2026-11-26T10:30:00+08:00", "forward", "NON",
                                      "licensePlatePicture", "1", "-5"]), fz.NASTY_TEXT, st.text(max_size=12))  # fmt: skip


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


ELEMENTS = st.recursive(
    st.tuples(st.sampled_from(HIKVISION_TAGS), XML_TEXT).map(lambda t: f"<{t[0]}>{_escape(t[1])}</{t[0]}>"),
    lambda inner: st.tuples(st.sampled_from(HIKVISION_TAGS), st.lists(inner, max_size=4))
    .map(lambda t: f"<{t[0]}>{''.join(t[1])}</{t[0]}>"),
    max_leaves=15,
)
HIKVISION_XML = st.one_of(
    st.lists(ELEMENTS, max_size=6).map(lambda kids: f"<EventNotificationAlert>{''.join(kids)}</EventNotificationAlert>"),
    st.lists(ELEMENTS, max_size=6).map(lambda kids: "<EventNotificationAlert><eventType>ANPR</eventType><ANPR>"
                                       f"{''.join(kids)}</ANPR></EventNotificationAlert>"),
    st.sampled_from(['<!DOCTYPE x [<!ENTITY a "aaaa">]><EventNotificationAlert>&a;</EventNotificationAlert>',
                     '<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://example.com/x.dtd"><x/>']),
).map(str.encode)


@FUZZ
@given(st.one_of(HIKVISION_XML, st.binary(max_size=300), HIKVISION_XML.map(lambda b: b[: len(b) // 2])),
       st.dictionaries(st.sampled_from(["licensePlatePicture.jpg", "other.jpg"]), st.binary(max_size=10), max_size=2))  # fmt: skip
def test_hikvision_documents_map_or_are_refused(raw, files):
    def mapped():
        return hikvision.map_event(hikvision.parse_xml(raw), "CAM001", raw, files)

    mapped_or_refused(mapped)
