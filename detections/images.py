"""Camera images: what is accepted, where it is kept, and its thumbnail.

Images come through `POST /api/v1/images/` (then named by a detection's
`image_ref`) or inside a compat payload. Both are checked the same way: the
first bytes must say JPEG or PNG (the declared type is not trusted), the size
must be within IMAGE_MAX_BYTES, and Pillow must be able to decode it, since
a thumbnail is made of every image. Files live under MEDIA_ROOT and are
served to logged-in users only (detections/views.py).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import PIL.Image
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile

from devices.models import Device

from .models import Image

SIGNATURES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}
THUMBNAIL_SIZE = (320, 320)
MAX_PIXELS = 40_000_000  # a small file that claims a huge canvas is refused, not decoded


class ImageRejected(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code, self.detail = code, detail


@dataclass(slots=True)
class Checked:
    data: bytes
    content_type: str
    width: int
    height: int
    kind: str = ""


def sniff(head: bytes) -> str | None:
    """The image type from its first bytes; the declared content type is not trusted."""
    return next((kind for magic, kind in SIGNATURES.items() if head.startswith(magic)), None)


def check(data: bytes, kind: str = "") -> Checked:
    """Refuse what is too big, not JPEG/PNG, or not decodable; nothing is written here."""
    if len(data) > settings.IMAGE_MAX_BYTES:
        raise ImageRejected("too_large", f"Image is {len(data)} bytes; the limit is {settings.IMAGE_MAX_BYTES}.")
    content_type = sniff(data[:8])
    if content_type is None:
        raise ImageRejected("unsupported_media_type", "Only JPEG and PNG images are accepted.")
    try:
        with PIL.Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise ImageRejected("invalid", f"Image is {width}x{height} pixels; the limit is {MAX_PIXELS} pixels.")
            img.verify()
    except ImageRejected:
        raise
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError):
        raise ImageRejected("invalid", "The image data is corrupt or truncated.") from None
    return Checked(data, content_type, width, height, kind)


def store(device: Device, checked: Checked) -> Image:
    """Write a checked image and its thumbnail."""
    extension = "jpg" if checked.content_type == "image/jpeg" else "png"
    image = Image(device=device, content_type=checked.content_type, size=len(checked.data), kind=checked.kind,
                  width=checked.width, height=checked.height)  # fmt: skip
    image.file.save(f"{image.id}.{extension}", ContentFile(checked.data), save=False)
    image.thumbnail.save(f"{image.id}.jpg", ContentFile(thumbnail(checked.data)), save=False)
    image.save(force_insert=True)
    return image


def store_upload(device: Device, upload: UploadedFile, kind: str = "") -> Image:
    if upload.size > settings.IMAGE_MAX_BYTES:
        raise ImageRejected("too_large", f"Image is {upload.size} bytes; the limit is {settings.IMAGE_MAX_BYTES}.")
    upload.seek(0)
    return store(device, check(upload.read(), kind))


def thumbnail(data: bytes) -> bytes:
    with PIL.Image.open(io.BytesIO(data)) as img:
        img.thumbnail(THUMBNAIL_SIZE)
        out = io.BytesIO()
        img.convert("RGB").save(out, "JPEG", quality=80)
    return out.getvalue()


def delete(images: list[Image]) -> None:
    """Remove images (rows and files) that ended up unused, e.g. sent with a duplicate webhook."""
    for image in images:
        image.file.delete(save=False)
        image.thumbnail.delete(save=False)
    Image.objects.filter(id__in=[i.id for i in images]).delete()
