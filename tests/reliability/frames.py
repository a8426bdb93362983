"""Bad input for every transport: random bytes, truncated envelopes, wrong types, huge frames.

`corpus(rng, device_id, count)` mixes `count` bad frames with valid
envelopes (one in five), each tagged with its kind, so a test can send them
over any transport and reconcile: the valid ones stored once, the bad ones
answered with an error and recorded, nothing else written. Seeded, so a
failure replays.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import random
from dataclasses import dataclass, field

from tests.factories import envelope

MAX_ENVELOPE = 256 * 1024

# Values that fit JSON and break careless code: out-of-range numbers, NUL (PostgreSQL text cannot hold it),
# lone surrogates, very long strings, deep nesting, every JSON type where another is expected.
NASTY = [
    None, True, 0, -1, 2**63, -(2**63) - 1, 10**30, 1.5e308, -0.0, "", "\u0000", "AB\u0000CD", "\ud800",
    "x" * 10_000, "9" * 400, [], [[[[[]]]]], {}, {"": {"": {"": None}}}, "2026-13-45T25:61:00Z", "NaN",
    "\u202e\ufeff", "'; DROP TABLE detections; --", "%s%n%x", "{{7*7}}", "<script>", [1, "a", None],
]  # fmt: skip
FIELDS = ["message_id", "timestamp", "protocol", "edge_device_id", "data_type", "payload", "metadata", "sequence",
          "payload.plate", "payload.confidence", "payload.candidates", "payload.bbox", "payload.direction",
          "payload.speed_kph", "payload.lane", "payload.image_ref", "payload.region", "payload.vehicle",
          "payload.extra_field", "metadata.protocol_version", "metadata.compression", "metadata.encryption"]  # fmt: skip


@dataclass
class Frame:
    kind: str
    body: bytes
    valid: bool = False
    message_id: str | None = None
    notes: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def valid(device_id: str, protocol: str, rng: random.Random) -> Frame:
    env = envelope(device_id, protocol=protocol, payload={"plate": f"FZ{rng.randrange(10**6):06d}", "confidence": 0.9})
    return Frame("valid", json.dumps(env).encode(), True, env["message_id"])


def random_bytes(rng: random.Random, *_) -> bytes:
    return rng.randbytes(rng.choice([0, 1, 2, 7, 64, 512, 4096]))


def random_text(rng: random.Random, *_) -> bytes:
    alphabet = '{}[]":,0123456789.-eE truefalsnl\\u' + "".join(map(chr, range(0x20, 0x7F))) + "\u00e9\u4e2d\U0001f600"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 300))).encode()


def truncated(rng: random.Random, device_id: str, protocol: str) -> bytes:
    body = json.dumps(envelope(device_id, protocol=protocol)).encode()
    return body[: rng.randrange(1, len(body) - 1)]


def wrong_type(rng: random.Random, device_id: str, protocol: str) -> bytes:
    env = envelope(device_id, protocol=protocol)
    _set(env, rng.choice(FIELDS), copy.deepcopy(rng.choice(NASTY)))
    return json.dumps(env).encode()


def not_an_envelope(rng: random.Random, device_id: str, protocol: str) -> bytes:
    return json.dumps(rng.choice([None, 1, "envelope", [], [envelope(device_id, protocol=protocol)], {"messages": []},
                                  {"type": "pong"}, {"message_id": "not-a-uuid"}])).encode()  # fmt: skip


def deep(rng: random.Random, device_id: str, protocol: str) -> bytes:
    """Nesting past any decoder's stack, or just under it, inside a payload field that is kept as it comes."""
    depth = rng.choice([400, 900, 1_000, 100_000])
    env = json.dumps(envelope(device_id, protocol=protocol, payload={"plate": "DEEP1", "confidence": 0.5, "x": 0}))
    return env.replace('"x": 0', '"x": ' + "[" * depth + "]" * depth).encode()


def claims(rng: random.Random, device_id: str, protocol: str) -> bytes:
    """Well formed, refused for what it says: another device, a clock 3 days ahead, protocol 2.0, a bad gzip."""
    env = envelope(device_id, protocol=protocol)
    choice = rng.randrange(5)
    if choice == 0:
        env["edge_device_id"] = device_id + "X"
    elif choice == 1:
        env["timestamp"] = "2099-01-01T00:00:00Z"
    elif choice == 2:
        env["metadata"]["protocol_version"] = "2.0"
    elif choice == 3:  # a gzip bomb: 64 MiB of zeros in 64 KiB
        env["metadata"]["compression"] = "gzip"
        env["payload"] = base64.b64encode(gzip.compress(b"0" * (64 << 20))).decode()
    else:
        env["metadata"]["encryption"] = "fernet"
        env["payload"] = "gAAAAAB" + base64.urlsafe_b64encode(rng.randbytes(60)).decode()
    return json.dumps(env).encode()


def huge(rng: random.Random, device_id: str, protocol: str) -> bytes:
    """Over the 256 KiB envelope limit (still under transports' frame limits)."""
    env = envelope(device_id, protocol=protocol)
    env["payload"]["blob"] = "z" * (MAX_ENVELOPE + rng.randrange(1, 200_000))
    return json.dumps(env).encode()


def pinned(device_id: str, protocol: str) -> list[Frame]:
    """Cases each found a 500 once: NUL in stored text, integers past the columns, nesting past the stack."""
    det = envelope(device_id, protocol=protocol)
    cases = [
        {**det, "payload": {"plate": "AB\u0000CD", "confidence": 0.9}},
        {**det, "payload": {"plate": "AB1", "confidence": 0.9, "\u0000": "kept?"}},
        {**det, "message_id": "\u0000"},
        {**det, "data_type": "detection\u0000"},
        {**det, "sequence": 2**63},
        envelope(device_id, "health", {"queue_depth": 2**31}, protocol=protocol),
        envelope(device_id, "config", {"version": 2**31, "values": {}}, protocol=protocol),
    ]
    frames = [Frame("pinned", json.dumps(c).encode()) for c in cases]
    return frames + [Frame("pinned", b'{"payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")]


KINDS = {"random_bytes": random_bytes, "random_text": random_text, "truncated": truncated, "wrong_type": wrong_type,
         "not_an_envelope": not_an_envelope, "deep": deep, "claims": claims, "huge": huge}  # fmt: skip
WEIGHTS = {"random_bytes": 3, "random_text": 3, "truncated": 4, "wrong_type": 8, "not_an_envelope": 2, "deep": 1,
           "claims": 2, "huge": 1}  # fmt: skip


def corpus(rng: random.Random, device_id: str, count: int, protocol: str, kinds: dict | None = None) -> list[Frame]:
    """`count` bad frames and `count // 4` valid ones, shuffled."""
    kinds = kinds or KINDS
    names = [k for k in kinds for _ in range(WEIGHTS.get(k, 1))]
    frames = []
    for _ in range(count):
        kind = rng.choice(names)
        frames.append(Frame(kind, kinds[kind](rng, device_id, protocol)))
    frames += [valid(device_id, protocol, rng) for _ in range(count // 4)] + pinned(device_id, protocol)
    rng.shuffle(frames)
    return frames


def _set(env: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    target = env
    for name in parents:
        if not isinstance(target.get(name), dict):
            target[name] = {}
        target = target[name]
    target[last] = value


def kinds_of(frames: list[Frame]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in frames:
        out[f.kind] = out.get(f.kind, 0) + 1
    return out
