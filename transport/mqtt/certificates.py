"""X.509 certificates for MQTT over TLS: a private CA, the broker's certificate, and one per device.

A device certificate's subject common name is the device id, so that a
Mosquitto listener with `use_identity_as_username true` logs the camera in
under its id, and the access list written by `mqtt_credentials` confines it
to `lpr/v1/devices/<id>/#` as it does a password login. Keys are ECDSA P-256.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEVICE_DAYS = 825  # the longest lifetime common TLS clients accept for a leaf certificate
CA_DAYS = 3650


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> "Issued":
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key must be an EC key, as `mqtt_certificate ca` writes it")
        return cls(x509.load_pem_x509_certificate(cert_pem), key)


def new_ca(common_name: str = "LPR device CA", days: int = CA_DAYS) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _base(name, name, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return Issued(builder.sign(key, hashes.SHA256()), key)


def device_certificate(device_id: str, ca: Issued, days: int = DEVICE_DAYS) -> Issued:
    """A client certificate whose common name is the device id."""
    return _leaf(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]), ca, days,
                 ExtendedKeyUsageOID.CLIENT_AUTH, [])  # fmt: skip


def server_certificate(names: list[str], ca: Issued, days: int = DEVICE_DAYS) -> Issued:
    """The broker's certificate, valid for each host name or IP address in `names`."""
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    return _leaf(subject, ca, days, ExtendedKeyUsageOID.SERVER_AUTH, alt_names)


def _leaf(subject: x509.Name, ca: Issued, days: int, purpose, alt_names: list) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _base(subject, ca.certificate.subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def _base(subject: x509.Name, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # a little slack for clocks a bit behind
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, key_cert_sign=cert_sign, crl_sign=cert_sign, content_commitment=False,
        key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False,
    )  # fmt: skip
