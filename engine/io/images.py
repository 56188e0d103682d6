"""Reading and writing images, with errors that name the file.

Readers open only regular files (inside the data root when given one: `check_inside`), and refuse an image
whose header claims more than `max_pixels()` pixels before decoding it (a 15 KB JPEG can claim
30000 x 30000, 2.7 GB decoded)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np

from engine.io.files import atomic_write_bytes


class ImageError(Exception):
    """An image could not be read: missing, unreadable or corrupt. The message names the file."""


DEFAULT_MAX_PIXELS = 100_000_000  # 10000 x 10000; FashionAI's photos are 512 x 512


def max_pixels() -> int:
    """The largest image (width x height) readers decode: `FKP_MAX_IMAGE_PIXELS`, else 100 million."""
    text = os.environ.get("FKP_MAX_IMAGE_PIXELS", "")
    return int(text) if text.isdigit() and int(text) > 0 else DEFAULT_MAX_PIXELS


def check_inside(root: str | os.PathLike, path: str | os.PathLike) -> None:
    """ImageError unless `path` lies inside `root` once symbolic links are followed (an
    absolute id, `..` or a linked folder pointing elsewhere lead out)."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real == real_root or os.path.commonpath([real_root, real]) != real_root:
        raise ImageError(f"{path}: outside the data root {root}; not opened")


def read_image(path: str | os.PathLike, root: str | os.PathLike | None = None) -> np.ndarray:
    """Decode an image file to an RGB uint8 array (H, W, 3); with `root`, only a file inside it."""
    path = Path(path)
    if root is not None:
        check_inside(root, path)
    data = _read_regular_file(path)
    if data.size == 0:
        raise ImageError(f"{path}: image file is empty")
    size = _png_size(data[:1 << 16].tobytes()) or _jpeg_size(data[:1 << 16].tobytes())
    if size is not None:
        _check_pixels(path, size)
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as e:  # OpenCV's own limits (over 2^30 pixels), unsupported variants
        raise ImageError(f"{path}: cannot decode image ({str(e).strip().splitlines()[-1]})") from None
    if bgr is None:
        raise ImageError(f"{path}: not a decodable image (corrupt or unsupported format)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_size(path: str | os.PathLike, root: str | os.PathLike | None = None) -> tuple[int, int]:
    """(width, height) of an image file: from the header of a JPEG or PNG, else by decoding it.
    Raises `ImageError` naming the file; with `root`, only a file inside it is opened."""
    path = Path(path)
    if root is not None:
        check_inside(root, path)
    head = _read_regular_file(path, limit=1 << 16).tobytes()
    size = _png_size(head) or _jpeg_size(head)
    if size is None:
        h, w = read_image(path).shape[:2]
        size = (w, h)
    return size


def _read_regular_file(path: Path, limit: int = -1) -> np.ndarray:
    """The bytes of a regular file (at most `limit`). A FIFO, device or folder is refused without
    blocking: it is opened non-blocking and checked before anything is read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ImageError(f"{path}: image file not found") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read image ({e.strerror or e})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageError(f"{path}: not a regular file; not read")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read() if limit < 0 else f.read(limit)
    except OSError as e:
        raise ImageError(f"{path}: cannot read image ({e.strerror or e})") from None
    finally:
        os.close(fd)
    return np.frombuffer(data, dtype=np.uint8)


def _check_pixels(path: Path, size: tuple[int, int]) -> None:
    w, h = size
    limit = max_pixels()
    if w * h > limit:
        raise ImageError(f"{path}: {w} x {h} pixels is over the limit of {limit:,} "
                         "(set FKP_MAX_IMAGE_PIXELS to read larger images)")


def _png_size(head: bytes) -> tuple[int, int] | None:
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from the first start-of-frame marker in the first 64 KiB, if any."""
    if head[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(head) and head[i] == 0xFF:
        marker = head[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        length = int.from_bytes(head[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOF0..SOF15
            h, w = int.from_bytes(head[i + 5:i + 7], "big"), int.from_bytes(head[i + 7:i + 9], "big")
            return (w, h) if w and h else None
        i += 2 + length
    return None


def write_jpeg(path: str | os.PathLike, rgb: np.ndarray, quality: int = 90) -> None:
    """Encode an RGB uint8 array as JPEG and write it atomically."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageError(f"{path}: JPEG encoding failed")
    atomic_write_bytes(path, buf.tobytes())
