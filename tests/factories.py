"""factory_boy factories and envelope builders for tests."""

import secrets
import uuid
from datetime import datetime, timezone

import factory
from django.contrib.auth import get_user_model

from devices import credentials
from devices.models import Device


# Unique per test process, so concurrent runs sharing one MQTT broker never share a device topic.
RUN_TOKEN = secrets.token_hex(2).upper()


class DeviceFactory(factory.django.DjangoModelFactory):
    """A saved device; its one-time credentials are on `device.issued`."""

    class Meta:
        model = Device

    id = factory.Sequence(lambda n: f"CAM{RUN_TOKEN}{n:03d}")
    name = factory.LazyAttribute(lambda d: f"Gate {d.id}")
    site = "north"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        device = model_class(*args, **kwargs)
        issued = credentials.assign_credentials(device)
        device.save(force_insert=True)
        device.issued = issued
        return device


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"operator{n}")
    password = factory.PostGenerationMethodCall("set_password", "secret-pass-123")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class OperatorFactory(UserFactory):
    """A member of the `operators` group: watches devices and sends them commands, manages nothing."""

    @factory.post_generation
    def _operators(obj, create, extracted, **kwargs):
        if create:
            from devices.groups import ensure_operators_group

            obj.groups.add(ensure_operators_group())


def envelope(device_id: str, data_type: str = "detection", payload: dict | None = None, **fields) -> dict:
    defaults = {
        "detection": {"plate": "AB123CD", "confidence": 0.93},
        "health": {"cpu_percent": 12.5, "temperature_c": 41.0, "network": {"latency_ms": 30, "packet_loss": 0.0}},
        "config": {"version": 3, "values": {"fps": 15}},
    }
    env = {
        "message_id": str(uuid.uuid4()),
        "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "protocol": "rest",
        "edge_device_id": device_id,
        "data_type": data_type,
        "payload": payload if payload is not None else defaults[data_type],
        "metadata": {"protocol_version": "1.0", "compression": False, "encryption": False},
    }
    env.update(fields)
    return env
