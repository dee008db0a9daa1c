"""Generated JPEG cover art in YouTube's thumbnail sizes."""

from __future__ import annotations

import functools
import hashlib
import io

from PIL import Image, ImageDraw

from ._catalog import Track

__all__ = ["THUMBNAIL_SIZES", "has_thumbnail", "thumbnail_bytes"]

# Name to (width, height), as i.ytimg.com serves them.
THUMBNAIL_SIZES: dict[str, tuple[int, int]] = {
    "maxresdefault": (1280, 720),
    "sddefault": (640, 480),
    "hqdefault": (480, 360),
    "mqdefault": (320, 180),
    "default": (120, 90),
}


def has_thumbnail(track: Track, name: str) -> bool:
    """Tell whether the host has this size; every third track lacks the
    largest two, as many real videos do."""
    if name not in THUMBNAIL_SIZES:
        return False
    missing_large = (
        int(hashlib.sha256(track.video_id.encode()).hexdigest(), 16) % 3 == 0
    )
    return not (missing_large and name in {"maxresdefault", "sddefault"})


@functools.cache
def thumbnail_bytes(track: Track, name: str) -> bytes:
    """Return a JPEG for the track: a colour from its id and a stripe per size."""
    width, height = THUMBNAIL_SIZES[name]
    digest = hashlib.sha256(track.video_id.encode()).digest()
    image = Image.new("RGB", (width, height), (digest[0], digest[1], digest[2]))
    draw = ImageDraw.Draw(image)
    draw.rectangle(
        (0, height * 3 // 4, width, height), fill=(digest[3], digest[4], digest[5])
    )
    draw.text((width // 20, height // 20), track.video_id, fill=(255, 255, 255))
    output = io.BytesIO()
    image.save(output, format="JPEG", quality=80)
    return output.getvalue()
