"""The one module that imports paho-mqtt: a broker connection on its own network thread.

The bridge and the downlink publisher both use `Connection`; they see
received messages as plain `Received` values and never touch paho.

Broker address: `mqtt://[user:password@]host[:port][?protocol=3.1.1]`, or
`mqtts://` for TLS (system trust store, or `?ca=/path/to/ca.pem`). MQTT 5 is
the default; the embedded broker speaks 3.1.1 only.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

# Capped low: after a broker restart the bridge must be back within seconds, and a retry every 5 s costs nothing.
RECONNECT_MIN_S, RECONNECT_MAX_S = 1.0, 5.0
KEEPALIVE_S = 30
READ_CHUNK = 64 * 1024
_PUBACK_SUCCESS, _NO_PROPERTIES = ReasonCode(PacketTypes.PUBACK), Properties(PacketTypes.PUBACK)
_PUBLISH_QOS1, _PUBACK_HEADER = 0x32, b"\x40\x02"
STOP_FLUSH_S = 5.0
SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    mqtt5: bool = True

    @classmethod
    def from_url(cls, url: str) -> "BrokerAddress":
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"MQTT_URL must start with mqtt:// or mqtts://, not {parts.scheme!r}")
        tls = parts.scheme in ("mqtts", "ssl")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            ca_file=query.get("ca"),
            mqtt5=query.get("protocol", "5") not in ("3.1.1", "311", "4"),
        )


class Received(msgspec.Struct, frozen=True, gc=False):  # untracked: a batch holds hundreds (see transport.envelope)
    """A message from the broker. `generation` names the connection it came on: a PUBACK is only
    meaningful on that connection, since after a reconnect the broker may reuse its packet id."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    generation: int


@dataclass(frozen=True, slots=True)
class Session:
    """How the broker should keep this client's subscriptions and unacknowledged messages."""

    client_id: str = ""
    persistent: bool = False  # keep subscriptions and queue QoS 1 messages while disconnected
    expiry_s: int = SESSION_EXPIRY_S  # MQTT 5: how long the broker keeps a persistent session
    receive_maximum: int = 0  # MQTT 5: unacknowledged messages the broker may send at once (0: broker's default)
    manual_ack: bool = False


class _Client(mqtt.Client):
    """paho's client, reading the socket 64 KiB at a time and writing it a batch at a time.

    paho reads each packet a byte or two at a time, a system call each (three
    or more per message), and writes every packet with a system call of its
    own; serving its reads from one buffer halves the CPU a message costs to
    receive, and collecting its writes until `flush` sends a batch of acks in
    one call. On MQTT 5, a QoS 1 PUBLISH without properties and a PUBACK
    that carries only its packet id (success: every PUBACK Mosquitto sends
    for a delivered message) are decoded here, without the reason-code and
    properties objects paho builds for each: with two such packets a
    message (the camera's read, the broker's PUBACK for its `down/ack`),
    those objects cost the bridge about a quarter of its time. Only the
    private methods paho reads and writes through are replaced, so an
    upgrade of the pinned paho-mqtt is checked by the tests.

    The bridge's own traffic, a QoS 1 message in and a QoS 1 ack out for
    every read, also skips paho's per-message objects: `on_qos1_publish`
    takes such a PUBLISH as plain values (no message object, no callback
    dispatch), and `send_qos1` publishes with nothing but its packet id
    kept until the broker's PUBACK (paho's `publish` makes a message, an
    info object with a lock and a condition, and a callback round). Both
    its publishes and the PUBACKs of `ack` go straight to the write buffer
    when paho has nothing queued before them.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer, self._read_at = b"", 0
        self._write_buffer = bytearray()
        # (topic, payload, mid, retain): when set, a plain QoS 1 PUBLISH goes here instead of to on_message
        self.on_qos1_publish: Callable[[str, bytes, int, bool], None] | None = None
        self._sent_unacked: dict[int, tuple[bytes, bytes]] = {}  # send_qos1's publishes awaiting PUBACK, by id

    def loop(self, timeout: float = 1.0) -> mqtt.MQTTErrorCode:
        # paho's own `loop` first makes a socket pair that every queued packet then writes a byte to, to wake a
        # select() in another thread. Here only the network thread queues packets: skip it, a system call each.
        return self._loop(timeout)

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        if self._protocol != mqtt.MQTTv5 or (header & 0x06) != 0x02 or not self._manual_ack:  # not QoS 1, acked by us
            return super()._handle_publish()
        after_topic = 2 + int.from_bytes(packet[:2], "big")
        if len(packet) < after_topic + 3 or packet[after_topic + 2] != 0:  # short (paho says how) or with properties
            return super()._handle_publish()
        mid, retain = int.from_bytes(packet[after_topic : after_topic + 2], "big"), bool(header & 0x01)
        if self.on_qos1_publish is not None:
            try:
                topic = packet[2:after_topic].decode()
            except UnicodeDecodeError:
                return super()._handle_publish()  # paho hands it on with topic None
            self.on_qos1_publish(topic, bytes(memoryview(packet)[after_topic + 3 :]), mid, retain)
            return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        message = mqtt.MQTTMessage(mid=mid, topic=bytes(packet[2:after_topic]))
        message.dup, message.qos, message.retain = bool(header & 0x08), 1, retain
        message.payload = bytes(memoryview(packet)[after_topic + 3 :])
        message.timestamp = time.monotonic()
        self._handle_on_message(message)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_pubackcomp(self, cmd) -> mqtt.MQTTErrorCode:
        packet = self._in_packet["packet"]
        if cmd == "PUBACK" and len(packet) >= 2 and self._sent_unacked.pop(int.from_bytes(packet[:2], "big"), None):
            return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS  # one of send_qos1's (a refusal reason is the broker's affair)
        if cmd != "PUBACK" or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        mid = int.from_bytes(packet, "big")
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, _PUBACK_SUCCESS, _NO_PROPERTIES)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def send_qos1(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 without properties, kept by packet id alone until the broker's PUBACK (resent by
        `resend_unacked` on the next connection)."""
        mid, topic_bytes = self._mid_generate(), topic.encode()
        self._sent_unacked[mid] = (topic_bytes, payload)
        if self._may_write_directly():
            self._write_buffer += self._qos1_publish(mid, topic_bytes, payload)
        else:
            self._send_publish(mid, topic_bytes, payload, 1)

    def ack(self, mid: int, qos: int) -> mqtt.MQTTErrorCode:
        if qos == 1 and self._manual_ack and self._may_write_directly():
            self._write_buffer += _PUBACK_HEADER + mid.to_bytes(2, "big")  # success: no reason code needed
            return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        return super().ack(mid, qos)

    def _may_write_directly(self) -> bool:
        """True when a packet can go straight to the write buffer (paho's packet queue and its write call cost
        more than the packet): connected, and nothing paho queued is still waiting to go before it."""
        return self._sock is not None and not self._out_packet

    def _qos1_publish(self, mid: int, topic: bytes, payload: bytes) -> bytes:
        head = len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big")
        if self._protocol == mqtt.MQTTv5:
            head += b"\x00"  # no properties
        return bytes([_PUBLISH_QOS1]) + _remaining_length(len(head) + len(payload)) + head + payload

    def resend_unacked(self) -> None:
        """After a reconnect: send_qos1's publishes the broker never acknowledged, again, marked duplicate."""
        for mid, (topic, payload) in self._sent_unacked.items():
            self._send_publish(mid, topic, payload, 1, dup=True)

    def sent_unacked(self) -> int:
        return len(self._sent_unacked)

    def _mid_generate(self) -> int:
        # One packet id space for paho's publishes and send_qos1's: skip ids either still waits on.
        while True:
            mid = super()._mid_generate()
            if mid not in self._sent_unacked and mid not in self._out_messages:
                return mid

    def buffered(self) -> int:
        """Bytes read from the socket that paho has not taken yet (select() cannot see them)."""
        return len(self._read_buffer) - self._read_at

    def _packet_read(self) -> mqtt.MQTTErrorCode:
        # paho reads a packet through three or more calls of _sock_recv (the type, each byte of the length,
        # the rest) and makes a new dict for the next one; a packet already whole in the read buffer is
        # taken in one go. A partial one (or a length of more than four bytes) is left to paho's reading.
        whole = self._whole_packet() if self._in_packet["command"] == 0 else None
        if whole is None:
            return super()._packet_read()
        self._in_packet["command"], self._in_packet["packet"] = whole
        try:
            rc = self._packet_handle()
        except mqtt.MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet["command"], self._in_packet["packet"] = 0, bytearray()
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        return rc

    def _whole_packet(self) -> tuple[int, bytes] | None:
        """(fixed header's first byte, the rest after the length) of the next packet if the buffer holds it all."""
        buf, start, end = self._read_buffer, self._read_at, len(self._read_buffer)
        length, shift, at = 0, 0, start + 1
        while True:
            if at >= end or at - start > 4:
                return None
            byte = buf[at]
            at += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if at + length > end:
            return None
        self._read_at = at + length
        return buf[start], buf[at : at + length]

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._read_at >= len(self._read_buffer):
            self._read_buffer, self._read_at = super()._sock_recv(READ_CHUNK), 0  # may raise BlockingIOError
            if not self._read_buffer:
                return b""  # closed by the broker
        data = self._read_buffer[self._read_at : self._read_at + bufsize]
        self._read_at += len(data)
        return data

    def _sock_send(self, buf: bytes | bytearray) -> int:
        if self._sock is None:
            raise ConnectionError("self._sock is None")
        self._write_buffer += buf
        return len(buf)

    def unsent(self) -> int:
        return len(self._write_buffer)

    def flush(self) -> bool:
        """Send what paho has written since the last flush; False if the connection is lost. What the socket
        cannot take now stays for the next flush."""
        while self._write_buffer:
            try:
                sent = super()._sock_send(self._write_buffer)
            except BlockingIOError:
                return True
            except OSError:
                return False
            del self._write_buffer[:sent]
        return True

    def _sock_close(self) -> None:
        if self._sock is not None:
            self.flush()  # a DISCONNECT, the last acks
        # What a dead connection left must not be read, or sent, on the next.
        self._read_buffer, self._read_at, self._write_buffer = b"", 0, bytearray()
        super()._sock_close()


class Connection:
    """One paho client driven by its own network thread, reconnecting with backoff (1 s doubling to 5 s).

    Every publish and PUBACK goes through an outbox that the network thread
    drains between reads: paho is then only ever touched from one thread, and
    a batch of acks costs no cross-thread wake-up per packet (calling paho's
    publish from a worker thread while its network thread runs halves the
    rate at which the bridge can answer).

    Flow control: with `backlog` (how many received messages the consumer
    has not taken yet) the thread stops reading once it reaches
    `max_backlog`, and only sends (acks, pings) until the consumer catches
    up. The broker's Receive Maximum bounds unacknowledged QoS 1 messages on
    MQTT 5; this bounds everything else (QoS 0, MQTT 3.1.1 brokers), so a
    slow database never turns into a growing queue here. A pause longer
    than the keepalive drops the connection; the broker then redelivers
    what was not acknowledged.
    """

    def __init__(
        self,
        address: BrokerAddress,
        session: Session = Session(),
        subscriptions: Iterable[str] = (),
        on_message: Callable[[Received], None] | None = None,
        will: tuple[str, bytes] | None = None,
        backlog: Callable[[], int] | None = None,
        max_backlog: int = 0,
    ) -> None:
        self.address, self.session = address, session
        self.backlog, self.max_backlog = backlog, max_backlog
        self.subscriptions = list(subscriptions)
        self.on_message = on_message
        self.generation = 0
        self.connected = threading.Event()
        self._client = self._make_client(will)
        self._outbox: deque[tuple] = deque()
        self._last_sent: mqtt.MQTTMessageInfo | None = None  # the latest QoS 1 publish handed to paho
        self._unsettled = 0  # received with manual ack, not yet acked: the worker will soon fill the outbox
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _make_client(self, will: tuple[str, bytes] | None) -> mqtt.Client:
        a, s = self.address, self.session
        kwargs = {} if a.mqtt5 else {"clean_session": not s.persistent}
        client = _Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=mqtt.MQTTv5 if a.mqtt5 else mqtt.MQTTv311,
            manual_ack=s.manual_ack,
            reconnect_on_failure=False,  # our network loop reconnects
            **kwargs,
        )
        if a.username:
            client.username_pw_set(a.username, a.password)
        if a.tls:
            client.tls_set(ca_certs=a.ca_file)
        if will:
            client.will_set(will[0], will[1], qos=1, retain=True)
        # Unlimited outgoing in-flight: paho rescans its whole queue on every PUBACK when capped.
        client.max_inflight_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_qos1_publish = self._on_qos1_publish
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = _no_delay
        return client

    def start(self) -> None:
        self._thread = threading.Thread(target=self._network_loop, name=f"mqtt-{self.session.client_id}", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Send what is in the outbox, disconnect cleanly and end the network thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.connected.clear()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> "Publication":
        publication = Publication()
        self._outbox.append(("publish", topic, payload, qos, retain, publication))
        return publication

    def send(self, topic: str, payload: bytes) -> None:
        """A QoS 1 `publish` for a caller that will not wait for the broker (the bridge's acks): nothing to wait
        on is made, here or in paho."""
        self._outbox.append(("send", topic, payload))

    def ack(self, message: Received) -> None:
        """PUBACK a message received with manual acks. Skipped if its connection is gone: the broker redelivers."""
        if message.qos:
            self._outbox.append(("ack", message))

    def _network_loop(self) -> None:
        delay, first = RECONNECT_MIN_S, True
        while not self._stopping.is_set():
            try:
                if first:
                    self._client.connect(self.address.host, self.address.port, KEEPALIVE_S, **self._connect_options())
                    first = False
                else:
                    self._client.reconnect()
            except OSError as exc:
                log.warning("cannot reach MQTT broker %s:%s (%s); retrying in %s s", self.address.host,
                            self.address.port, exc, delay)  # fmt: skip
                self._stopping.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            while not self._stopping.is_set():
                self._drain_outbox()
                if self._held_back():
                    continue
                busy = self._unsettled or self._outbox or self._client.unsent()
                if not self._step(0.002 if busy else 0.05):
                    break
                if self.connected.is_set():
                    delay = RECONNECT_MIN_S
            else:
                self._flush_and_disconnect()
                return
            self.connected.clear()
            self._stopping.wait(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _held_back(self) -> bool:
        """True (after sending what is queued, and a ping when due) while the consumer has max_backlog messages
        waiting: nothing is read meanwhile."""
        if not self._consumer_full():
            return False
        client = self._client
        client.loop_write()
        client.loop_misc()
        client.flush()
        self._stopping.wait(0.01)
        return True

    def _consumer_full(self) -> bool:
        return self.backlog is not None and self.backlog() >= self.max_backlog

    def _step(self, timeout: float) -> bool:
        """One turn of the network loop: send what is written, wait up to `timeout` for the broker, hand paho
        what was read (its select() would not wake for what is already buffered). False if the connection is lost."""
        client = self._client
        if not client.flush() or client.loop(timeout) != mqtt.MQTT_ERR_SUCCESS:
            return False
        while client.buffered() and not self._consumer_full():  # each read may refill the buffer from the socket
            if client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
                return False
        return client.flush()

    def _connect_options(self) -> dict:
        if not self.address.mqtt5:
            return {}
        props = Properties(PacketTypes.CONNECT)
        if self.session.persistent:
            props.SessionExpiryInterval = self.session.expiry_s
        if self.session.receive_maximum:
            # Without it Mosquitto sends a v5 client at most max_inflight_messages (20) unacked messages.
            props.ReceiveMaximum = self.session.receive_maximum
        return {"clean_start": not self.session.persistent, "properties": props}

    def _flush_and_disconnect(self, timeout: float = STOP_FLUSH_S) -> None:
        """Send the outbox, broker acks first, and wait for the broker to acknowledge the last publish before
        closing: closing a socket with unread input resets it, and the broker then loses what it had not read."""
        items = list(self._outbox)
        self._outbox.clear()
        self._outbox.extend([i for i in items if i[0] == "ack"] + [i for i in items if i[0] != "ack"])
        self._drain_outbox()
        deadline = time.monotonic() + timeout
        last = self._last_sent
        while ((last is not None and not last.is_published()) or self._client.sent_unacked()) \
                and time.monotonic() < deadline:  # fmt: skip
            if not self._step(0.01):
                break
        self._client.disconnect()
        self._client.flush()

    def _drain_outbox(self) -> None:
        client = self._client
        while self._outbox:
            item = self._outbox.popleft()
            if item[0] == "send":
                client.send_qos1(item[1], item[2])
            elif item[0] == "publish":
                _, topic, payload, qos, retain, publication = item
                info = client.publish(topic, payload, qos=qos, retain=retain)
                if qos:
                    self._last_sent = info
                if publication is not None:
                    publication.info = info
                    publication.queued.set()
            else:
                message = item[1]
                if message.generation == self.generation and self.connected.is_set():
                    client.ack(message.mid, message.qos)
                    self._unsettled = max(0, self._unsettled - 1)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s:%s refused the connection: %s", self.address.host, self.address.port, reason_code)
            return
        self.generation += 1
        self._unsettled = 0
        client.resend_unacked()
        log.info("connected to MQTT broker %s:%s (session present: %s)", self.address.host, self.address.port,
                 flags.session_present)  # fmt: skip
        if self.subscriptions:
            client.subscribe([(topic, 1) for topic in self.subscriptions])
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        granted = [str(rc) for rc in reason_codes]
        log.info("subscribed to %s: %s", ", ".join(self.subscriptions), ", ".join(granted))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if reason_code != 0:
            log.warning("lost the MQTT broker (%s); reconnecting with backoff", reason_code)

    def _on_qos1_publish(self, topic: str, payload: bytes, mid: int, retain: bool) -> None:
        self._unsettled += 1  # the fast path takes only manually acked QoS 1 messages
        if self.on_message is not None:
            self.on_message(Received(topic, payload, mid, 1, retain, self.generation))

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if self.session.manual_ack and msg.qos:
            self._unsettled += 1
        if self.on_message is not None:
            self.on_message(Received(msg.topic, msg.payload, msg.mid, msg.qos, msg.retain, self.generation))


class Publication:
    """A publish handed to the outbox; `wait` is True once the broker has it (PUBACK for QoS 1)."""

    def __init__(self) -> None:
        self.queued = threading.Event()
        self.info: mqtt.MQTTMessageInfo | None = None

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if not self.queued.wait(timeout) or self.info is None:
            return False
        if self.info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return False
        try:
            self.info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        except (RuntimeError, ValueError):
            return False
        return self.info.is_published()


def _remaining_length(n: int) -> bytes:
    """MQTT's variable-length integer: seven bits a byte, the high bit set on all but the last."""
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _no_delay(client, userdata, sock) -> None:
    """Small packets (a PUBACK, an ack) go out at once: with Nagle's algorithm on, each waited for the broker's
    delayed ACK of the one before, about 40 ms."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
