"""The device's REST API (CONTRACT section 3): one aiohttp session, ``Authorization: Device <key>``.

Used by the REST transport, and by the others to fetch JWTs, desired config and
the protocol recommendation.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import aiohttp

from .base import DeviceIdentity, TransportError

API = "/api/v1"


class ApiResponse:
    def __init__(self, status: int, headers: dict[str, str], body: Any) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def retry_after(self, default: float = 1.0) -> float:
        try:
            return float(self.headers.get("Retry-After", default))
        except ValueError:  # an HTTP date: rare from our server, be conservative
            return default


def signature_headers(key: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """``X-Timestamp`` and ``X-Signature: sha256=<hex HMAC-SHA256(key, ts + "." + body)>``."""
    timestamp = str(int(time.time() if now is None else now))
    digest = hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return {"X-Timestamp": timestamp, "X-Signature": "sha256=" + digest.hexdigest()}


class DeviceApi:
    """``sign=True`` signs every request (devices marked ``require_signature``)."""

    def __init__(self, device: DeviceIdentity, timeout_s: float = 10.0, sign: bool = False) -> None:
        self.device = device
        self.sign = sign
        self.base = device.server_url.rstrip("/") + API
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._token_expires = 0.0

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Device {self.device.key}"},
            )
        return self._session

    async def request(
        self, method: str, path: str, *, json_body: Any = None,
        params: dict[str, Any] | None = None, timeout_s: float | None = None,
        body: bytes | None = None, content_type: str | None = None,
    ) -> ApiResponse:
        """One call (``json_body``, or raw ``body`` of ``content_type``); network failures and
        timeouts become TransportError."""
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.timeout_s)
        data = body if json_body is None else json.dumps(json_body, separators=(",", ":")).encode()
        headers = {"Content-Type": content_type or "application/json"} if data is not None else {}
        if self.sign:
            headers.update(signature_headers(self.device.key, data or b""))
        try:
            async with self._http().request(
                method, self.base + path, data=data, params=params, timeout=timeout,
                headers=headers,
            ) as resp:
                raw = await resp.read()
                body = _json_or_text(raw)
                return ApiResponse(resp.status, dict(resp.headers), body)
        except asyncio.TimeoutError as exc:
            raise TransportError("timeout", f"{method} {path}") from exc
        except aiohttp.ClientError as exc:
            raise TransportError("connect_failed", f"{method} {path}: {exc}") from exc

    async def token(self, refresh: bool = False) -> str:
        """A JWT for WebSocket / Socket.IO, cached until shortly before it expires."""
        if not refresh and self._token and time.monotonic() < self._token_expires:
            return self._token
        resp = await self.request("POST", "/device/token/", json_body={})
        if resp.status == 401 or resp.status == 403:
            raise TransportError("auth", f"token refused: {resp.body}")
        if resp.status >= 300 or not isinstance(resp.body, dict) or "token" not in resp.body:
            raise TransportError("server_error", f"token: HTTP {resp.status}")
        self._token = str(resp.body["token"])
        lifetime = float(resp.body.get("expires_in") or 300)
        self._token_expires = time.monotonic() + max(1.0, lifetime - min(30.0, lifetime / 4))
        return self._token

    def invalidate_token(self) -> None:
        self._token = None

    async def commands(self, wait_s: int = 25) -> list[dict[str, Any]]:
        resp = await self.request(
            "GET", "/device/commands/", params={"wait": wait_s}, timeout_s=wait_s + 10,
        )
        _raise_for(resp)
        body = resp.body
        if isinstance(body, dict):  # tolerate {"commands": [...]} or a paginated list
            body = body.get("commands", body.get("results", []))
        return [c for c in body or [] if isinstance(c, dict)]

    async def ack_command(self, command_id: Any, control: dict[str, Any]) -> None:
        _raise_for(await self.request(
            "POST", f"/device/commands/{command_id}/ack/", json_body=control,
        ))

    async def config(self) -> dict[str, Any]:
        resp = await self.request("GET", "/device/config/")
        _raise_for(resp)
        return resp.body if isinstance(resp.body, dict) else {}

    async def protocol(self) -> dict[str, Any]:
        resp = await self.request("GET", "/device/protocol/")
        _raise_for(resp)
        return resp.body if isinstance(resp.body, dict) else {}

    async def upload_image(self, data: bytes, content_type: str = "image/jpeg") -> str:
        """``POST /images/`` (multipart ``image``, JPEG or PNG up to 5 MiB): the ``image_ref``."""
        body, multipart_type = multipart_file("image", data, content_type)
        resp = await self.request("POST", "/images/", body=body, content_type=multipart_type,
                                  timeout_s=max(self.timeout_s, 30.0))
        _raise_for(resp)
        if not isinstance(resp.body, dict) or "image_ref" not in resp.body:
            raise TransportError("server_error", f"image upload: HTTP {resp.status} without image_ref")
        return str(resp.body["image_ref"])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def multipart_file(field: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    """One file as a multipart/form-data body, built here so a signed request can sign its bytes."""
    boundary = uuid.uuid4().hex
    extension = "png" if content_type == "image/png" else "jpg"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{field}.{extension}"\r\nContent-Type: {content_type}\r\n\r\n')
    body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


def _raise_for(resp: ApiResponse) -> None:
    if resp.status < 300:
        return
    if resp.status in (401, 403):
        raise TransportError("auth", f"HTTP {resp.status}: {resp.body}")
    if resp.status >= 500:
        raise TransportError("server_error", f"HTTP {resp.status}: {resp.body}")
    raise TransportError("client_error", f"HTTP {resp.status}: {resp.body}")
