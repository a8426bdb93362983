"""MQTT over TLS on a private Mosquitto: client certificates (device id as the identity) and passwords, each on a
listener of its own, with a CA the test makes with `manage.py mqtt_certificate`; the bridge connects over TLS too.
"""

from __future__ import annotations

import os
import ssl

import paho.mqtt.client as mqtt
import pytest
from django.core.management import call_command

from devices import credentials
from tests.factories import envelope
from tests.mqtt.conftest import BridgeProcess, Camera, Mosquitto, assert_confined
from tests.support import wait_until
from transport.models import Message
from transport.mqtt import certificates

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


class TLSCamera(Camera):
    """A camera connecting over TLS, with a client certificate or with its id and key."""

    def __init__(self, device_id: str, port: int, ca, cert=None, key=None, password=None, protocol=mqtt.MQTTv5):
        super().__init__(device_id, port, password, protocol=protocol)
        self.client.tls_set(ca_certs=str(ca), certfile=cert and str(cert), keyfile=key and str(key))


@pytest.fixture
def tls_broker(tmp_path, make_device, monkeypatch):
    """A CA, the broker's certificate, a certificate per device, the access list, and Mosquitto with a
    certificate listener (`broker.port`) and a password listener over TLS (`broker.password_port`)."""
    pki = tmp_path / "pki"
    call_command("mqtt_certificate", "ca", "--out", str(pki))
    call_command("mqtt_certificate", "server", "127.0.0.1", "localhost", "--ca-dir", str(pki), "--out", str(pki))
    cert_device, password_device, other = make_device(), make_device(), make_device()
    for device in (cert_device, other):
        call_command("mqtt_certificate", "device", device.id, "--ca-dir", str(pki), "--out", str(pki))
    monkeypatch.setenv("MQTT_BRIDGE_PASSWORD", "bridge-secret")
    call_command("mqtt_credentials", "--out", str(tmp_path / "broker"))
    tls = f"cafile {pki / 'ca.crt'}\ncertfile {pki / 'server.crt'}\nkeyfile {pki / 'server.key'}\n"
    broker = Mosquitto(tmp_path, (
        "allow_anonymous false\n"
        f"password_file {tmp_path / 'broker' / 'passwd'}\nacl_file {tmp_path / 'broker' / 'acl'}\n"
        f"pid_file {tmp_path / 'mosquitto.pid'}\n"
        f"{tls}require_certificate true\nuse_identity_as_username true\n"  # the first listener: certificates
        f"listener {{extra_port}} 127.0.0.1\n{tls}"  # the second: id and key, over TLS
    ))  # fmt: skip
    broker.password_port = broker.extra_port
    yield broker, pki, cert_device, password_device, other
    broker.stop()


def test_a_camera_logs_in_with_its_certificate_and_the_bridge_stores_its_read_over_tls(tls_broker, tmp_path):
    broker, pki, device, _, _ = tls_broker
    bridge_url = f"mqtts://lpr-bridge:bridge-secret@127.0.0.1:{broker.password_port}?ca={pki / 'ca.crt'}"
    bridge = BridgeProcess(tmp_path, bridge_url, "tls-bridge").wait_subscribed()
    camera = TLSCamera(device.id, broker.port, pki / "ca.crt", pki / f"{device.id}.crt", pki / f"{device.id}.key")
    camera.connect()
    try:
        assert not camera.connect_rc.is_failure
        env = envelope(device.id, protocol="mqtt")
        camera.publish(env)
        assert camera.wait_ack(env["message_id"])["status"] == "accepted"
        assert Message.objects.get(message_id=env["message_id"]).received_via == "mqtt"
    finally:
        camera.close()
    assert bridge.terminate() == 0


def test_a_certificate_from_another_ca_or_none_at_all_is_refused(tls_broker, tmp_path):
    broker, pki, device, _, _ = tls_broker
    stranger = certificates.device_certificate(device.id, certificates.new_ca("Someone else's CA"))
    (tmp_path / "stranger.crt").write_bytes(stranger.cert_pem)
    (tmp_path / "stranger.key").write_bytes(stranger.key_pem)
    outcomes = {name: _tls_outcome(TLSCamera(device.id, broker.port, pki / "ca.crt", cert, key))
                for name, cert, key in [("stranger", tmp_path / "stranger.crt", tmp_path / "stranger.key"),
                                        ("no certificate", None, None),
                                        ("ours", pki / f"{device.id}.crt", pki / f"{device.id}.key")]}  # fmt: skip
    assert outcomes == {"stranger": "refused", "no certificate": "refused", "ours": "connected"}


def _tls_outcome(camera: TLSCamera) -> str:
    """"connected" on a successful CONNACK; "refused" when the handshake fails or the broker drops the connection
    (with TLS 1.3 the broker's verdict on the client certificate arrives after the client's handshake is done)."""
    dropped: list = []
    camera.client.on_disconnect = lambda *args: dropped.append(args)
    try:
        camera.client.connect("127.0.0.1", camera.port)
    except (ssl.SSLError, OSError):
        return "refused"
    camera.client.loop_start()
    try:
        wait_until(lambda: camera.connect_rc is not None or dropped, 10, what="CONNACK or a dropped connection")
        return "connected" if camera.connect_rc is not None and not camera.connect_rc.is_failure else "refused"
    finally:
        camera.client.disconnect()
        camera.client.loop_stop()


def test_a_camera_logs_in_with_its_id_and_key_over_tls_and_not_with_a_wrong_key(tls_broker):
    broker, pki, _, device, other = tls_broker
    good = TLSCamera(device.id, broker.password_port, pki / "ca.crt", password=device.issued.key).connect(subscribe=False)
    bad = TLSCamera(device.id, broker.password_port, pki / "ca.crt", password=other.issued.key).connect(subscribe=False)
    try:
        assert not good.connect_rc.is_failure
        assert bad.connect_rc.is_failure
    finally:
        good.close()
        bad.close()


def test_a_certificate_camera_is_confined_to_its_own_topics_and_shut_out_once_deactivated(tls_broker, tmp_path):
    broker, pki, device, _, other = tls_broker
    watcher = TLSCamera("lpr-bridge", broker.password_port, pki / "ca.crt", password="bridge-secret")
    camera = TLSCamera(device.id, broker.port, pki / "ca.crt", pki / f"{device.id}.crt", pki / f"{device.id}.key")
    watcher.connect(subscribe=False)
    camera.connect()
    try:
        assert_confined(camera, watcher, other.id)

        credentials.deactivate([device.id])
        call_command("mqtt_credentials", "--out", str(tmp_path / "broker"), "--reload-pid-file", str(tmp_path / "mosquitto.pid"))
        # The broker still trusts the certificate, but the access list no longer names the device.
        denied = wait_until(lambda: _publish_reason(camera), 10, what="a denied publish")
        assert denied == "Not authorized"
    finally:
        camera.close()
        watcher.close()


def _publish_reason(camera: TLSCamera) -> str | None:
    """Publish (MQTT 5) and return the PUBACK's reason when it refuses, else None."""
    reasons: list = []
    camera.client.on_publish = lambda c, u, mid, rc, p: reasons.append(rc)
    camera.publish(b"{}", topic=f"{camera.root}/up/detection").wait_for_publish(5)
    return str(reasons[-1]) if reasons and reasons[-1].is_failure else None


def test_certificate_files_are_written_private(tls_broker):
    _, pki, device, _, _ = tls_broker
    assert os.stat(pki / "ca.key").st_mode & 0o777 == 0o600
    assert os.stat(pki / f"{device.id}.key").st_mode & 0o777 == 0o600
    certificate = certificates.Issued.load((pki / f"{device.id}.crt").read_bytes(), (pki / f"{device.id}.key").read_bytes())
    assert certificate.certificate.subject.rfc4514_string() == f"CN={device.id}"
