"""How fast envelopes are validated, beside the plain JSON decode of the same bytes.

    .venv/bin/python bench/envelope_validation.py [--count 100000]

The limit is decoding the same bytes into untyped Python objects
(msgspec.json.decode): validation cannot be faster than reading the JSON.
"""

import argparse
import json
import random
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec  # noqa: E402

from transport.envelope import parse  # noqa: E402


def typical_envelopes(count: int) -> list[bytes]:
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    out = []
    for i in range(count):
        kind = "detection" if i % 10 else "health"
        payload = (
            {"plate": f"AB{random.randint(100, 999)}CD", "confidence": round(random.random(), 3), "region": "de",
             "bbox": {"x": 10, "y": 20, "w": 120, "h": 40}, "candidates": [{"plate": "AB123C0", "confidence": 0.4}]}
            if kind == "detection"
            else {"cpu_percent": 40.5, "temperature_c": 51.0, "network": {"latency_ms": 35, "packet_loss": 0.01}}
        )  # fmt: skip
        out.append(json.dumps({
            "message_id": str(uuid.uuid4()), "timestamp": now, "protocol": "websocket", "edge_device_id": "CAM001",
            "data_type": kind, "payload": payload, "sequence": i,
            "metadata": {"protocol_version": "1.0", "compression": False, "encryption": False},
        }).encode())  # fmt: skip
    return out


def rate(fn, items: list[bytes]) -> float:
    started = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    args = parser.parse_args()
    print(f"building {args.count:,} typical envelopes (90% detections, 10% health)…", file=sys.stderr)
    items = typical_envelopes(args.count)
    decode = msgspec.json.decode
    now = datetime.now(timezone.utc)
    best_validate = max(rate(lambda b: parse(b, now=now), items) for _ in range(3))
    best_decode = max(rate(decode, items) for _ in range(3))
    seconds = args.count / best_validate
    print(f"{'what':<40} {'envelopes/s':>14}")
    print(f"{'validate (transport.envelope.parse)':<40} {best_validate:>14,.0f}")
    print(f"{'limit: plain JSON decode, same bytes':<40} {best_decode:>14,.0f}")
    print(f"ratio to the limit: {best_validate / best_decode:.2f}; {args.count:,} envelopes validated in {seconds:.3f} s "
          f"(target: well under 1 s) -> {'OK' if seconds < 1 else 'MISSED'}")


if __name__ == "__main__":
    main()
