"""What the screenshot scripts share: a private settings folder, waiting on the event loop,
a studio window of the README's size, and saving it as a PNG."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def private_folder() -> Path:
    """A temporary folder that also holds the studio's settings and data, so the user's own
    studio state is untouched (call before importing Qt)."""
    tmp = Path(tempfile.mkdtemp(prefix="fkp-shots-"))
    os.environ["XDG_CONFIG_HOME"] = str(tmp / "config")
    os.environ["XDG_DATA_HOME"] = str(tmp / "data")
    return tmp


def wait(ms: int) -> None:
    """Run the event loop for `ms` milliseconds."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait_for(signal, timeout_ms: int = 600_000) -> None:
    """Run the event loop until `signal` fires (or the timeout)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    signal.connect(loop.quit)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()


def new_window():
    """A studio window at the screenshots' size, shown."""
    from fkp_studio.main_window import MainWindow

    w = MainWindow()
    w.questions.restore_policy = "discard"
    w.resize(1600, 1000)
    w.show()
    return w


def shot(window, path: Path, settle_ms: int = 700) -> None:
    """Save the window as a PNG once images have decoded and charts drawn in the background."""
    wait(settle_ms)
    window.grab().save(str(path))
    print(f"saved {path}")
