"""Where a model package lives on disk (no torch): one `.fkpmodel` file, or a directory that
holds `model.fkpmodel`."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_FILE_NAME = "model.fkpmodel"


def package_file(path: str | os.PathLike) -> Path:
    """The file a package path names: the path itself, or `model.fkpmodel` inside a directory."""
    path = Path(path)
    return path / PACKAGE_FILE_NAME if path.is_dir() else path
