from __future__ import annotations

import asyncio
import json
import random
import re
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

from edge.envelope import decode_payload
from edge.plates import FORMATS, PlateStream, make_plate, misread
from edge.simulate import FRAME_JPEG, load_credentials
from tests.edge.edge_fakeserver import FakeServer
from tests.edge.edge_helpers import run

ROOT = Path(__file__).resolve().parents[2]


def test_plates_follow_national_formats_and_misreads_differ_by_one_error() -> None:
    rng = random.Random(3)
    for region, patterns in FORMATS.items():
        plate, got = make_plate(rng, region)
        assert got == region and any(
            re.fullmatch(p.replace("L", "[A-Z]").replace("D", "[0-9]"), plate) for p in patterns)
    for _ in range(200):
        plate, _ = make_plate(rng)
        wrong = misread(rng, plate)
        if len(wrong) == len(plate):
            assert sum(a != b for a, b in zip(wrong, plate)) == 1
        else:
            assert len(wrong) == len(plate) - 1


def test_a_car_is_read_several_times_with_candidates() -> None:
    stream = PlateStream(random.Random(5))
    reads = [stream.next_read() for _ in range(200)]
    assert all(r["candidates"][0]["plate"] == r["plate"] for r in reads)
    def car(r: dict) -> tuple:
        return r["vehicle"]["make"], r["vehicle"]["color"], r["lane"], r["speed_kph"]
    repeats = sum(car(a) == car(b) for a, b in zip(reads, reads[1:]))
    assert repeats > 50  # the same passage read more than once
    assert len({r["region"] for r in reads}) > 1


def test_credentials_file_as_array_or_one_object_per_device(tmp_path) -> None:
    one = {"device_id": "CAM1", "key": "k1", "payload_key": None}
    two = {"device_id": "CAM2", "key": "k2", "payload_key": "p"}
    (tmp_path / "a.json").write_text(json.dumps([one, two]))
    (tmp_path / "b.json").write_text(json.dumps(one) + "\n" + json.dumps(two, indent=2))
    assert load_credentials(str(tmp_path / "a.json"), 5) == [one, two]
    assert load_credentials(str(tmp_path / "b.json"), 1) == [one]
    assert load_credentials(None, 2)[1]["device_id"] == "SIM-0002"


def test_simulator_cli_delivers_everything_it_logs(tmp_path) -> None:
    keys = {f"SIMT-{i}": f"key-{i}" for i in range(4)}
    fernet = {d: Fernet.generate_key().decode() for d in keys}
    creds = [{"device_id": d, "key": k, "payload_key": fernet[d]} for d, k in keys.items()]
    (tmp_path / "creds.json").write_text(json.dumps(creds))

    async def body() -> tuple[FakeServer, bytes, bytes]:
        server = await FakeServer(keys=keys).start()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.simulate", "--server", server.url, "--cameras", "4",
            "--rate", "5", "--protocol", "auto", "--duration", "3", "--drain", "5",
            "--credentials", str(tmp_path / "creds.json"), "--state-dir",
            str(tmp_path / "state"), "--health-interval", "1", "--encrypt", "--compression",
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        async def watch_live_video() -> None:  # an operator opens the live view
            while len(server.ws_clients) < 4:
                await asyncio.sleep(0.05)
            await server.push_ws({"type": "video", "action": "start", "max_fps": 5})
        watcher = asyncio.create_task(watch_live_video())
        out, err = await proc.communicate()
        watcher.cancel()
        assert proc.returncode == 0, err.decode()
        await server.stop()
        return server, out, err

    server, out, err = run(body(), timeout=30)
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["cameras"] == 4 and summary["queued"] == 0
    assert summary["produced"] == summary["acked"] > 20
    progress = [line for line in err.decode().splitlines() if "produced" in line]
    assert len(progress) >= 3 and "websocket 4" in progress[-1]
    produced: dict[str, dict] = {}
    for device in keys:
        lines = [json.loads(x) for x in
                 (tmp_path / "state" / f"{device}.messages.jsonl").read_text().splitlines()]
        mine = {x["message_id"]: x for x in lines if x["event"] == "produced"}
        acked = {x["message_id"] for x in lines if x["event"] == "ack"
                 and x["status"] in ("accepted", "duplicate")}
        assert set(mine) == acked
        assert sorted(x["sequence"] for x in mine.values()) == list(range(1, len(mine) + 1))
        assert {x["data_type"] for x in mine.values()} >= {"detection", "health", "config"}
        produced.update(mine)
    assert set(produced) == set(server.stored)
    assert server.frames and set(server.frames) == {FRAME_JPEG}
    detections = [decode_payload(e["payload"], e["metadata"], fernet[e["edge_device_id"]])
                  for e in server.stored.values() if e["data_type"] == "detection"]
    assert all({"plate", "confidence", "candidates", "region"} <= set(d) for d in detections)
