"""The workspace's state files (editing lock, edit journal, review log): never reached through a
planted link, never another user's file or a FIFO (issue 30, item 7)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from engine.io.journal import Edit, Journal, JournalError, read_journal
from engine.io.lock import acquire_lock
from engine.io.messages import describe_error
from engine.io.review import ReviewLog

PRECIOUS = b"someone's file\n"


def _take_lock(path):
    acquire_lock(path).release()


def _append_review(path):
    ReviewLog(path).append({"Images/a.jpg": "reviewed"})


def _append_edit(path):
    Journal(path, {"t": "base", "version": 1}).append(Edit("Images/a.jpg", [0], [[1, 2]], [1]))


WRITERS = [_take_lock, _append_review, _append_edit]


@pytest.mark.parametrize("write", WRITERS, ids=["lock", "review log", "journal"])
def test_a_planted_link_is_refused_and_its_target_left_untouched(tmp_path, write):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(PRECIOUS)
    link = tmp_path / "state"
    link.symlink_to(victim)
    with pytest.raises(PermissionError) as caught:
        write(link)
    assert describe_error(caught.value) == f"{link}: is a symbolic link; refused"
    assert victim.read_bytes() == PRECIOUS
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "created-through-the-link")
    with pytest.raises(PermissionError, match="symbolic link"):
        write(dangling)
    assert not (tmp_path / "created-through-the-link").exists()


@pytest.mark.parametrize("write", WRITERS, ids=["lock", "review log", "journal"])
def test_a_fifo_is_refused_without_waiting(tmp_path, write):
    fifo = tmp_path / "state"
    os.mkfifo(fifo)
    with pytest.raises(PermissionError) as caught:
        write(fifo)
    assert describe_error(caught.value) == f"{fifo}: is not a regular file; refused"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can make a file of another user")
@pytest.mark.parametrize("write", WRITERS, ids=["lock", "review log", "journal"])
def test_another_users_file_is_refused_and_left_untouched(tmp_path, write):
    foreign = tmp_path / "state"
    foreign.write_bytes(PRECIOUS)
    os.chown(foreign, 12345, 12345)
    with pytest.raises(PermissionError) as caught:
        write(foreign)
    assert describe_error(caught.value) == f"{foreign}: belongs to another user; refused"
    assert foreign.read_bytes() == PRECIOUS


def test_readers_do_not_follow_a_planted_link(tmp_path):
    victim = tmp_path / "victim.jsonl"
    victim.write_text('{"id": "a", "state": "reviewed"}\n')
    link = tmp_path / "state"
    link.symlink_to(victim)
    with pytest.raises(PermissionError, match="symbolic link"):
        ReviewLog(link).load()
    with pytest.raises(JournalError, match=r"state: cannot read journal \(is a symbolic link; refused\)"):
        read_journal(link)


def test_state_files_of_this_user_still_work(tmp_path):
    lock = acquire_lock(tmp_path / "x.lock")
    lock.release()
    _append_review(tmp_path / "r.jsonl")
    _append_edit(tmp_path / "j.jsonl")
    assert ReviewLog(tmp_path / "r.jsonl").load() == ({"Images/a.jpg": "reviewed"}, [])
    assert np.array_equal(read_journal(tmp_path / "j.jsonl").edits[0].coords, [[1, 2]])


def test_the_hard_set_the_hold_out_and_the_active_version_are_never_read_through_a_link(tmp_path):
    from engine.io.workspace import Workspace

    secret = tmp_path / "secret.txt"
    secret.write_text("image_id,reason\nImages/private.jpg,manual\n")
    ws = Workspace(tmp_path / "data", state_dir=tmp_path / "state")
    ws.state_dir.mkdir(parents=True)
    ws.models_dir.mkdir(parents=True)
    for planted in (ws.hard_set_path, ws.holdout_path, ws.models_dir / "active"):
        planted.symlink_to(secret)
    with pytest.raises(PermissionError, match="hard_set.csv"):
        ws.load_hard_set([])
    with pytest.raises(PermissionError, match="holdout.json"):
        ws.load_holdout()
    assert ws.active_model_version() is None
    assert secret.read_text() == "image_id,reason\nImages/private.jpg,manual\n"
    assert list(ws.state_dir.glob("hard_set.damaged-*")) == []
