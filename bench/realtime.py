"""Real-time ingest: acked messages/s over 50 WebSocket and 50 Socket.IO connections, and ack latency at a fixed load.

    .venv/bin/python bench/realtime.py [--seconds 8] [--connections 50] [--window 64] [--rate 1000]
                                       [--phases ws,sio,latency] [--redis URL]
    BENCH_DATA_TYPE=health .venv/bin/python bench/realtime.py      # health payloads instead of detections

Starts one Daphne process on a fresh PostgreSQL database (`lpr_bench_realtime`)
serving the real application plus two bare echo endpoints (a Channels
consumer at /ws/echo/ and a Socket.IO namespace /echo that acknowledge
each message with itself, no database), so each figure is printed beside
the ceiling of the same server, transport and client measured in the same
run. The load comes from Node (socket.io-client and its `ws`, from
node_modules), so the client does not eat the server's CPU. Each connection
keeps `--window` messages unacknowledged; the latency phase sends `--rate`
messages/s open-loop, spread over 10 connections. Without `--redis` the
server runs on the embedded defaults (in-memory channel layer, eager Celery).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = {"websocket": 5000, "socketio": 3000, "p99_ms": 10.0}
DATA_TYPE = os.environ.get("BENCH_DATA_TYPE", "detection")  # detection (a plate read 20 times per vehicle) or health


# --- the server side: the application plus bare echo endpoints -------------------------------------

_app = None


async def application(scope, receive, send):
    """`lpr_server.asgi.application` with /ws/echo/ and the Socket.IO namespace /echo added."""
    global _app
    if _app is None:
        _app = _build_app()
    return await _app(scope, receive, send)


def _build_app():
    import socketio
    from channels.generic.websocket import AsyncWebsocketConsumer

    from lpr_server import asgi
    from transport.socketio.server import sio

    class Echo(AsyncWebsocketConsumer):
        async def dispatch(self, message):  # as lean as the device consumer: no per-frame DB cleanup
            await getattr(self, message["type"].replace(".", "_"))(message)

        async def receive(self, text_data=None, bytes_data=None):
            await self.send(text_data=text_data)

    class EchoNamespace(socketio.AsyncNamespace):
        async def on_envelope(self, sid, data):
            return data

    sio.register_namespace(EchoNamespace("/echo"))
    echo = Echo.as_asgi()

    async def app(scope, receive, send):
        if scope["type"] == "websocket" and scope["path"] == "/ws/echo/":
            return await echo(scope, receive, send)
        return await asgi.application(scope, receive, send)

    return app


# --- the client side: Node (socket.io-client and its `ws`), so the client does not eat the server's CPU -----

LOAD_JS = r"""
const cfg = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const WebSocket = require('ws');
const { io } = require('socket.io-client');
const { randomUUID } = require('crypto');
const PAYLOADS = {
  detection: (n) => ({ plate: 'B' + String(Math.floor(n / 20) % 1000000).padStart(6, '0'), confidence: 0.91, region: 'de' }),
  health: (n) => ({ cpu_percent: 12.5, fps: n % 30, network: { latency_ms: 30 } }),
};
function envelope(deviceId, via, n) {
  return { message_id: randomUUID(), timestamp: new Date().toISOString(), protocol: via, edge_device_id: deviceId,
           data_type: cfg.data_type, payload: PAYLOADS[cfg.data_type](n) };
}
let acked = 0, latencies = [], start = 0, deadline = 0, open = 0;
const lanes = [];  // one function per connection: send(n, onAck)
function connectWs([id, token]) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(cfg.base.replace('http', 'ws') + cfg.path + '?token=' + token, { perMessageDeflate: false });
    const waiting = new Map();
    ws.on('message', (data) => {
      const reply = JSON.parse(data);
      const done = waiting.get(reply.message_id);
      if (done) { waiting.delete(reply.message_id); done(reply.status || 'accepted'); }
    });
    ws.on('open', () => resolve((n, onAck) => {
      const env = envelope(id, 'websocket', n);
      waiting.set(env.message_id, onAck);
      ws.send(JSON.stringify(env));
    }));
    ws.on('error', reject);
  });
}
function connectSio([id, token]) {
  return new Promise((resolve, reject) => {
    const s = io(cfg.base + cfg.namespace, { auth: { token }, transports: ['websocket'], reconnection: false });
    s.on('connect', () => resolve((n, onAck) => s.emit('envelope', envelope(id, 'socketio', n), (ack) => onAck(ack.status || 'accepted'))));
    s.on('connect_error', reject);
  });
}
async function main() {
  const connect = cfg.transport === 'socketio' ? connectSio : connectWs;
  const sends = await Promise.all(cfg.devices.map(connect));
  start = Date.now(); deadline = start + cfg.seconds * 1000;
  if (cfg.mode === 'saturate') {
    sends.forEach((send) => {
      let n = 0;
      const next = () => { const at = Date.now(); send(n++, (status) => {
        if (Date.now() < deadline) { if (status === 'accepted') acked++; next(); } }); };
      for (let i = 0; i < cfg.window; i++) next();
    });
  } else {
    const perConn = cfg.rate / sends.length, total = Math.floor(perConn * cfg.seconds);
    sends.forEach((send, c) => {
      let n = 0;
      const tick = () => {
        const due = Math.min(total, Math.floor((Date.now() - start) * perConn / 1000) + 1);
        while (n < due) { const t0 = process.hrtime.bigint(); send(n++, (status) => {
          if (status === 'accepted') { acked++; latencies.push(Number(process.hrtime.bigint() - t0) / 1e6); } }); }
        if (n < total) setTimeout(tick, 1);
      };
      setTimeout(tick, c * 1000 / cfg.rate);
    });
  }
  setTimeout(() => { process.stdout.write(JSON.stringify({ acked, seconds: cfg.seconds, latencies }), () => process.exit(0)); },
             cfg.seconds * 1000 + (cfg.mode === 'saturate' ? 0 : 1000));
}
main().catch((e) => { console.error(e); process.exit(1); });
"""


def run_load(**cfg) -> dict:
    """Run the Node load generator with `cfg` (transport, mode, base, path or namespace, devices, ...)."""
    out = subprocess.run(["node", "-e", LOAD_JS], input=json.dumps(cfg), capture_output=True, text=True,
                         cwd=ROOT, timeout=cfg["seconds"] + 60)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else float("nan")


def run_phases(base: str, tokens: dict[str, str], args) -> list[tuple[str, str, str]]:
    devices = [[d, t] for d, t in tokens.items()]
    phases = set(args.phases.split(","))
    rows: list[tuple[str, str, str]] = []
    common = dict(base=base, data_type=DATA_TYPE, seconds=args.seconds, window=args.window)

    def saturate(label: str, **cfg) -> float:
        result = run_load(mode="saturate", devices=devices, **common, **cfg)
        rate = result["acked"] / args.seconds
        rows.append((label, f"{rate:,.0f} msg/s", f"{result['acked']:,} acked in {args.seconds:g} s"))
        return rate

    ws = sio = float("nan")
    if "ws" in phases:
        saturate("WebSocket echo (bare consumer)", transport="websocket", path="/ws/echo/")
        ws = saturate("WebSocket ingest, acked after commit", transport="websocket", path="/ws/device/")
    if "sio" in phases:
        saturate("Socket.IO echo (bare namespace)", transport="socketio", namespace="/echo")
        sio = saturate("Socket.IO ingest, acked after commit", transport="socketio", namespace="/device")
    if "latency" in phases:
        for label, where in [("WebSocket echo", {"transport": "websocket", "path": "/ws/echo/"}),
                             ("WebSocket ingest", {"transport": "websocket", "path": "/ws/device/"}),
                             ("Socket.IO echo", {"transport": "socketio", "namespace": "/echo"}),
                             ("Socket.IO ingest", {"transport": "socketio", "namespace": "/device"})]:  # fmt: skip
            lat = run_load(mode="rate", devices=devices[:10], rate=args.rate, **common, **where)["latencies"]
            rows.append((f"{label} ack latency at {args.rate:,.0f} msg/s",
                         f"p50 {percentile(lat, 50):.2f} ms", f"p99 {percentile(lat, 99):.2f} ms ({len(lat):,} acks)"))
    rows.append(("targets", f"WS >= {TARGETS['websocket']:,}/s, SIO >= {TARGETS['socketio']:,}/s",
                 f"p99 < {TARGETS['p99_ms']:g} ms at 1,000/s; measured WS {ws:,.0f}/s, SIO {sio:,.0f}/s"))
    return rows


def setup_devices(database_url: str, count: int) -> dict[str, str]:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lpr_server.settings")
    import django

    django.setup()
    from devices import credentials
    from transport import auth

    tokens = {}
    for i in range(count):
        device, _ = credentials.create_device(f"RTB{i:03d}")
        tokens[device.id] = auth.issue_token(device)[0]
    return tokens


def start_server(database_url: str, redis_url: str) -> tuple[subprocess.Popen, str]:
    from bench.stack import free_port, say, server_env

    port = free_port()
    env = server_env(database_url, DEVICE_TOKEN_TTL_S="3600", **({"REDIS_URL": redis_url} if redis_url else {}))
    proc = subprocess.Popen([str(ROOT / ".venv/bin/daphne"), "-b", "127.0.0.1", "-p", str(port), "-v", "0",
                             "bench.realtime:application"], cwd=ROOT, env=env)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1)
            say(f"server up on {base} (pid {proc.pid}, channel layer: {'Redis' if redis_url else 'in-memory'})")
            return proc, base
        except OSError:
            time.sleep(0.25)
    proc.terminate()
    raise RuntimeError("the server did not answer /healthz within 30 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--window", type=int, default=64, help="unacknowledged messages per connection")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered load of the latency phase, msg/s")
    parser.add_argument("--phases", default="ws,sio,latency", help="comma-separated subset of ws,sio,latency")
    parser.add_argument("--redis", default="", help="REDIS_URL for the server (default: in-memory channel layer)")
    args = parser.parse_args()

    from bench.stack import fresh_database

    database_url = fresh_database("lpr_bench_realtime")
    tokens = setup_devices(database_url, args.connections)
    proc, base = start_server(database_url, args.redis)
    try:
        rows = run_phases(base, tokens, args)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'':{width}}  (2 shared cores; other work on the machine lowers these figures)")
    for label, a, b in rows:
        print(f"{label:{width}}  {a:>16}  {b}")


if __name__ == "__main__":
    main()
