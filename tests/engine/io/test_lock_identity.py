"""The editing lock is keyed on the annotation file's identity, not the name it is reached by
(issue 30, item 15): a hard link or a bind mount gets no second editor."""

from __future__ import annotations

import os

import pytest

from engine.io.files import atomic_write_text
from engine.io.lock import LockedError, acquire_lock
from engine.io.workspace import Workspace


def test_a_hard_link_to_the_file_gets_no_second_editor(tmp_path, csv):
    link = csv.with_name("same.csv")
    os.link(csv, link)
    workspace = Workspace(tmp_path)
    assert workspace.lock_path(link) != workspace.lock_path(csv)  # two names, two lock files
    lock = acquire_lock(workspace.lock_path(csv), csv)
    with pytest.raises(LockedError, match=r"same\.csv: open for editing by another session"):
        acquire_lock(workspace.lock_path(link), link)
    assert workspace.lock_path(link).read_text() == ""  # the refused session names nobody
    lock.release()
    acquire_lock(workspace.lock_path(link), link).release()


def test_the_lock_follows_the_file_a_save_puts_in_place(tmp_path, csv):
    """A bind mount shows the same folder under another path: a save's new file is reached by
    both names, so the lock moves to it; a hard link to the old file now names another file."""
    old_name = csv.with_name("old.csv")
    os.link(csv, old_name)
    lock = acquire_lock(tmp_path / "here.lock", csv)
    atomic_write_text(csv, "image_id,image_category\nImages/a.jpg,skirt\n")  # a save: a new inode
    assert lock.follow(csv)
    with pytest.raises(LockedError):
        acquire_lock(tmp_path / "through-a-bind-mount.lock", csv)
    acquire_lock(tmp_path / "old.lock", old_name).release()  # the replaced file is no longer held
    lock.release()
    acquire_lock(tmp_path / "through-a-bind-mount.lock", csv).release()


def test_new_annotations_are_locked_by_their_first_save(tmp_path):
    csv = tmp_path / "new.csv"
    lock = acquire_lock(tmp_path / "new.lock", csv)  # no file yet: the path's lock only
    csv.write_text("image_id,image_category\n")
    assert lock.follow(csv)
    with pytest.raises(LockedError):
        acquire_lock(tmp_path / "other.lock", csv)
    lock.release()
