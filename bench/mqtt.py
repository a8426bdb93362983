"""MQTT bridge throughput: detections stored per second by one bridge process, beside a bare paho subscriber.

    .venv/bin/python bench/mqtt.py [--messages 60000] [--devices 20]

One private Mosquitto holds a persistent session for each consumer. The same
`--messages` detection envelopes are published (by `mosquitto_pub`, so the
publisher costs Python nothing) while both are away, and each then drains its
queue: first a bare paho subscriber that does nothing with what it receives
(the limit: how fast paho can take messages from this broker), then one
`run_mqtt_bridge` process that stores every message in PostgreSQL (database
`lpr_bench_mqtt`, recreated) and answers each on `down/ack`. Prints both rates
and their ratio; targets: >= 10,000 stored/s and >= 0.6 of the bare rate.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402

from bench.stack import free_port, fresh_database, say  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

DATABASE = "lpr_bench_mqtt"
RECEIVE_MAXIMUM = 2000  # the bridge's default; the bare subscriber gets the same window


def env(database_url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "DEVICE_RATE_PER_S": "1000000000",
            "DEVICE_RATE_BURST": "1000000000", "LOG_LEVEL": "INFO",
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")}  # fmt: skip


def create_devices(database_url: str, count: int) -> list[str]:
    ids = [f"MQB{uuid.uuid4().hex[:6].upper()}{n:03d}" for n in range(count)]
    code = "import os\nfrom devices.credentials import create_device\nfor i in os.environ['IDS'].split(','): create_device(i)"
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env={**env(database_url), "IDS": ",".join(ids)},
                   check=True)  # fmt: skip
    return ids


def start_mosquitto(directory: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = directory / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser {os.environ.get('USER', 'root')}\n"
                    "max_queued_messages 100000000\nmax_queued_bytes 0\n")  # fmt: skip
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, port


def bridges(port: int, database_url: str, log: Path, count: int) -> list[subprocess.Popen]:
    """`count` bridge processes; more than one share the stream (`--shared bench`)."""
    profile = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
    shared = ["--shared", "bench"] if count > 1 else []
    return [
        subprocess.Popen(
            [sys.executable, *profile, "manage.py", "run_mqtt_bridge", "--url", f"mqtt://127.0.0.1:{port}",
             "--client-id", f"bench-bridge-{n}", *shared],
            cwd=ROOT, env=env(database_url), stdout=log.open("a"), stderr=subprocess.STDOUT,
        )
        for n in range(count)
    ]  # fmt: skip


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(30)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


class Bare:
    """A paho subscriber that does nothing with what it receives (QoS 1, acked by paho as it arrives)."""

    def __init__(self, port: int) -> None:
        self.port, self.count, self.first, self.last = port, 0, 0.0, 0.0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: setattr(self, "subscribed", True)
        self.subscribed = False

    def _on_message(self, client, userdata, msg) -> None:
        self.count += 1
        self.last = time.perf_counter()
        if self.count == 1:
            self.first = self.last

    def connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval, props.ReceiveMaximum = 3600, RECEIVE_MAXIMUM
        self.client.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        self.client.loop_start()

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(port: int, device_ids: list[str], messages: int) -> None:
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    per_device = messages // len(device_ids)
    procs = []
    for n, device_id in enumerate(device_ids):
        lines = "".join(
            json.dumps({"message_id": str(uuid.uuid4()), "timestamp": now, "protocol": "mqtt", "edge_device_id": device_id,
                        "data_type": "detection", "sequence": i,
                        "payload": {"plate": f"AB{(n * per_device + i) % 100000:05d}", "confidence": 0.91, "region": "de",
                                    "bbox": {"x": 1, "y": 2, "w": 100, "h": 40}}}, separators=(",", ":")) + "\n"
            for i in range(per_device)
        )  # fmt: skip
        proc = subprocess.Popen(["mosquitto_pub", "-p", str(port), "-q", "1", "-l", "-t",
                                 f"lpr/v1/devices/{device_id}/up/detection"], stdin=subprocess.PIPE)  # fmt: skip
        proc.stdin.write(lines.encode())
        proc.stdin.close()
        procs.append(proc)
    for proc in procs:
        proc.wait()


def stored_rate(database_url: str, messages: int, timeout: float) -> tuple[float, float]:
    """(stored per second by the ledger's received_at span, by wall clock from first to last row seen)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        count = lambda: conn.execute("select count(*) from transport_message").fetchone()[0]  # noqa: E731
        wait_for(lambda: count() > 0, 60, "the bridge's first stored message")
        first = time.perf_counter()
        wait_for(lambda: count() >= messages, timeout, f"{messages} stored messages")
        wall = time.perf_counter() - first
        span = conn.execute("select extract(epoch from max(received_at) - min(received_at)) from transport_message").fetchone()[0]
        detections = conn.execute("select count(*) from detections_detection").fetchone()[0]
    assert detections == messages, (detections, messages)
    return messages / float(span), messages / wall


PIPELINE_ALONE = """
import json, os, sys, time, uuid
from datetime import datetime, timezone
from devices.models import Device
from transport import pipeline
devices = list(Device.objects.all())
now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
n, batch = int(os.environ["N"]), 500
bodies = [json.dumps({"message_id": str(uuid.uuid4()), "timestamp": now, "protocol": "mqtt",
                      "edge_device_id": devices[i % len(devices)].id, "data_type": "detection", "sequence": i // len(devices),
                      "payload": {"plate": f"CD{i % 100000:05d}", "confidence": 0.91, "region": "de",
                                  "bbox": {"x": 1, "y": 2, "w": 100, "h": 40}}}).encode() for i in range(n)]
for k in range(0, n, batch):
    if k == batch:
        start = time.perf_counter()  # like the bridge's figure (first to last batch start), the first batch is warm-up
    acks = pipeline.ingest_batch([pipeline.Inbound(b, devices[(k + j) % len(devices)], "mqtt", "detection")
                                  for j, b in enumerate(bodies[k:k + batch])])
    assert all(a.status == "accepted" for a in acks), acks[0]
print((n - batch) / (time.perf_counter() - start))
"""


def pipeline_alone(database_url: str, messages: int) -> float:
    """ingest_batch in 500s, in one process, no MQTT: what the bridge could at best store per second."""
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", PIPELINE_ALONE], cwd=ROOT, capture_output=True,
                         text=True, env={**env(database_url), "N": str(messages), "LOG_LEVEL": "WARNING"}, check=True)  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--bridges", type=int, default=1, help="bridge processes (more than 1: --shared)")
    args = parser.parse_args()
    messages = args.messages - args.messages % args.devices

    directory = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    say(f"fresh database {DATABASE}, {args.devices} devices")
    database_url = fresh_database(DATABASE)
    device_ids = create_devices(database_url, args.devices)
    say("the pipeline alone, in one process, no MQTT, on its own fresh database")
    alone_url = fresh_database(DATABASE + "_alone")
    create_devices(alone_url, args.devices)
    alone = pipeline_alone(alone_url, messages)
    broker, port = start_mosquitto(directory)
    log = directory / "bridge.log"
    try:
        say("creating both persistent sessions")
        procs = bridges(port, database_url, log, args.bridges)
        wait_for(lambda: log.read_text().count("subscribed to") >= args.bridges, 60, "the bridges to subscribe")
        stop(procs)
        bare = Bare(port)
        bare.connect()
        bare.client.subscribe("lpr/v1/devices/+/up/+", qos=1)
        wait_for(lambda: bare.subscribed, 10, "the bare subscriber to subscribe")
        bare.disconnect()

        say(f"publishing {messages} detections with mosquitto_pub while both are away")
        publish(port, device_ids, messages)

        say("bare paho subscriber drains its queue")
        bare = Bare(port)
        bare.connect()
        wait_for(lambda: bare.count >= messages, 300, "the bare subscriber")
        bare.disconnect()
        bare_rate = (messages - 1) / (bare.last - bare.first)

        say(f"{args.bridges} bridge process(es) drain their queue into PostgreSQL")
        procs = bridges(port, database_url, log, args.bridges)
        span_rate, wall_rate = stored_rate(database_url, messages, 600)
        stop(procs)
    finally:
        broker.terminate()
        broker.wait(10)

    print(f"MQTT, {messages} detections from {args.devices} devices, one Mosquitto, queued then drained:")
    print(f"  bare paho subscriber (receives, does nothing)   {bare_rate:10,.0f} msg/s   <- the limit")
    print(f"  {args.bridges} bridge process(es) (stored, acked on down/ack){span_rate:10,.0f} msg/s   (wall clock {wall_rate:,.0f}/s)")
    print(f"  ingest_batch alone (same rows, no MQTT)         {alone:10,.0f} msg/s   (same pipeline, no MQTT: what bounds the bridge)")
    print(f"  ratio bridge / bare                             {span_rate / bare_rate:10.2f}      (target >= 0.6)")
    print(f"  target >= 10,000 stored/s: {'met' if span_rate >= 10_000 else 'NOT met'}; "
          f">= 0.6 of bare: {'met' if span_rate >= 0.6 * bare_rate else 'NOT met'}")  # fmt: skip
    print("  (2 shared CPU cores; other work on the machine lowers both figures)")


if __name__ == "__main__":
    main()
