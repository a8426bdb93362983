"""Image uploads from cameras: what is accepted and where it is kept."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from devices.models import Device

from .models import Image

SIGNATURES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}


class ImageRejected(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code, self.detail = code, detail


def sniff(head: bytes) -> str | None:
    """The image type from its first bytes; the declared content type is not trusted."""
    return next((kind for magic, kind in SIGNATURES.items() if head.startswith(magic)), None)


def store_upload(device: Device, upload: UploadedFile) -> Image:
    if upload.size > settings.IMAGE_MAX_BYTES:
        raise ImageRejected("too_large", f"Image is {upload.size} bytes; the limit is {settings.IMAGE_MAX_BYTES}.")
    upload.seek(0)
    kind = sniff(upload.read(8))
    upload.seek(0)
    if kind is None:
        raise ImageRejected("unsupported_media_type", "Only JPEG and PNG images are accepted.")
    upload.name = "upload.jpg" if kind == "image/jpeg" else "upload.png"
    return Image.objects.create(device=device, file=upload, content_type=kind, size=upload.size)
