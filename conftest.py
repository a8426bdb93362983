"""Fixtures every test area shares: devices with credentials, envelopes, HTTP clients."""

import json

import pytest

# Django is imported inside fixtures only: tests/edge runs without it.


@pytest.fixture(autouse=True)
def _fresh_rate_limits(request):
    if not request.config.pluginmanager.hasplugin("django"):
        yield
        return
    from transport.throttle import limiter

    limiter.reset()
    yield
    limiter.reset()


@pytest.fixture
def device(db):
    from tests.factories import DeviceFactory

    return DeviceFactory()


@pytest.fixture
def make_device(db):
    from tests.factories import DeviceFactory

    return DeviceFactory


@pytest.fixture
def camera(device):
    """An HTTP client that speaks as `device`, the way camera firmware does."""
    return CameraClient(device)


class CameraClient:
    def __init__(self, device, client=None):
        from django.test import Client

        self.device = device
        self.client = client or Client()
        self.auth = {"HTTP_AUTHORIZATION": f"Device {device.issued.key}"}

    def post(self, path: str, body, content_type: str = "application/json", **headers):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.client.post(path, data, content_type=content_type, **self.auth, **headers)

    def get(self, path: str, **params):
        return self.client.get(path, params, **self.auth)

    def ingest(self, env: dict, **headers):
        return self.post("/api/v1/ingest/", env, **headers)


@pytest.fixture(params=["one statement", "set-wise"])
def both_write_paths(request, monkeypatch):
    """The test runs twice: small batches stored by the one-statement function (`transport.one_statement`, the
    real-time path's usual way) and by `transport.store.write` (large batches, and whatever the function does
    not take)."""
    if request.param == "set-wise":
        from transport import one_statement

        monkeypatch.setattr(one_statement, "fits", lambda items: False)
    return request.param
