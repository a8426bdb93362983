"""Real image bytes for tests, made with Pillow."""

import io

import PIL.Image


def picture(fmt: str = "JPEG", size: tuple[int, int] = (640, 480), color: str = "navy") -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


CORRUPT_JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + b"not really a jpeg" * 10
