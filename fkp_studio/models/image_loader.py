"""Image decoding off the main thread, with a bounded LRU cache.

`request(path)` returns the cached image at once or starts a decode on a small thread pool
and answers later with `loaded` (or `failed`, carrying `ImageError`'s message, which names
the file). Decoded images are kept as QImage (thread-safe); the cache is bounded by bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage

from engine.io.images import ImageError, read_image


class _Relay(QObject):
    # Lives in the main thread; emitting from a pool thread queues the call to it.
    done = Signal(str, QImage)
    error = Signal(str, str)


class _Decode(QRunnable):
    def __init__(self, key: str, root: Path | None, relay: _Relay):
        super().__init__()
        self.key = key
        self.root = root
        self.relay = relay

    def run(self) -> None:
        try:
            rgb = read_image(self.key, self.root)
        except ImageError as e:
            self.relay.error.emit(self.key, str(e))
            return
        except Exception as e:  # a decoder crash must not kill the pool thread silently
            self.relay.error.emit(self.key, f"{self.key}: cannot decode image ({e})")
            return
        h, w = rgb.shape[:2]
        image = QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()  # own the pixels
        self.relay.done.emit(self.key, image)


class ImageLoader(QObject):
    """Decodes images on a thread pool; caches up to `max_bytes` of them (least recently used out).
    With `root` set, only files inside that folder are read (others fail with the reason)."""

    loaded = Signal(str, QImage)  # path, image
    failed = Signal(str, str)  # path, reason

    def __init__(self, max_bytes: int = 384 << 20, threads: int = 2, parent: QObject | None = None):
        super().__init__(parent)
        self.max_bytes = max_bytes
        self.root: Path | None = None
        self._cache: OrderedDict[str, QImage] = OrderedDict()
        self._errors: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0
        self._pending: set[str] = set()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._relay = _Relay(self)
        self._relay.done.connect(self._on_done)
        self._relay.error.connect(self._on_error)

    def cached(self, path: str | Path) -> QImage | None:
        key = str(path)
        image = self._cache.get(key)
        if image is not None:
            self._cache.move_to_end(key)
        return image

    def error(self, path: str | Path) -> str | None:
        return self._errors.get(str(path))

    def request(self, path: str | Path) -> QImage | None:
        """The image if cached; otherwise start decoding it (once) and return None."""
        key = str(path)
        image = self.cached(key)
        if image is not None or key in self._pending or key in self._errors:
            return image
        self._pending.add(key)
        self._pool.start(_Decode(key, self.root, self._relay))
        return None

    def wait(self, msecs: int = -1) -> bool:
        """Wait for running decodes (tests, shut-down)."""
        return self._pool.waitForDone(msecs)

    def _on_done(self, key: str, image: QImage) -> None:
        self._pending.discard(key)
        if image.sizeInBytes() <= self.max_bytes:  # one image over the cap is shown, not kept
            self._cache[key] = image
            self._bytes += image.sizeInBytes()
        while self._bytes > self.max_bytes:
            _, old = self._cache.popitem(last=False)
            self._bytes -= old.sizeInBytes()
        self.loaded.emit(key, image)

    def _on_error(self, key: str, reason: str) -> None:
        self._pending.discard(key)
        self._errors[key] = reason
        while len(self._errors) > 1000:
            self._errors.popitem(last=False)
        self.failed.emit(key, reason)
