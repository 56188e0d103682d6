"""Where the studio keeps its own state for a data set: `<root>/.fkp/`.

A data set root in the FashionAI layout (`Annotations/*.csv`, `Images/<category>/*.jpg`)
gets a state folder beside its data. Layout (folders are created on first use):

    <root>/.fkp/
        journal/<csv stem>-<hash>.jsonl    edit journal of one annotation file

Model versions, predictions per model version and the hard set live here too (added by
the modules that own them, each under its own sub-folder).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

STATE_DIR_NAME = ".fkp"


def dataset_root_of(annotations_path: str | os.PathLike) -> Path:
    """The data set root an annotation file belongs to: image ids are relative to it.

    FashionAI keeps annotation files in `<root>/Annotations/`; a CSV elsewhere is taken to
    sit in its own root.
    """
    parent = Path(annotations_path).resolve().parent
    return parent.parent if parent.name.lower() == "annotations" else parent


def find_annotation_files(root: str | os.PathLike) -> list[Path]:
    """The annotation CSVs of a data set root (`Annotations/*.csv`, else `*.csv` in the root)."""
    root = Path(root)
    return sorted((root / "Annotations").glob("*.csv")) or sorted(root.glob("*.csv"))


class Workspace:
    """The state folder of one data set root.

    `state_dir` defaults to `<root>/.fkp`; pass another folder when the root is read-only.
    """

    def __init__(self, root: str | os.PathLike, state_dir: str | os.PathLike | None = None):
        self.root = Path(root).resolve()
        self.state_dir = Path(state_dir) if state_dir is not None else self.root / STATE_DIR_NAME

    @property
    def journal_dir(self) -> Path:
        return self.state_dir / "journal"

    def journal_path(self, annotations_path: str | os.PathLike) -> Path:
        """The journal file of one annotation file (stable across runs, unique per path)."""
        path = Path(annotations_path).resolve()
        tag = hashlib.sha1(str(path).encode("utf-8")).hexdigest()[:10]
        return self.journal_dir / f"{path.stem}-{tag}.jsonl"

    def image_path(self, image_id: str) -> Path:
        """The file of an image id (ids are paths relative to the root)."""
        return self.root / image_id

    def is_writable(self) -> bool:
        """Whether the state folder can be created or written here."""
        probe = self.state_dir
        while not probe.exists():
            probe = probe.parent
        return os.access(probe, os.W_OK | os.X_OK)
