// The offered traffic, shared by every Node load generator (rest_single.lua implements the same model for wrk).
//
// A camera sees one car after another and reads each 2-4 times (a read every 1/rate s of its stream, so at
// the benchmark's rates all reads of a car fall within a second); one read in ten is an OCR misread of one
// character; one car in 200 carries a plate of the benchmark's watchlist (WA000NT..WA999NT). One message in
// `healthEvery` (set by bench/phases.py) is a health report instead of a read. A message's `timestamp` is its capture time: the send
// time for cameras that send each read as they make it, spread over the time since the previous upload for
// REST batch. Clock: microseconds since the epoch (CLOCK_REALTIME), as in the dashboard client and wrk's script.
'use strict';
const { randomUUID } = require('crypto');

const LETTERS = 'ABCDEFGHJKLMNPRSTUVWXYZ';
const DIGITS = '0123456789';
const CONFUSABLE = { B: '8', '8': 'B', O: '0', '0': 'O', S: '5', '5': 'S', Z: '2', '2': 'Z', G: '6', '6': 'G', I: '1', '1': 'I' };
const MISREAD_SHARE = 0.1;
const WATCHLIST_SHARE = 0.005;

const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

function isoUs(us) {
  const iso = new Date(Math.floor(us / 1000)).toISOString(); // 2026-11-26T10:30:00.123Z
  return iso.slice(0, 23) + String(us % 1000).padStart(3, '0') + 'Z';
}

function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Camera {
  constructor(deviceId, via, seed, healthEvery) {
    Object.assign(this, { deviceId, via, healthEvery, rand: mulberry32(seed), sequence: 0, plate: '', readsLeft: 0 });
  }

  pick(chars) { return chars[Math.floor(this.rand() * chars.length)]; }

  newPlate() {
    if (this.rand() < WATCHLIST_SHARE) return 'WA' + String(Math.floor(this.rand() * 1000)).padStart(3, '0') + 'NT';
    const p = (s) => this.pick(s);
    return p(LETTERS) + p(LETTERS) + p(DIGITS) + p(DIGITS) + p(DIGITS) + p(LETTERS) + p(LETTERS);
  }

  misread(plate) {
    const spots = [...plate].map((ch, i) => (ch in CONFUSABLE ? i : -1)).filter((i) => i >= 0);
    if (!spots.length) return plate;
    const i = spots[Math.floor(this.rand() * spots.length)];
    return plate.slice(0, i) + CONFUSABLE[plate[i]] + plate.slice(i + 1);
  }

  // The next message as {dataType, payload}; the envelope is made by `envelope` below.
  next() {
    this.sequence += 1;
    if (this.sequence % this.healthEvery === 0) {
      return { dataType: 'health', payload: { cpu_percent: Math.round(this.rand() * 600) / 10, temperature_c: 41.5, fps: 25,
        queue_depth: 0, firmware: 'bench-1.0', network: { latency_ms: 12, packet_loss: 0, bandwidth_kbps: 20000 } } };
    }
    if (this.readsLeft === 0) {
      this.plate = this.newPlate();
      this.readsLeft = 2 + Math.floor(this.rand() * 3);
      this.direction = this.rand() < 0.5 ? 'approaching' : 'receding';
    }
    this.readsLeft -= 1;
    const plate = this.rand() < MISREAD_SHARE ? this.misread(this.plate) : this.plate;
    return { dataType: 'detection', payload: { plate, confidence: Math.round((0.7 + this.rand() * 0.3) * 1000) / 1000,
      region: 'de', direction: this.direction, bbox: { x: 812, y: 440, w: 180, h: 44 },
      vehicle: { type: 'car', color: 'grey', confidence: 0.8 } } };
  }

  envelope(message, captureUs) {
    return { message_id: randomUUID(), timestamp: isoUs(captureUs), protocol: this.via, edge_device_id: this.deviceId,
      data_type: message.dataType, sequence: this.sequence, payload: message.payload };
  }
}

module.exports = { Camera, nowUs, isoUs };
