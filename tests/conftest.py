"""Session fixtures shared by engine and studio tests (see trained_fixtures.py for the knobs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trained_fixtures import TEST_SEED, TEST_THREADS, built_once, train_tiny_model


def pytest_report_header(config) -> str:
    """Which kernels this run's arithmetic takes (`make test-kernels` runs the suite's float paths
    under other CPUs' sets)."""
    import torch

    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "the CPU's best")
    return (f"kernels: ATen {torch.backends.cpu.get_cpu_capability()}, oneDNN up to {isa}; "
            f"FKP_TEST_SEED={TEST_SEED}, FKP_TEST_THREADS={TEST_THREADS}")


@pytest.fixture(autouse=True)
def _torch_seed_and_threads():
    """Every test starts from the same torch state whatever ran before it (xdist reorders tests)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(TEST_THREADS)
    torch.manual_seed(TEST_SEED)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def loop_model(tmp_path_factory) -> tuple[Path, Path]:
    """(data root with Annotations/train.csv rich in hard cases, a tiny trained model package).

    Tests copy what they modify; the files here are shared by the whole session."""

    def build(base: Path) -> None:
        from engine.synth import generate_dataset

        generate_dataset(base / "data", 48, seed=201, split="train", size=96, categories="blouse,dress",
                         hard_fraction=0.5, workers=1)
        train_tiny_model(base / "data", base / "tiny.fkpmodel", 6, "--detector-steps", 200, "--detector-batch", 4,
                         "--detector-lr", 3e-3, "--eval-every", 200)

    base = built_once(tmp_path_factory, "loop_model", build)
    return base / "data", base / "tiny.fkpmodel"


@pytest.fixture
def workspace(loop_model, tmp_path):
    """A workspace over the loop model's data (its own state folder) with the tiny model active as v001."""
    from engine.io.workspace import Workspace
    from engine.jobs.model_jobs import ensure_active_model

    data, model = loop_model
    ws = Workspace(data, state_dir=tmp_path / "state")
    assert ensure_active_model(ws, model) == "v001"
    return ws


@pytest.fixture
def figure(record_property):
    """`figure(name, value)` records a trained test's figure in the JUnit report (`--junitxml`),
    where the margins of its assertions were measured over seeds and thread counts."""
    return lambda name, value: record_property(name, float(value))
