from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any


from edge.envelope import build_envelope
from edge.outbox import Outbox, OutboxLimits

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def add(box: Outbox, data_type: str, device: str = "CAM1", **payload: Any) -> dict[str, Any]:
    return box.enqueue(device, lambda seq: build_envelope(
        device_id=device, data_type=data_type, payload=payload or {"n": 1}, protocol="rest",
        sequence=seq))


def test_messages_stay_until_acked_accepted_or_duplicate(tmp_path) -> None:
    box = Outbox(str(tmp_path / "o.sqlite"))
    a, b, c = (add(box, "detection", plate=p) for p in "ABC")
    assert [e["sequence"] for e in (a, b, c)] == [1, 2, 3]
    assert [e["message_id"] for e in box.due()] == [a["message_id"], b["message_id"],
                                                      c["message_id"]]
    assert box.due()[0] == a  # stored exactly as built
    box.settle([{"message_id": a["message_id"], "status": "accepted"},
                {"message_id": b["message_id"], "status": "duplicate"}])
    assert box.message_ids() == [c["message_id"]] and len(box) == 1


def test_rejected_is_removed_and_reported(tmp_path) -> None:
    dropped: list[tuple[str, str]] = []
    box = Outbox(str(tmp_path / "o.sqlite"), on_drop=lambda e, r: dropped.append(
        (e["message_id"], r)))
    env = add(box, "detection")
    box.settle([{"message_id": env["message_id"], "status": "rejected", "error": "invalid"}])
    assert len(box) == 0 and dropped == [(env["message_id"], "rejected: invalid")]


def test_throttled_and_unavailable_wait_for_retry_after(tmp_path) -> None:
    clock = Clock()
    box = Outbox(str(tmp_path / "o.sqlite"), clock=clock)
    a, b, c = add(box, "detection"), add(box, "detection"), add(box, "detection")
    box.settle([{"message_id": a["message_id"], "status": "throttled", "retry_after": 5},
                {"message_id": b["message_id"], "status": "unavailable", "retry_after": 30}])
    assert [e["message_id"] for e in box.due()] == [c["message_id"]]
    assert box.next_due_in() == 0
    clock.t += 5
    assert [e["message_id"] for e in box.due()] == [a["message_id"], c["message_id"]]
    clock.t += 25
    assert len(box.due()) == 3 and len(box) == 3


def test_sequence_and_contents_survive_reopen(tmp_path) -> None:
    path = str(tmp_path / "o.sqlite")
    box = Outbox(path)
    first = add(box, "detection", plate="X1")
    box.close()
    box = Outbox(path)
    assert box.get(first["message_id"]) == first and len(box) == 1
    assert add(box, "health")["sequence"] == 2


def test_shedding_drops_health_then_config_then_detection_never_control(tmp_path) -> None:
    dropped: list[str] = []
    box = Outbox(str(tmp_path / "o.sqlite"), OutboxLimits(max_messages=5),
                 on_drop=lambda e, r: dropped.append(e["data_type"]))
    kept = [add(box, "control", command_id=1, status="received"),
            add(box, "detection", plate="D1")]
    add(box, "health")
    add(box, "config", version=1, values={})
    add(box, "health")
    assert dropped == []
    kept.append(add(box, "detection", plate="D2"))  # 6 > 5: oldest health goes
    assert dropped == ["health"]
    kept.append(add(box, "detection", plate="D3"))
    assert dropped == ["health", "health"]
    kept.append(add(box, "detection", plate="D4"))
    assert dropped == ["health", "health", "config"]
    add(box, "detection", plate="D5")  # now the oldest detection
    assert dropped[-1] == "detection" and box.get(kept[1]["message_id"]) is None
    for i in range(6):
        add(box, "control", command_id=i, status="done")
    counts = box.counts_by_type()
    assert counts["control"] == 7 and "detection" not in counts  # over the bound, kept
    assert box.get(kept[0]["message_id"]) is not None


def test_byte_bound_sheds_until_under(tmp_path) -> None:
    box = Outbox(str(tmp_path / "o.sqlite"), OutboxLimits(max_bytes=4000))
    for i in range(30):
        add(box, "detection", plate=f"P{i}", pad="x" * 200)
    assert box.size_bytes <= 4000 and 0 < len(box) < 30
    assert box.due(100)[-1]["payload"]["plate"] == "P29"  # newest kept


def test_age_bound_drops_old_messages_but_not_control(tmp_path) -> None:
    clock = Clock()
    dropped: list[tuple[str, str]] = []
    box = Outbox(str(tmp_path / "o.sqlite"), OutboxLimits(max_age_s=60), clock=clock,
                 on_drop=lambda e, r: dropped.append((e["data_type"], r)))
    add(box, "detection")
    control = add(box, "control", command_id=9, status="done")
    clock.t += 61
    fresh = add(box, "detection")
    assert dropped == [("detection", "expired")]
    assert box.message_ids() == [control["message_id"], fresh["message_id"]]


def test_state_values_persist(tmp_path) -> None:
    path = str(tmp_path / "o.sqlite")
    box = Outbox(path)
    box.set_state("config", {"version": 3, "values": {"a": 1}})
    box.close()
    assert Outbox(path).get_state("config") == {"version": 3, "values": {"a": 1}}


WRITER = textwrap.dedent("""
    import sys
    from edge.envelope import build_envelope
    from edge.outbox import Outbox
    box = Outbox(sys.argv[1])
    n = 0
    while True:
        n += 1
        env = box.enqueue("CAM1", lambda seq: build_envelope(
            device_id="CAM1", data_type="detection", payload={"n": n}, protocol="mqtt",
            sequence=seq))
        if n % 3 == 0:  # the server acked this one
            box.settle([{"message_id": env["message_id"], "status": "accepted"}])
            print("acked", env["message_id"], env["sequence"], flush=True)
        else:
            print("stored", env["message_id"], env["sequence"], flush=True)
""")


def test_outbox_survives_sigkill_mid_stream(tmp_path) -> None:
    path = str(tmp_path / "crash.sqlite")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, path], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    lines = []
    assert proc.stdout is not None
    while len(lines) < 300:
        lines.append(proc.stdout.readline().split())
    os.kill(proc.pid, signal.SIGKILL)  # mid-way: the writer never stops on its own
    proc.wait(5)
    assert proc.returncode == -signal.SIGKILL
    box = Outbox(path)
    stored = {mid: int(seq) for kind, mid, seq in lines if kind == "stored"}
    acked = {mid for kind, mid, _ in lines if kind == "acked"}
    on_disk = {e["message_id"]: e for e in box.due(10_000)}
    assert set(stored) <= set(on_disk)  # nothing reported stored was lost
    assert not acked & set(on_disk)  # nothing acked came back
    assert all(on_disk[mid]["sequence"] == seq for mid, seq in stored.items())
    sequences = sorted(e["sequence"] for e in on_disk.values())
    assert len(set(sequences)) == len(sequences)
    last = max(int(seq) for _, _, seq in lines)
    assert add(box, "detection")["sequence"] > max(last, sequences[-1])
