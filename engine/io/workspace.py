"""Where the studio keeps its own state for a data set: `<root>/.fkp/`.

A data set root in the FashionAI layout (`Annotations/*.csv`, `Images/<category>/*.jpg`)
gets a state folder beside its data. Layout (folders are created on first use):

    <root>/.fkp/
        journal/<csv stem>-<hash>.jsonl    edit journal of one annotation file (<hash>: of its path
                                           relative to the root, so the state travels with a moved,
                                           copied or renamed data set folder)
        journal/<csv stem>-<hash>.review.jsonl   the review states of its images
        journal/<csv stem>-<hash>.uncategorized.json   its images without a category yet (and
                                           their points): no FashionAI row can hold them

        models/v001/model.fkpmodel         model versions (written whole, then renamed into place)
        models/active                      the active version's name ("v001"), written atomically
        predictions/<version>/<stem>.csv   predictions of one version for one annotation file
        predictions/<version>/<stem>.scores.csv   their confidences
        hard_set.csv                       the hard set: image_id, reason (worst-ne/corrected/manual;
                                           "removed" marks an image the user took out)
        holdout.json                       validation images never trained on by a retrain
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.io.annotations import dataset_root_of, load_annotations, save_annotations  # noqa: F401 (public here)
from engine.io.files import atomic_write_text, fsync_dir
from engine.io.model_files import PACKAGE_FILE_NAME, package_file
from engine.io.scores import load_scores, scores_path, write_predictions
from engine.io.state_files import read_owned
from engine.schema import NUM_KEYPOINTS

STATE_DIR_NAME = ".fkp"
UNCATEGORIZED_FORMAT = "fkp-uncategorized/1"
HARD_REASONS = ("worst-ne", "corrected", "manual")
REMOVED = "removed"
_VERSION = re.compile(r"^v(\d{3,})$")
# The files of one annotation file's state that a new key adopts from an old one. The lock is not
# state: a live session of an older version holds its own, and the annotation file's identity
# lock (`engine.io.lock`) keeps the two apart anyway.
_STATE_SUFFIXES = (".jsonl", ".review.jsonl", ".uncategorized.json")
_TAG = re.compile(r"^[0-9a-f]{10}$")


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
        self._adopted: set[str] = set()  # state keys whose earlier-version state was looked for

    @property
    def journal_dir(self) -> Path:
        return self.state_dir / "journal"

    def journal_path(self, annotations_path: str | os.PathLike) -> Path:
        """The journal file of one annotation file (stable across runs and moves, unique per path).

        The state of an earlier version's key (the absolute path's) is adopted first."""
        path = Path(annotations_path).resolve()
        key = self.state_key(path)
        if key not in self._adopted:
            self._adopted.add(key)  # once per key: this is called for every state file's path
            self._adopt_old_state(path, key)
        return self.journal_dir / f"{key}.jsonl"

    def state_key(self, annotations_path: str | os.PathLike) -> str:
        """`<stem>-<hash>` naming one annotation file's state: the hash of its path relative to
        the root (a moved, copied or renamed data set folder keeps its keys), or of its absolute
        path for a file outside the root."""
        path = Path(annotations_path).resolve()
        try:
            name = path.relative_to(self.root).as_posix()
        except ValueError:
            name = str(path)
        return f"{path.stem}-{_tag(name)}"

    def _adopt_old_state(self, path: Path, key: str) -> None:
        """Rename the state an earlier version keyed by the absolute path to `key`: the key of the
        file's path now, else (the folder was moved since) the one key of its name that no
        annotation file of this root has now. A file already under `key` is never replaced."""
        old = self._old_key(path, key)
        if old is None:
            return
        moved = False
        for suffix in _STATE_SUFFIXES:
            source, target = self.journal_dir / f"{old}{suffix}", self.journal_dir / f"{key}{suffix}"
            if _is_own_regular_file(source) and not os.path.lexists(target):
                moved |= _rename_new(source, target)
        if moved:
            fsync_dir(self.journal_dir)

    def _old_key(self, path: Path, key: str) -> str | None:
        """The earlier version's key of `path`'s state, when one is found here; else None."""
        legacy = f"{path.stem}-{_tag(str(path))}"
        if any(os.path.lexists(self.journal_dir / f"{legacy}{s}") for s in _STATE_SUFFIXES):
            return legacy if legacy != key else None
        try:
            names = os.listdir(self.journal_dir)
        except OSError:
            return None
        # Keys of this root's annotation files as they are now: theirs, not a moved file's.
        taken = {self.state_key(p) for p in (*find_annotation_files(self.root), path)}
        taken |= {f"{p.stem}-{_tag(str(p.resolve()))}" for p in find_annotation_files(self.root)}
        orphans = {k for k in map(_state_key_of, names)
                   if k is not None and k.rpartition("-")[0] == path.stem and k not in taken}
        return orphans.pop() if len(orphans) == 1 else None  # two or more: not guessed

    def review_path(self, annotations_path: str | os.PathLike) -> Path:
        """The review states of one annotation file's images (`engine.io.review`)."""
        return self.journal_path(annotations_path).with_suffix(".review.jsonl")

    def uncategorized_path(self, annotations_path: str | os.PathLike) -> Path:
        """The images of one annotation file that have no category yet, with their points."""
        return self.journal_path(annotations_path).with_suffix(".uncategorized.json")

    def save_uncategorized(self, annotations_path: str | os.PathLike, image_ids: list[str], coords: np.ndarray,
                           visibility: np.ndarray) -> None:
        """Keep the images without a category (ids, (N, 24, 2) coordinates, (N, 24) visibility)
        until they have one, written atomically; none: the file is removed."""
        path = self.uncategorized_path(annotations_path)
        if not len(image_ids):
            path.unlink(missing_ok=True)
            return
        images = []
        for image_id, xy, v in zip(image_ids, np.asarray(coords, np.float64), np.asarray(visibility, np.int64)):
            k = np.flatnonzero(v >= 0)
            images.append({"id": str(image_id), "k": k.tolist(), "xy": xy[k].tolist(), "v": v[k].tolist()})
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"format": UNCATEGORIZED_FORMAT,
                                            "annotations": Path(annotations_path).name, "images": images}, indent=1))

    def load_uncategorized(self, annotations_path: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The images kept by `save_uncategorized` -> (ids, coords (N, 24, 2), visibility (N, 24));
        none when there is no file. A damaged file raises ValueError naming it."""
        path = self.uncategorized_path(annotations_path)
        if not path.exists():
            return [], np.zeros((0, NUM_KEYPOINTS, 2), np.float32), np.zeros((0, NUM_KEYPOINTS), np.int8)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            if obj.get("format") != UNCATEGORIZED_FORMAT:
                raise ValueError(f"format {obj.get('format')!r}, expected {UNCATEGORIZED_FORMAT!r}")
            images = obj["images"]
            coords = np.full((len(images), NUM_KEYPOINTS, 2), -1, np.float32)
            visibility = np.full((len(images), NUM_KEYPOINTS), -1, np.int8)
            for i, image in enumerate(images):
                k = np.asarray(image["k"], np.int64)
                v = np.asarray(image["v"], np.int64)
                if len(k) and (k.min() < 0 or k.max() >= NUM_KEYPOINTS) or not np.isin(v, (0, 1)).all():
                    raise ValueError(f"image {i + 1}: keypoint or visibility out of range")
                coords[i, k] = np.asarray(image["xy"], np.float32).reshape(len(k), 2)
                visibility[i, k] = v
            return [str(image["id"]) for image in images], coords, visibility
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a list of images without a category ({e})") from None
        except RecursionError:  # `[[[[...` thousands deep: damaged, not a crash
            raise ValueError(f"{path}: not a list of images without a category (nested too deeply)") from None

    def lock_path(self, annotations_path: str | os.PathLike) -> Path:
        """The editing lock of one annotation file (`engine.io.lock`), beside its journal."""
        return self.journal_path(annotations_path).with_suffix(".lock")

    def image_path(self, image_id: str) -> Path:
        """The file of an image id (ids are paths relative to the root)."""
        return self.root / image_id

    def is_writable(self) -> bool:
        """Whether the state folder can be created or written here."""
        probe = self.state_dir
        while not probe.exists():
            probe = probe.parent
        return os.access(probe, os.W_OK | os.X_OK)

    # --- model versions ----------------------------------------------------------------------

    @property
    def models_dir(self) -> Path:
        return self.state_dir / "models"

    def model_versions(self) -> list[str]:
        """The complete model versions, oldest first ("v001", "v002", ...)."""
        if not self.models_dir.is_dir():
            return []
        found = [p.name for p in self.models_dir.iterdir() if p.is_dir() and _VERSION.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def model_path(self, version: str) -> Path:
        """The model package file of a version."""
        return self.models_dir / _check_version(version) / PACKAGE_FILE_NAME

    def add_model_version(self, write: Any) -> str:
        """Create the next version: `write(directory)` fills a temporary folder, which is then
        renamed into place, so a failing or interrupted write leaves no version behind."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=self.models_dir))
        try:
            write(tmp)
            while True:
                versions = self.model_versions()
                version = f"v{(int(versions[-1][1:]) + 1) if versions else 1:03d}"
                try:
                    os.rename(tmp, self.models_dir / version)  # fails if another writer took the name
                    fsync_dir(self.models_dir)
                    break
                except OSError:
                    if not (self.models_dir / version).exists():
                        raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return version

    def import_model(self, package: str | os.PathLike, check: Callable[[Path], Any] | None = None) -> str:
        """The version of a model package file (or package directory): a copy made on its first
        import, found again by where it came from (path, size, time) on later ones. `check(file)`
        (e.g. loading it; this layer has no torch) runs on the copy before it becomes a version,
        and on a version found again: what it raises leaves no version behind."""
        source = package_file(package)
        if not source.is_file():
            raise FileNotFoundError(f"{source}: model package not found")
        st = source.stat()
        origin = f"{source.resolve()}|{st.st_size}|{int(st.st_mtime)}"
        for version in self.model_versions():
            try:
                if (self.models_dir / version / "source.txt").read_text(encoding="utf-8").strip() != origin:
                    continue
            except OSError:
                continue  # a version of no recorded origin (a retrain)
            if check is not None:
                check(self.model_path(version))  # imported before packages were checked
            return version

        def write(directory: Path) -> None:
            shutil.copyfile(source, directory / PACKAGE_FILE_NAME)
            if check is not None:
                # The copy is checked, not the source: it is what the version will hold.
                check(directory / PACKAGE_FILE_NAME)
            (directory / "source.txt").write_text(origin + "\n", encoding="utf-8")

        return self.add_model_version(write)

    def remove_model_version(self, version: str) -> None:
        """Delete a version that is not active (a discarded retrain)."""
        if version == self.active_model_version():
            raise ValueError(f"{version} is the active model; activate another version first")
        target = self.models_dir / _check_version(version)
        if target.exists():
            trash = Path(tempfile.mkdtemp(prefix=".discarded-", dir=self.models_dir))
            os.rename(target, trash / version)  # out of the version list at once, then deleted
            shutil.rmtree(trash, ignore_errors=True)

    def active_model_version(self) -> str | None:
        """The active version, or None when none was set (or it no longer exists)."""
        try:
            version = read_owned(self.models_dir / "active").decode("utf-8").strip()
        except (OSError, UnicodeDecodeError):  # a planted link or another user's file: no active version
            return None
        return version if _VERSION.match(version) and self.model_path(version).is_file() else None

    def set_active_model(self, version: str) -> None:
        if not self.model_path(version).is_file():
            raise FileNotFoundError(f"{self.model_path(version)}: no such model version")
        atomic_write_text(self.models_dir / "active", version + "\n")

    # --- predictions per model version -------------------------------------------------------

    def predictions_path(self, version: str, annotations_path: str | os.PathLike) -> Path:
        """The predictions CSV of a model version for one annotation file (scores beside it)."""
        return self.state_dir / "predictions" / _check_version(version) / f"{Path(annotations_path).stem}.csv"

    def save_predictions(self, version: str, annotations_path: str | os.PathLike, predictions: Any,
                         scores: Any) -> Path:
        """Write predictions (`Annotations`) and their scores (N, 24); the scores go first, so a
        predictions file on disk always has matching scores beside it."""
        path = self.predictions_path(version, annotations_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_predictions(path, predictions, scores)
        return path

    def load_predictions(self, version: str, annotations_path: str | os.PathLike) -> tuple[Any, Any] | None:
        """(predictions `Annotations`, scores (N, 24)) saved for a version, or None when there are none.

        Raises ValueError naming the file when the two files do not belong together."""
        path = self.predictions_path(version, annotations_path)
        if not path.is_file():
            return None
        pred = load_annotations(path)
        ids, scores = load_scores(scores_path(path))
        if list(pred.image_ids) != ids:
            raise ValueError(f"{scores_path(path)}: image ids differ from {path.name}")
        return pred, np.asarray(scores)

    # --- hard set ----------------------------------------------------------------------------

    @property
    def hard_set_path(self) -> Path:
        return self.state_dir / "hard_set.csv"

    def load_hard_set(self, problems: list[str] | None = None) -> dict[str, str]:
        """image id -> reason, including "removed" entries (images the user took out).

        A malformed row raises ValueError naming the file and row; with a `problems` list the
        rows that can be read are returned, each bad row's message goes into the list, and the
        file is first copied beside itself (`hard_set.damaged-<time>.csv`): the next save
        rewrites it, and the rows it could not read must not be lost with it."""
        path = self.hard_set_path
        if not path.is_file():
            return {}
        out: dict[str, str] = {}
        found: list[str] = []
        text = read_owned(path).decode("utf-8")  # never through a planted link
        lines = text.splitlines()
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            image_id, sep, reason = line.rpartition(",")
            if not sep or reason not in (*HARD_REASONS, REMOVED):
                found.append(f"{path}, row {number}: expected 'image_id,reason' with reason one of "
                             f"{', '.join((*HARD_REASONS, REMOVED))}, got {line!r}")
                if problems is None:
                    raise ValueError(found[0])
                continue
            out[image_id] = reason
        if found:
            kept = path.with_name(f"{path.stem}.damaged-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
            atomic_write_text(kept, text)
            problems.extend(found + [f"{path.name} kept as it was in {kept.name}"])
        return out

    def save_hard_set(self, entries: dict[str, str]) -> None:
        bad = {r for r in entries.values() if r not in (*HARD_REASONS, REMOVED)}
        if bad:
            raise ValueError(f"unknown hard-set reason(s): {', '.join(sorted(bad))}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        lines = ["image_id,reason"] + [f"{i},{r}" for i, r in sorted(entries.items())]
        atomic_write_text(self.hard_set_path, "\n".join(lines) + "\n")

    # --- held-out validation images ------------------------------------------------------------

    @property
    def holdout_path(self) -> Path:
        return self.state_dir / "holdout.json"

    def load_holdout(self) -> list[str] | None:
        """The persisted held-out validation ids, or None when none was chosen yet."""
        if not self.holdout_path.is_file():
            return None
        try:
            ids = json.loads(read_owned(self.holdout_path).decode("utf-8"))["ids"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{self.holdout_path}: not a hold-out file ({e})") from None
        except RecursionError:  # `[[[[...` thousands deep: damaged, not a crash
            raise ValueError(f"{self.holdout_path}: not a hold-out file (nested too deeply)") from None
        return [str(i) for i in ids]

    def save_holdout(self, ids: list[str]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.holdout_path, json.dumps({"ids": sorted(ids)}, indent=0) + "\n")


def _tag(name: str) -> str:
    """The short hash of a path in a state file's name."""
    return hashlib.sha1(name.encode("utf-8")).hexdigest()[:10]


def _state_key_of(name: str) -> str | None:
    """The `<stem>-<hash>` key of a state file's name (journal, review log, uncategorized), or None."""
    for suffix in sorted(_STATE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            key = name[:-len(suffix)]
            return key if _TAG.match(key.rpartition("-")[2]) else None
    return None


def _is_own_regular_file(path: Path) -> bool:
    """Whether `path` itself (not followed) is a regular file this user owns: a planted link is
    never adopted (the state files are opened only so, `engine.io.state_files`)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and (not hasattr(os, "geteuid") or info.st_uid == os.geteuid())


def _rename_new(source: Path, target: Path) -> bool:
    """Give `source` the name `target` unless `target` exists (a link, then an unlink: a plain
    rename would replace a file another session just created); False if nothing moved."""
    try:
        os.link(source, target, follow_symlinks=False)
    except FileExistsError:
        return False
    except FileNotFoundError:
        return False  # another session adopted it first
    except OSError:  # a file system without hard links
        if os.path.lexists(target):
            return False
        os.rename(source, target)
        return True
    os.unlink(source)
    return True


def _check_version(version: str) -> str:
    if not _VERSION.match(str(version)):
        raise ValueError(f"{version!r} is not a model version name (v001, v002, ...)")
    return str(version)
