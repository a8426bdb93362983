"""The bridge's paho client decodes the two packets every message brings (a QoS 1 PUBLISH, the PUBACK for its
`down/ack`) itself, without paho's per-packet reason-code and properties objects; anything else is left to paho."""

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt import properties as paho_properties
from paho.mqtt.packettypes import PacketTypes

from transport.mqtt.client import _Client

TOPIC = b"lpr/v1/devices/CAM001/up/detection"
BODY = b'{"message_id": "x"}'
PUBLISH, PUBACK = 0x30, 0x40
QOS1, DUP, RETAIN = 0x02, 0x08, 0x01


def client(protocol=mqtt.MQTTv5, manual_ack=True, cls=_Client):
    c = cls(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=protocol, manual_ack=manual_ack)
    c.received = []
    c.on_message = lambda _c, _u, m: c.received.append((m.topic, m.payload, m.mid, m.qos, m.dup, m.retain))
    return c


def publish_packet(mid: int | None, properties: bytes | None = b"\x00", topic: bytes = TOPIC, body: bytes = BODY):
    """A PUBLISH's variable header and payload (what paho holds as the packet after the fixed header)."""
    packet = len(topic).to_bytes(2, "big") + topic
    if mid is not None:
        packet += mid.to_bytes(2, "big")
    if properties is not None:
        packet += properties
    return bytearray(packet + body)


def feed(c, command: int, packet: bytearray, cmd: str | None = None):
    c._in_packet = {"command": command, "packet": packet}
    return c._handle_pubackcomp(cmd) if cmd else c._handle_publish()


@pytest.fixture
def properties_built(monkeypatch):
    built = []
    original = paho_properties.Properties.__init__

    def counting(self, packet_type):
        built.append(packet_type)
        original(self, packet_type)

    monkeypatch.setattr(paho_properties.Properties, "__init__", counting)
    return built


def test_a_plain_qos1_publish_is_delivered_without_building_properties(properties_built):
    c = client()
    assert feed(c, PUBLISH | QOS1 | DUP, publish_packet(7)) == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
    assert c.received == [(TOPIC.decode(), BODY, 7, 1, True, False)]
    assert properties_built == []


@pytest.mark.parametrize(
    "protocol, manual_ack, command, packet, expected",
    [
        # MQTT 5 with a property (message expiry 60 s): paho decodes it, and the payload starts after it
        (mqtt.MQTTv5, True, PUBLISH | QOS1, publish_packet(9, b"\x05\x02\x00\x00\x00\x3c"), (9, 1, False)),
        (mqtt.MQTTv5, True, PUBLISH | RETAIN, publish_packet(None), (0, 0, True)),  # QoS 0: no packet id
        (mqtt.MQTTv311, True, PUBLISH | QOS1, publish_packet(5, None), (5, 1, False)),  # no properties on 3.1.1
        (mqtt.MQTTv5, False, PUBLISH | QOS1, publish_packet(6), (6, 1, False)),  # paho acks it itself
    ],
)
def test_publishes_left_to_paho_arrive_as_paho_decodes_them(protocol, manual_ack, command, packet, expected):
    ours, pahos = client(protocol, manual_ack), client(protocol, manual_ack, cls=mqtt.Client)
    ours._sock_send = pahos._sock_send = lambda buf: len(buf)  # paho's own PUBACK, when it sends one
    feed(ours, command, bytearray(packet))
    feed(pahos, command, bytearray(packet))
    mid, qos, retain = expected
    assert ours.received == pahos.received == [(TOPIC.decode(), BODY, mid, qos, False, retain)]


def test_a_truncated_publish_is_refused_as_paho_refuses_it():
    for c in (client(), client(cls=mqtt.Client)):
        with pytest.raises(mqtt.MalformedPacket):
            feed(c, PUBLISH | QOS1, bytearray(publish_packet(3)[: len(TOPIC) + 3]))
        assert c.received == []


def queued_publish(c):
    info = c.publish("lpr/v1/devices/CAM001/down/ack", b"{}", qos=1)  # not connected: kept until acknowledged
    assert list(c._out_messages) == [info.mid]
    return info


def test_a_bare_puback_settles_its_publish_without_building_objects(properties_built):
    c = client()
    info = queued_publish(c)
    assert feed(c, PUBACK, bytearray(info.mid.to_bytes(2, "big")), "PUBACK") == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
    assert info._published and not c._out_messages
    assert properties_built == []


def test_a_puback_with_a_reason_code_or_an_unknown_id_is_handled_by_paho(properties_built):
    c = client()
    info = queued_publish(c)
    feed(c, PUBACK, bytearray((info.mid + 1).to_bytes(2, "big")), "PUBACK")  # not ours: ignored
    assert list(c._out_messages) == [info.mid]
    feed(c, PUBACK, bytearray(info.mid.to_bytes(2, "big") + b"\x10\x00"), "PUBACK")  # "no matching subscribers"
    assert info._published and not c._out_messages
    assert PacketTypes.PUBACK in properties_built  # decoded by paho


def test_the_connection_sends_small_packets_at_once(mosquitto):
    """Nagle's algorithm off on the bridge's socket: a PUBACK followed by an ack would wait for the broker's
    delayed ACK of the first, about 40 ms."""
    import socket

    from transport.mqtt.client import BrokerAddress, Connection, Session

    broker = mosquitto()
    connection = Connection(BrokerAddress.from_url(broker.url), Session(client_id="nodelay-test"))
    connection.start()
    try:
        assert connection.wait_connected(10)
        sock = connection._client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        connection.stop()


# --- the bridge's own traffic: plain QoS 1 messages in, QoS 1 acks out, without paho's per-message objects ---

ACK_TOPIC = "lpr/v1/devices/CAM001/down/ack"


@pytest.fixture
def message_objects(monkeypatch):
    made = []
    for cls in (mqtt.MQTTMessage, mqtt.MQTTMessageInfo):
        original = cls.__init__

        def counting(self, *args, _original=original, _name=cls.__name__, **kwargs):
            made.append(_name)
            _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counting)
    return made


def connected_client(protocol=mqtt.MQTTv5):
    import socket

    c = client(protocol)
    c._sock = socket.socket()  # never written to: _Client collects its writes until flush()
    return c


def ack_publish(mid: int, body: bytes, dup: bool = False) -> bytes:
    """A QoS 1 PUBLISH to ACK_TOPIC with no properties, fixed header included (short enough for a 1-byte length)."""
    rest = len(ACK_TOPIC).to_bytes(2, "big") + ACK_TOPIC.encode() + mid.to_bytes(2, "big") + b"\x00" + body
    return bytes([PUBLISH | QOS1 | (DUP if dup else 0), len(rest)]) + rest


def test_a_plain_qos1_publish_reaches_on_qos1_publish_as_plain_values(message_objects, properties_built):
    c = client()
    got = []
    c.on_qos1_publish = lambda *values: got.append(values)
    assert feed(c, PUBLISH | QOS1 | RETAIN, publish_packet(7)) == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
    assert got == [(TOPIC.decode(), BODY, 7, True)]
    assert c.received == [] and message_objects == [] and properties_built == []


def test_a_publish_whose_topic_is_not_utf8_is_left_to_paho():
    c = client()
    got, seen = [], []
    c.on_qos1_publish = lambda *values: got.append(values)
    c.on_message = lambda _c, _u, m: seen.append((m._topic, m.mid))
    feed(c, PUBLISH | QOS1, publish_packet(4, topic=b"lpr/\xff"))
    assert got == [] and seen == [(b"lpr/\xff", 4)]


def test_send_qos1_writes_a_plain_publish_and_keeps_only_its_packet_id(message_objects, properties_built):
    c = connected_client()
    c.send_qos1(ACK_TOPIC, b'{"status":"accepted"}')
    [mid] = c._sent_unacked
    assert bytes(c._write_buffer) == ack_publish(mid, b'{"status":"accepted"}')
    assert not c._out_messages and message_objects == []

    assert feed(c, PUBACK, bytearray(mid.to_bytes(2, "big")), "PUBACK") == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
    assert c.sent_unacked() == 0 and properties_built == []


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311])
@pytest.mark.parametrize("size", [0, 100, 200, 20_000])  # the remaining length in one, two and three bytes
def test_send_qos1_writes_the_bytes_paho_would(protocol, size):
    ours, pahos = connected_client(protocol), connected_client(protocol)
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    ours.send_qos1(ACK_TOPIC, body)
    [mid] = ours._sent_unacked
    pahos._send_publish(mid, ACK_TOPIC.encode(), body, 1)
    assert bytes(ours._write_buffer) == bytes(pahos._write_buffer)


def test_ack_writes_the_puback_paho_would(message_objects):
    ours, pahos = connected_client(), connected_client()
    ours.ack(0x1234, 1)
    mqtt.Client.ack(pahos, 0x1234, 1)
    assert bytes(ours._write_buffer) == bytes(pahos._write_buffer) == b"\x40\x02\x12\x34"


def test_packets_paho_still_holds_go_out_before_those_written_directly():
    c = connected_client()
    with c._in_callback_mutex:  # as inside a callback: paho queues its packet instead of writing it
        info = c.publish(ACK_TOPIC, b"first", qos=1)
        c.ack(9, 1)
        c.send_qos1(ACK_TOPIC, b"third")
    assert bytes(c._write_buffer) == b""
    c.loop_write()
    [third] = c._sent_unacked
    assert bytes(c._write_buffer) == ack_publish(info.mid, b"first") + b"\x40\x02\x00\x09" + ack_publish(third, b"third")


def test_sends_the_broker_did_not_acknowledge_go_again_marked_duplicate():
    c = connected_client()
    c.send_qos1(ACK_TOPIC, b"1")
    c.send_qos1(ACK_TOPIC, b"2")
    first, second = c._sent_unacked
    feed(c, PUBACK, bytearray(first.to_bytes(2, "big") + b"\x10\x00"), "PUBACK")  # with a reason code: still settled
    c._write_buffer.clear()
    c.resend_unacked()
    assert bytes(c._write_buffer) == ack_publish(second, b"2", dup=True)


def test_sends_and_pahos_publishes_never_share_a_packet_id():
    c = connected_client()
    info = c.publish(ACK_TOPIC, b"x", qos=1)
    c._last_mid = info.mid - 1  # the next id paho would hand out is the one still waiting
    c.send_qos1(ACK_TOPIC, b"y")
    [sent] = c._sent_unacked
    assert sent != info.mid
    c._last_mid = sent - 1
    assert c.publish(ACK_TOPIC, b"z", qos=1).mid not in (sent, info.mid)


def test_an_ack_sent_while_the_broker_is_away_arrives_once_it_is_back(mosquitto):
    """Connection.send keeps an ack until the broker's PUBACK, and sends it again on the next connection: here
    the broker is frozen when the ack is written, so it never reads it, and then dies."""
    import queue
    import signal

    from tests.support import wait_until
    from transport.mqtt.client import BrokerAddress, Connection, Session

    broker = mosquitto()
    connection = Connection(BrokerAddress.from_url(broker.url), Session(client_id="resend-test"))
    connection.start()
    try:
        assert connection.wait_connected(10)
        broker.proc.send_signal(signal.SIGSTOP)
        connection.send(ACK_TOPIC, b"sent while away")
        wait_until(lambda: connection._client.sent_unacked() == 1 and not connection._client.unsent(), 5,
                   what="the ack to be written and left unacknowledged")  # fmt: skip
        broker.proc.kill()
        broker.proc.wait(10)
        broker.start()
        got: queue.SimpleQueue = queue.SimpleQueue()
        listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="resend-listener")
        listener.on_message = lambda _c, _u, m: got.put(m.payload)
        listener.connect("127.0.0.1", broker.port)
        listener.subscribe(ACK_TOPIC, qos=1)
        listener.loop_start()
        try:
            assert got.get(timeout=20) == b"sent while away"
            wait_until(lambda: connection._client.sent_unacked() == 0, 5, what="the broker's PUBACK")
        finally:
            listener.loop_stop()
            listener.disconnect()
    finally:
        connection.stop()


class _Socket:
    """What the client reads: the stream in the chunks given, then nothing more for now."""

    def __init__(self, chunks: list[bytes]):
        self.chunks = [c for c in chunks if c]

    def recv(self, size: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        data, rest = self.chunks[0][:size], self.chunks[0][size:]
        self.chunks[0:1] = [rest] if rest else []
        return data

    def close(self) -> None:
        pass


def test_packets_read_whole_from_the_buffer_arrive_as_paho_reads_them_wherever_the_stream_is_cut(monkeypatch):
    """Several packets in one read, one cut anywhere (in a fixed header, in a two-byte length, in a body):
    the client takes each whole packet from its buffer at once and leaves a partial one to paho's reading."""

    def fixed(command: int, body: bytes) -> bytes:
        n, length = len(body), b""
        while True:
            byte, n = n % 128, n // 128
            length += bytes([byte | (0x80 if n else 0)])
            if not n:
                return bytes([command]) + length + body

    stream = b"".join([
        fixed(PUBLISH | QOS1, bytes(publish_packet(1))),
        fixed(PUBLISH | QOS1, bytes(publish_packet(2, b"\x05\x02\x00\x00\x00\x3c"))),  # a property: paho's way
        fixed(PUBLISH | QOS1, bytes(publish_packet(3, body=b"x" * 300))),  # a length of two bytes
        fixed(PUBLISH, bytes(publish_packet(None))),  # QoS 0
    ])  # fmt: skip
    for cut in range(len(stream) + 1):
        got = []
        for cls in (_Client, mqtt.Client):
            c = client(cls=cls)
            c._sock = _Socket([stream[:cut], stream[cut:]])
            for _ in range(20):
                c.loop_read()
            got.append(c.received)
        assert got[0] == got[1] and [m[2] for m in got[0]] == [1, 2, 3, 0], cut

    read_by_paho = []
    original = mqtt.Client._packet_read
    monkeypatch.setattr(mqtt.Client, "_packet_read", lambda self: read_by_paho.append(1) or original(self))
    c = client()
    c._sock = _Socket([stream])
    while len(c.received) < 4 and len(read_by_paho) < 20:
        c.loop_read()
    # the first packet comes with the first read, through paho's way; the other three whole from the buffer
    assert len(c.received) == 4 and len(read_by_paho) <= 2, read_by_paho
