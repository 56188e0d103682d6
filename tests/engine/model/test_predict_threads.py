"""Issue 29, item 13: prediction runs torch on the engine's thread count (one per usable CPU, up
to torch's own: `benchmarks/bench_predict_threads.py`), set where `fkp predict` and the studio's
predict job choose it and given back after, and
OpenMP's waiting threads sleep instead of spinning (`OMP_WAIT_POLICY=PASSIVE` read by OpenMP when
torch loads) in `fkp` and in the studio's process. Speed itself is measured by the benchmark."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.io.annotations import Annotations
from engine.io.images import write_jpeg
from engine.io.workspace import Workspace
from engine.jobs.model_jobs import predict_job
from engine.jobs.runner import JobRunner, JobState
from engine.model.device import predict_threads
from engine.model.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[3]
DEMO_MODEL = REPO / "resources" / "models" / "demo"


def test_the_thread_rule_takes_every_usable_cpu_up_to_torchs_own_count():
    assert [predict_threads(n, limit=8) for n in (1, 2, 4, 16)] == [1, 2, 4, 8]
    assert predict_threads(4, limit=1) == 1  # OMP_NUM_THREADS=1: kept
    assert 1 <= predict_threads() <= len(os.sched_getaffinity(0))


@pytest.fixture
def seen_threads(monkeypatch):
    """Torch's thread count each time the pipeline predicts a batch, in a process that may run on
    one CPU (its affinity: `taskset -c 0`) while torch is on two: the engine's choice is 1."""
    seen: list[int] = []
    real = Pipeline.predict_images

    def predict_images(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "predict_images", predict_images)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield seen
    assert torch.get_num_threads() == 2  # given back
    torch.set_num_threads(before)


def _one_image(root: Path) -> None:
    (root / "Images" / "skirt").mkdir(parents=True)
    write_jpeg(root / "Images" / "skirt" / "s.jpg", np.full((48, 48, 3), 180, np.uint8))


def test_fkp_predict_runs_on_the_engines_thread_count_unless_told(tmp_path, seen_threads):
    _one_image(tmp_path)
    argv = ["predict", "--model", str(DEMO_MODEL), "--images", str(tmp_path / "Images"), "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "a.csv")]) == 0
    assert main([*argv, "--out", str(tmp_path / "b.csv"), "--threads", "3"]) == 0
    assert seen_threads == [1, 3]


def test_the_studios_predict_job_runs_on_the_engines_thread_count(tmp_path, seen_threads):
    _one_image(tmp_path)
    workspace = Workspace(tmp_path, state_dir=tmp_path / "state")
    version = workspace.import_model(DEMO_MODEL)
    ann = Annotations.from_arrays(["Images/skirt/s.jpg"], [3])
    runner = JobRunner(name="fkp-model")  # as the studio's model thread
    handle = runner.submit("predict", predict_job(workspace, version, tmp_path / "test.csv", ann))
    assert handle.wait(60) and handle.state is JobState.FINISHED, handle.error
    runner.shutdown()
    assert seen_threads == [1]


# Loads the OpenMP runtime torch ships (libgomp on Linux), as importing torch would, without the
# seconds torch's own import takes: what it prints at load is what it read from the environment.
LOAD_TORCHS_OPENMP = """
import ctypes, glob, importlib.util, os
lib = os.path.join(importlib.util.find_spec("torch").submodule_search_locations[0], "lib")
found = sorted(glob.glob(os.path.join(lib, "libgomp*.so*")))
print("libgomp" if found else "no libgomp")
if found:
    ctypes.CDLL(found[0])
"""


def _openmp_settings(entry: str) -> str:
    """What OpenMP says it read when a new process imports `entry`, then loads torch's OpenMP
    (no wait policy in its environment)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(OMP_DISPLAY_ENV="VERBOSE", QT_QPA_PLATFORM="offscreen")
    code = f"import sys, {entry}\nassert 'torch' not in sys.modules\n{LOAD_TORCHS_OPENMP}"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    if "no libgomp" in out.stdout or "GOMP_SPINCOUNT" not in out.stderr:
        pytest.skip("torch's OpenMP is not libgomp here: its settings are not displayed")
    return out.stderr


# `fkp` (its console script imports engine.cli; a command imports torch later) and the studio's
# process (its entry module; the model thread imports torch later).
@pytest.mark.parametrize("entry", ["engine.cli", "fkp_studio.app"])
def test_waiting_openmp_threads_sleep_in_fkp_and_the_studio(entry):
    settings = _openmp_settings(entry)
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in settings and "GOMP_SPINCOUNT = '0'" in settings
