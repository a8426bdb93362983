// Cameras sending detections over WebSocket, Socket.IO, REST batch or MQTT, in one Node process.
//
//   node bench/load/camera.js CONFIG.json
//
// config: {transport: websocket|socketio|rest_batch|mqtt, mode: saturate|rate, base, mqtt: {host, port},
//          cameras: [{id, key, token}], health_every, window, batch, batch_interval_s, rate, warmup_s, measure_s, drain_s, log, seed,
//          start_at_us (optional: connect first, then start sending at this time)}
// saturate: each connection keeps `window` messages unacknowledged (REST batch: `window` POSTs of `batch` messages
// in flight); rate: `rate` messages/s in all, open loop, spread evenly over the cameras.
// Writes one line per message to `log`: "message_id kind send_us ack_us status" (kind d|h; ack_us 0: no ack),
// and a summary JSON on stdout: the measured window, counts, this process's CPU seconds and its event loop's lag
// over the window (ms late at p50 and p99).
'use strict';
const fs = require('fs');
const http = require('http');
const WebSocket = require('ws');
const { io } = require('socket.io-client');
const { Camera, nowUs, isoUs } = require('./traffic');
const { MqttClient } = require('./mqtt_wire');
const { monitorEventLoopDelay } = require('perf_hooks');

const LOOP_PROBE_MS = 10;

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const log = { id: [], kind: [], send: [], ack: [], status: [] };
const pending = new Map(); // message_id -> index in log, until acked
let stopping = false;

function record(envelope, sendUs) {
  const i = log.id.push(envelope.message_id) - 1;
  log.kind.push(envelope.data_type === 'detection' ? 'd' : 'h');
  log.send.push(sendUs);
  log.ack.push(0);
  log.status.push('-');
  pending.set(envelope.message_id, i);
}

function acked(messageId, status, ackUs = nowUs()) {
  const i = pending.get(messageId);
  if (i === undefined) return false;
  pending.delete(messageId);
  log.ack[i] = ackUs;
  log.status[i] = status;
  return true;
}

// --- one lane per camera: lane.send(onAck) sends the camera's next message --------------------------

function wsLane(camera) {
  return new Promise((resolve, reject) => {
    const path = cfg.echo ? '/bench/ws/echo/' : `/ws/device/?token=${camera.token}`; // echo: the bare ceiling
    const ws = new WebSocket(`${cfg.base.replace('http', 'ws')}${path}`, { perMessageDeflate: false });
    const done = new Map();
    ws.on('message', (data) => {
      const reply = JSON.parse(data);
      if (reply.type === 'ack' && acked(reply.message_id, reply.status)) done.get(reply.message_id)?.();
      done.delete(reply.message_id);
    });
    ws.on('open', () => resolve({ close: () => ws.close(), send(onAck) {
      const env = camera.model.envelope(camera.model.next(), nowUs());
      done.set(env.message_id, onAck);
      record(env, nowUs());
      ws.send(JSON.stringify(env));
    } }));
    ws.on('error', reject);
  });
}

function sioLane(camera) {
  return new Promise((resolve, reject) => {
    const namespace = cfg.echo ? '/bench-echo' : '/device'; // echo: the bare ceiling
    const s = io(cfg.base + namespace, { auth: { token: camera.token }, transports: ['websocket'], reconnection: false });
    s.on('connect', () => resolve({ close: () => s.close(), send(onAck) {
      const env = camera.model.envelope(camera.model.next(), nowUs());
      record(env, nowUs());
      s.emit('envelope', env, (ack) => { if (acked(ack.message_id, ack.status)) onAck(); });
    } }));
    s.on('connect_error', reject);
  });
}

async function mqttLane(camera) {
  const done = new Map();
  const client = new MqttClient({ host: cfg.mqtt.host, port: cfg.mqtt.port, clientId: `bench-${camera.id}`,
    onMessage: (topic, payload) => {
      const reply = JSON.parse(payload);
      if (acked(reply.message_id, reply.status)) done.get(reply.message_id)?.();
      done.delete(reply.message_id);
    } });
  await client.connect();
  await client.subscribe(`lpr/v1/devices/${camera.id}/down/ack`);
  return { close: () => client.end(), send(onAck) {
    const env = camera.model.envelope(camera.model.next(), nowUs());
    done.set(env.message_id, onAck);
    record(env, nowUs());
    client.publish(`lpr/v1/devices/${camera.id}/up/${env.data_type}`, JSON.stringify(env));
  } };
}

// REST batch: bodies are encoded ahead, with a slot for each capture time, filled in at send time.
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const MARK = '"@@ts@@"';

function batchTemplate(camera, size) {
  const parts = [];
  for (let n = 0; n < size; n++) {
    const env = camera.model.envelope(camera.model.next(), 0);
    env.timestamp = '@@ts@@';
    const [head, tail] = JSON.stringify(env).split(MARK);
    parts.push({ id: env.message_id, kind: env.data_type, head, tail });
  }
  return parts;
}

function postBatch(camera, parts, onDone) {
  const sendUs = nowUs();
  const since = camera.lastUploadUs || sendUs - 1e6, step = (sendUs - since) / parts.length;
  camera.lastUploadUs = sendUs;
  const body = '{"messages":[' + parts.map((p, n) => `${p.head}"${isoUs(Math.round(since + step * (n + 1)))}"${p.tail}`).join(',') + ']}';
  parts.forEach((p) => record({ message_id: p.id, data_type: p.kind }, sendUs));
  const url = new URL('/api/v1/ingest/batch/', cfg.base);
  const req = http.request(url, { method: 'POST', agent, headers: { Authorization: `Device ${camera.key}`,
    'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('end', () => {
      const ackUs = nowUs();
      if (res.statusCode === 200) {
        for (const r of JSON.parse(Buffer.concat(chunks)).results) acked(r.message_id, r.status, ackUs);
      } else {
        parts.forEach((p) => acked(p.id, `http${res.statusCode}`, ackUs));
      }
      onDone();
    });
  });
  req.on('error', (e) => { console.error(e); onDone(); });
  req.end(body);
}

// --- driving the lanes ------------------------------------------------------------------------------

function saturate(lanes) {
  for (const lane of lanes) {
    const next = () => { if (!stopping) lane.send(next); };
    for (let i = 0; i < cfg.window; i++) next();
  }
}

function atRate(lanes, start) {
  const perLane = cfg.rate / lanes.length;
  lanes.forEach((lane, c) => {
    let n = 0;
    // Lane c's clock runs c / rate s behind the first's, so the lanes take turns: one message every 1 / rate s
    // in all, not every lane at once on the same beat.
    const laneStart = start + (c * 1e6) / cfg.rate;
    const tick = () => {
      if (stopping) return;
      const due = Math.floor(((nowUs() - laneStart) / 1e6) * perLane) + 1;
      while (n < due) { lane.send(() => {}); n++; }
      setTimeout(tick, 1);
    };
    setTimeout(tick, Math.max(0, (laneStart - nowUs()) / 1000));
  });
}

function restBatch(cameras, start) {
  if (cfg.mode === 'saturate') {
    let turn = 0;
    const loop = () => {
      if (stopping) return;
      const camera = cameras[turn++ % cameras.length];
      const parts = camera.ready || batchTemplate(camera, cfg.batch);
      camera.ready = null;
      postBatch(camera, parts, loop);
      camera.ready = batchTemplate(camera, cfg.batch); // encoded while the server works on this one
    };
    for (let i = 0; i < cfg.window; i++) loop();
    return;
  }
  const interval = cfg.batch_interval_s * 1e6, size = Math.max(1, Math.round((cfg.rate / cameras.length) * cfg.batch_interval_s));
  cameras.forEach((camera, c) => {
    let k = 0;
    camera.lastUploadUs = start + (c * interval) / cameras.length - interval;
    const tick = () => {
      if (stopping) return;
      postBatch(camera, batchTemplate(camera, size), () => {});
      k++;
      setTimeout(tick, Math.max(0, (start + (c * interval) / cameras.length + k * interval - nowUs()) / 1000));
    };
    setTimeout(tick, (c * cfg.batch_interval_s * 1000) / cameras.length);
  });
}

async function main() {
  const cameras = cfg.cameras.map((c, i) => ({ ...c, model: new Camera(c.id, cfg.transport === 'rest_batch' ? 'rest' : cfg.transport,
    (cfg.seed || 1) * 1000 + i, cfg.health_every) }));
  const connect = { websocket: wsLane, socketio: sioLane, mqtt: mqttLane }[cfg.transport];
  const lanes = connect ? await Promise.all(cameras.map(connect)) : [];
  if (cfg.start_at_us) await new Promise((r) => setTimeout(r, Math.max(0, (cfg.start_at_us - nowUs()) / 1000)));
  const cpuStart = process.cpuUsage();
  const start = nowUs();
  if (cfg.transport === 'rest_batch') restBatch(cameras, start);
  else if (cfg.mode === 'saturate') saturate(lanes);
  else atRate(lanes, start);
  const windowStart = start + cfg.warmup_s * 1e6, windowEnd = windowStart + cfg.measure_s * 1e6;
  // This process's own event-loop lag over the window: an ack that arrives while the loop is late is timed late.
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_PROBE_MS });
  setTimeout(() => loopDelay.enable(), Math.max(0, (windowStart - nowUs()) / 1000));
  await new Promise((r) => setTimeout(r, (windowEnd - nowUs()) / 1000));
  loopDelay.disable();
  stopping = true;
  const drainUntil = nowUs() + (cfg.drain_s ?? 10) * 1e6;
  while (pending.size && nowUs() < drainUntil) await new Promise((r) => setTimeout(r, 20));
  const cpu = process.cpuUsage(cpuStart);
  lanes.forEach((lane) => lane.close());
  const out = fs.createWriteStream(cfg.log);
  const counts = {};
  for (let i = 0; i < log.id.length; i++) {
    counts[log.status[i]] = (counts[log.status[i]] || 0) + 1;
    out.write(`${log.id[i]} ${log.kind[i]} ${log.send[i]} ${log.ack[i]} ${log.status[i]}\n`);
  }
  out.end(() => {
    process.stdout.write(JSON.stringify({ window: [windowStart, windowEnd], sent: log.id.length, unanswered: pending.size,
      statuses: counts, cpu_s: (cpu.user + cpu.system) / 1e6, loop_lag_ms: lagOf(loopDelay) }), () => process.exit(0));
  });
}

// The histogram holds the time between the probe's wake-ups, each due LOOP_PROBE_MS after the last.
function lagOf(histogram) {
  if (!histogram.count) return null;
  const late = (q) => Math.max(0, histogram.percentile(q) / 1e6 - LOOP_PROBE_MS);
  return { p50: late(50), p99: late(99) };
}

main().catch((e) => { console.error(e); process.exit(1); });
