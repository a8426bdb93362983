"""The limits each transport's figure is compared with, measured in the same run on the same machine.

- PostgreSQL alone: the rows REST batch stored, inserted again (fresh message
  ids) into a copy of the detections table (same columns and indexes, not
  partitioned, no ledger) with psycopg's `executemany` and with `COPY`, in
  transactions of 1,000 rows.
- The broker alone: a bare paho subscriber (QoS 1, acked by paho as messages
  arrive, nothing else done with them) draining a queue of detection
  envelopes that `mosquitto_pub` published while it was away, from the same
  Mosquitto the bridge reads, with the bridge's receive window (2,000).
- Django alone: a view that reads the body and returns `{"ok": true}`
  (bench/views.py), under the same Daphne and middleware, driven by the same
  wrk script as REST single.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from datetime import datetime, timezone

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from psycopg.types.json import Jsonb

from . import measure
from .generators import NodeCameras, WrkCameras
from .phases import BARE_PATH, SATURATION, Run
from .stack import say, wait_for

BATCH = 1000
RECEIVE_MAXIMUM = 2000  # the bridge's; the bare subscriber gets the same window
BARE_TOPIC = "bench/bare"  # not under lpr/v1/devices/: the running bridge does not read these


def postgres(database_url: str, device_ids: list[str], rows: int) -> dict:
    """executemany and COPY of the rows the server stored for `device_ids` (fresh message ids), in rows per second."""
    say(f"limit: PostgreSQL executemany and COPY of {rows:,} stored rows into a copy of the detections table")
    with psycopg.connect(database_url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_detection")
        conn.execute("CREATE TABLE bench_detection (LIKE detections_detection INCLUDING ALL)")
        names = [
            c.name for c in conn.execute("SELECT * FROM detections_detection LIMIT 0").description if c.name != "id"
        ]
        stored = conn.execute(f"SELECT {', '.join(names)} FROM detections_detection WHERE device_id = ANY(%s) LIMIT %s",
                              [device_ids, rows]).fetchall()  # fmt: skip
        json_columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'detections_detection' AND data_type = 'jsonb'"
            )
        }
        at, wrap = names.index("message_id"), [Jsonb if n in json_columns else None for n in names]

        def fresh() -> list[tuple]:
            return [tuple(uuid.uuid4() if i == at else (w(v) if w and v is not None else v)
                          for i, (v, w) in enumerate(zip(row, wrap))) for row in stored]  # fmt: skip

        columns, placeholders = ", ".join(names), ", ".join(["%s"] * len(names))
        conn.commit()
        batch, started = fresh(), time.perf_counter()
        with conn.cursor() as cur:
            for i in range(0, len(batch), BATCH):
                cur.executemany(
                    f"INSERT INTO bench_detection ({columns}) VALUES ({placeholders})", batch[i : i + BATCH]
                )
                conn.commit()
        executemany = len(batch) / (time.perf_counter() - started)
        batch, started = fresh(), time.perf_counter()
        with conn.cursor() as cur:
            for i in range(0, len(batch), BATCH):
                with cur.copy(f"COPY bench_detection ({columns}) FROM STDIN") as copy:
                    for row in batch[i : i + BATCH]:
                        copy.write_row(row)
                conn.commit()
        copy_rate = len(batch) / (time.perf_counter() - started)
        conn.execute("DROP TABLE bench_detection")
    say(f"  executemany {executemany:,.0f} rows/s, COPY {copy_rate:,.0f} rows/s")
    return {"executemany_per_s": executemany, "copy_per_s": copy_rate, "rows": len(stored)}


class BareSubscriber:
    """A paho subscriber that does nothing with what it receives; its session outlives its connections."""

    def __init__(self, port: int) -> None:
        self.port, self.count, self.first, self.last, self.subscribed = port, 0, 0.0, 0.0, False
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: setattr(self, "subscribed", True)

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


def bare_paho(port: int, device_ids: list[str], messages: int) -> dict:
    say(f"limit: a bare paho subscriber drains {messages:,} detection envelopes queued on the same broker")
    bare = BareSubscriber(port)
    bare.connect()
    bare.client.subscribe(f"{BARE_TOPIC}/+/up/+", qos=1)
    wait_for(lambda: bare.subscribed, 10, "the bare subscriber to subscribe")
    bare.disconnect()
    publish(port, device_ids, messages)
    bare = BareSubscriber(port)
    bare.connect()
    wait_for(lambda: bare.count >= messages, 300, "the bare subscriber to drain its queue", every=0.05)
    bare.disconnect()
    rate = (messages - 1) / (bare.last - bare.first)
    say(f"  {rate:,.0f} messages/s")
    return {"messages_per_s": rate, "messages": messages}


def publish(port: int, device_ids: list[str], messages: int) -> None:
    """QoS 1 detection envelopes, one `mosquitto_pub` per camera, while the bare subscriber is away."""
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    per_camera = messages // len(device_ids)
    procs = []
    for n, device_id in enumerate(device_ids):
        lines = "".join(json.dumps(
            {"message_id": str(uuid.uuid4()), "timestamp": now, "protocol": "mqtt", "edge_device_id": device_id,
             "data_type": "detection", "sequence": i,
             "payload": {"plate": f"AB{(n * per_camera + i // 3) % 1000:03d}CD", "confidence": 0.91, "region": "de",
                         "direction": "approaching", "bbox": {"x": 812, "y": 440, "w": 180, "h": 44},
                         "vehicle": {"type": "car", "color": "grey", "confidence": 0.8}}},
            separators=(",", ":")) + "\n" for i in range(per_camera))  # fmt: skip
        proc = subprocess.Popen(["mosquitto_pub", "-p", str(port), "-q", "1", "-l", "-t",
                                 f"{BARE_TOPIC}/{device_id}/up/detection"], stdin=subprocess.PIPE)  # fmt: skip
        proc.stdin.write(lines.encode())
        proc.stdin.close()
        procs.append(proc)
    for proc in procs:
        proc.wait()


def bare_echo(run: Run, transport: str) -> dict:
    """The same cameras and window against the server's bare echo endpoint of `transport` (bench/echo.py)."""
    say(f"limit: bare {transport} echo under the same Daphne, same cameras and window ({run.measure_s:g} s)")
    gen = NodeCameras(run.work, f"echo_{transport}", transport, run.cameras[transport], run.stack.base,
                      run.stack.mqtt_port, mode="saturate", warmup_s=run.warmup_s, measure_s=run.measure_s,
                      echo=True, **SATURATION[transport])  # fmt: skip
    run.sampler.add_client(gen.proc.pid)
    result = gen.result()
    rate = measure.answers_between(result.sent, *result.window_us) / run.measure_s
    say(f"  {rate:,.0f} messages/s acked")
    return {"messages_per_s": rate}


def bare_view(run: Run) -> dict:
    say(f"limit: the bare Django view under the same Daphne, same wrk script ({run.measure_s:g} s)")
    mark = time.time()
    gen = WrkCameras(run.work, "bare_view", run.cameras["rest_single"], run.stack.base, BARE_PATH,
                     warmup_s=run.warmup_s, measure_s=run.measure_s, **SATURATION["rest_single"])  # fmt: skip
    run.sampler.add_client(gen.proc.pid)
    result = gen.result()
    window = result.window_us
    rate = measure.answers_between(result.sent, *window) / run.measure_s
    say(f"  {rate:,.0f} requests/s")
    # Its answers name no message, so the latency is wrk's own (whole run, warm-up included).
    latency = {"p50": result.summary["p50_us"] / 1000, "p99": result.summary["p99_us"] / 1000}
    return {"requests_per_s": rate, "wrk_latency_ms": latency, **run.sampler.window(window[0] / 1e6, window[1] / 1e6),
            "elapsed_s": time.time() - mark}  # fmt: skip
