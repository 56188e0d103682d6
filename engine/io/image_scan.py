"""Finding the images of a data set that has no annotation file yet.

Ids are written as FashionAI writes them, relative to the data set root
(`Images/<category>/<file>.jpg`); the category comes from the folder name when it is a FashionAI
category. `os.scandir` walks 100,000 files in well under a second. A file whose name no CSV row
can hold (a comma, a line break, a quote first, not UTF-8) and a subfolder that cannot be read
are left out and named in `ScannedImages.skipped`: one such file must not stop the rest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.io.annotations import id_problems
from engine.schema import CATEGORIES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class ScannedImages:
    root: Path
    image_ids: list[str]          # sorted, relative to `root`, "/"-separated
    categories: list[int | None]  # from the folder name; None when it names no category
    skipped: list[str] = field(default_factory=list)  # one line per file or folder left out, naming it

    def __len__(self) -> int:
        return len(self.image_ids)


def images_root(images_dir: str | os.PathLike) -> Path:
    """The data set root of a folder of images: the folder above `Images/`, else the folder itself."""
    images_dir = Path(images_dir).resolve()
    return images_dir.parent if images_dir.name == "Images" else images_dir


def scan_images(images_dir: str | os.PathLike, progress: Callable[[int], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> ScannedImages:
    """Every image file under `images_dir` (regular files only; links that lead outside the
    folder are not followed). `progress(found)` is called every 1,000 files. An unreadable
    `images_dir` raises OSError naming it; what is left out is named in `.skipped`."""
    images_dir = Path(images_dir).resolve()
    if not images_dir.is_dir():
        raise FileNotFoundError(2, "images folder not found", str(images_dir))
    root = images_root(images_dir)
    found: list[str] = []
    skipped: list[str] = []
    stack = [images_dir]
    while stack:
        if should_stop is not None and should_stop():
            break
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as e:
            if folder == images_dir:
                raise  # nothing can be listed: an error, not an empty data set
            skipped.append(f"{_shown(str(folder))}: cannot be read ({e.strerror or e}); its images are left out")
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False) and entry.name.lower().endswith(IMAGE_SUFFIXES):
                found.append(Path(entry.path).relative_to(root).as_posix())
                if progress is not None and len(found) % 1000 == 0:
                    progress(len(found))
    found.sort()
    found = _writable(found, skipped)
    index = {name: c for c, name in enumerate(CATEGORIES)}
    categories = [index.get(image_id.rsplit("/", 2)[-2]) if "/" in image_id else None for image_id in found]
    return ScannedImages(root, found, categories, skipped)


def _writable(ids: list[str], skipped: list[str]) -> list[str]:
    """The ids a FashionAI row can hold; each other one is named in `skipped`."""
    bad = id_problems(ids)
    for k, reason in sorted(bad.items()):
        skipped.append(f"{_shown(ids[k])}: the file name {reason}, which a FashionAI CSV row cannot hold; "
                       f"left out (rename the file)")
    return [image_id for k, image_id in enumerate(ids) if k not in bad] if bad else ids


def _shown(name: str) -> str:
    """A file name on one line, whatever it holds: its repr, the raw bytes where it is not UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return repr(os.fsencode(name))
    return repr(name)
