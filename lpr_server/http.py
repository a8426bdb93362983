"""Django's HTTP side under ASGI, without the costs that do not buy anything here.

Two things Django's ASGI handler does per request are expensive on a small
machine, and both are avoidable:

- Each request gets a fresh thread for its synchronous code (asgiref's
  `ThreadSensitiveContext` makes an executor per request, and a second
  thread to join it). `SyncThreads` keeps a fixed set of single-thread
  executors instead; a request runs its sync code on the least busy one,
  still all on one thread, as thread-sensitive code needs.
- The camera-facing API (key-authenticated, CSRF-exempt, no sessions)
  needs none of the middleware the operators' pages do, and in async mode
  every Django middleware costs two thread hops. `DeviceAPIHandler` serves
  those paths with no middleware at all.

The ingest POSTs, a request per read for many cameras, skip Django's handler
altogether (transport/rest/asgi.py).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import AsyncIterator

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response

DEVICE_API_PREFIXES = ("/api/v1/ingest/", "/api/v1/images/", "/api/v1/device/", "/api/v1/compat/")


class SyncThreads:
    """A fixed set of single-thread executors for requests' synchronous code."""

    def __init__(self, size: int) -> None:
        self._executors = [ThreadPoolExecutor(1, thread_name_prefix=f"lpr-http-{i}") for i in range(size)]
        self._busy = [0] * size

    @asynccontextmanager
    async def context(self) -> AsyncIterator[None]:
        i = min(range(len(self._busy)), key=self._busy.__getitem__)
        self._busy[i] += 1
        try:
            async with ThreadSensitiveContext(executor=self._executors[i]):
                yield
        finally:
            self._busy[i] -= 1


class DeviceAPIHandler(ASGIHandler):
    """Django's ASGI handler with no middleware (the camera-facing API authenticates by device key)."""

    def load_middleware(self, is_async: bool = False) -> None:
        # What BaseHandler.load_middleware builds when MIDDLEWARE is empty.
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        self._middleware_chain = convert_exception_to_response(self._get_response_async if is_async else self._get_response)


def router(operator_app, device_app, threads: SyncThreads, posts: dict | None = None):
    """One ASGI app for HTTP: POSTs to a path of `posts` to its app, the rest of the device API to `device_app`,
    everything else to `operator_app`."""
    posts = posts or {}

    async def app(scope, receive, send):
        path = scope["path"]
        handler = posts.get(path) if scope["method"] == "POST" else None
        if handler is None:
            handler = device_app if path.startswith(DEVICE_API_PREFIXES) else operator_app
        async with threads.context():
            return await handler(scope, receive, send)

    return app
