"""What a file really holds, from its first bytes: still-image formats that a video container name may hide.

A PNG renamed `.mp4` opens in FFmpeg as a one-frame "video at 25 fps"; reading its signature first lets the reader
say what it is instead. Pure Python, no decoding.
"""

from __future__ import annotations

from pathlib import Path

# Leading bytes of still-image formats (file signatures); none of them starts a video container.
IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG", ".png"),
    (b"\xff\xd8\xff", "JPEG", ".jpg"),
    (b"GIF87a", "GIF", ".gif"),
    (b"GIF89a", "GIF", ".gif"),
    (b"II*\x00", "TIFF", ".tif"),
    (b"MM\x00*", "TIFF", ".tif"),
    (b"BM", "BMP", ".bmp"),
)
WEBP_RIFF, WEBP_TAG, WEBP_TAG_OFFSET = b"RIFF", b"WEBP", 8  # RIFF....WEBP (AVI is RIFF....AVI )
SIGNATURE_BYTES = 16


def still_image_format(path: str | Path) -> tuple[str, str] | None:
    """`(format name, usual suffix)` when the file starts like a still image, else None (unreadable files: None)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(SIGNATURE_BYTES)
    except OSError:
        return None
    if head.startswith(WEBP_RIFF) and head[WEBP_TAG_OFFSET : WEBP_TAG_OFFSET + len(WEBP_TAG)] == WEBP_TAG:
        return "WebP", ".webp"
    for signature, name, suffix in IMAGE_SIGNATURES:
        if head.startswith(signature):
            return name, suffix
    return None


__all__ = ["still_image_format"]
