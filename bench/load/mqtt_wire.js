// A lean MQTT 3.1.1 client for the load generator: QoS 1 publish, one QoS 1 subscription, nothing else
// (no keep-alive, no reconnect, no QoS 2). The load must cost the machine as little as possible, and the
// packets involved are a few bytes of framing (MQTT 3.1.1, OASIS standard, section 2-3).
'use strict';
const net = require('net');

function remainingLength(n) {
  const out = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

const str = (s) => {
  const b = Buffer.from(s);
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
};
const packet = (first, body) => Buffer.concat([Buffer.from([first]), remainingLength(body.length), body]);
const u16 = (n) => Buffer.from([n >> 8, n & 0xff]);

class MqttClient {
  // onMessage(topic, payloadBuffer); onPuback(packetId)
  constructor({ host, port, clientId, onMessage = () => {}, onPuback = () => {} }) {
    Object.assign(this, { host, port, clientId, onMessage, onPuback, buffer: Buffer.alloc(0), nextId: 0 });
  }

  connect() {
    return new Promise((resolve, reject) => {
      this.socket = net.connect(this.port, this.host, () => {
        this.socket.setNoDelay(true);
        // protocol name, level 4, flags: clean session; keep-alive 0 (off)
        const variable = Buffer.concat([str('MQTT'), Buffer.from([4, 0x02, 0, 0])]);
        this.socket.write(packet(0x10, Buffer.concat([variable, str(this.clientId)])));
      });
      this.connected = { resolve, reject };
      this.socket.on('data', (chunk) => this.receive(chunk));
      this.socket.on('error', reject);
    });
  }

  subscribe(topic) {
    return new Promise((resolve) => {
      this.subscribed = resolve;
      this.socket.write(packet(0x82, Buffer.concat([u16(this.packetId()), str(topic), Buffer.from([1])])));
    });
  }

  packetId() {
    this.nextId = (this.nextId % 65535) + 1;
    return this.nextId;
  }

  publish(topic, payload) {
    const id = this.packetId();
    this.socket.write(packet(0x32, Buffer.concat([str(topic), u16(id), Buffer.from(payload)])));
    return id;
  }

  end() { this.socket.end(Buffer.from([0xe0, 0])); }

  receive(chunk) {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    for (;;) {
      let length = 0, multiplier = 1, at = 1;
      for (;; at++) {
        if (at >= this.buffer.length) return;
        length += (this.buffer[at] & 0x7f) * multiplier;
        multiplier *= 128;
        if (!(this.buffer[at] & 0x80)) break;
      }
      const start = at + 1, end = start + length;
      if (end > this.buffer.length) return;
      this.handle(this.buffer[0], this.buffer.subarray(start, end));
      this.buffer = this.buffer.subarray(end);
    }
  }

  handle(first, body) {
    const kind = first >> 4;
    if (kind === 2) { // CONNACK
      if (body[1] === 0) this.connected.resolve(this); else this.connected.reject(new Error(`CONNACK ${body[1]}`));
    } else if (kind === 9) { // SUBACK
      this.subscribed();
    } else if (kind === 4) { // PUBACK
      this.onPuback(body.readUInt16BE(0));
    } else if (kind === 3) { // PUBLISH
      const qos = (first >> 1) & 3, topicLength = body.readUInt16BE(0);
      const topic = body.toString('utf8', 2, 2 + topicLength);
      let at = 2 + topicLength;
      if (qos > 0) {
        this.socket.write(packet(0x40, body.subarray(at, at + 2)));
        at += 2;
      }
      this.onMessage(topic, body.subarray(at));
    }
  }
}

module.exports = { MqttClient };
