"""What a GPU must not break, checked on the CPU: the caller's model never moves or changes in a
retrain, a prediction batch that runs out of memory is run again in halves, a retrain that runs
out of memory fails with one line naming the phase, and cached GPU memory goes back after each job.

torch.cuda.OutOfMemoryError can be raised on a CPU, and channels-last stands in for "another
device": `prepare_model` on a device whose memory format is channels-last changes the strides
of the network it is given, in place, just as moving it to a GPU would change its device.
"""

from __future__ import annotations

import copy
import dataclasses
import sys

import numpy as np
import pytest
import torch

from engine.io.annotations import load_annotations
from engine.jobs.model_jobs import predict_job, retrain_job
from engine.jobs.runner import JobRunner, JobState
from engine.model.hourglass import KeypointNet
from engine.model.package import load_model
from engine.model.pipeline import Pipeline
from engine.model.visibility import VisibilityNet
from engine.synth import load_hard_kinds
from engine.training.retrain import RetrainConfig, choose_holdout, retrain

pytestmark = pytest.mark.float_paths  # its figures depend on the CPU's kernels: make test-kernels

CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB"


def _hard_ids(root) -> list[str]:
    return list(load_hard_kinds(root, "train"))[:4]


def _run(job_fn):
    events = []
    runner = JobRunner(events.append)
    handle = runner.submit("job", job_fn)
    assert handle.wait(300)
    runner.shutdown()
    return handle, events


def _watch(model) -> dict:
    """Everything a move or a change would alter: each tensor's object, storage, device, dtype,
    strides and values, and each module's training flag."""
    seen = {}
    nets = [("detector", model.detector), ("keypoints", model.keypoint_net)]
    nets += [("visibility", model.visibility)] if model.visibility is not None else []
    for net_name, net in nets:
        for name, t in [*net.named_parameters(), *net.named_buffers()]:
            seen[f"{net_name}.{name}"] = (id(t), t.data_ptr(), t.device, t.dtype, t.stride(), t.detach().clone())
        for name, m in net.named_modules():
            seen[f"{net_name}.{name}.training"] = m.training
    return seen


def _assert_same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key, was in before.items():
        now = after[key]
        if isinstance(was, bool):
            assert now == was, key
            continue
        assert now[:5] == was[:5], key
        assert torch.equal(now[5], was[5]), key


@pytest.mark.parametrize("boxes, detector_steps", [("annotated", 2), ("detector", 0)])
def test_retrain_never_moves_or_changes_the_callers_model(loop_model, monkeypatch, boxes, detector_steps):
    import engine.model.device as device_rules

    data, model_path = loop_model
    ann = load_annotations(data / "Annotations" / "train.csv")
    hard = _hard_ids(data)
    holdout = choose_holdout([str(i) for i in ann.image_ids], hard, 0.1, 4)
    # On this CPU, the "device" wants channels-last: preparing a network for it changes the network.
    monkeypatch.setattr(device_rules, "memory_format_for", lambda device: torch.channels_last)
    # With a visibility stage, which the retrained model keeps (as its own copy).
    model = dataclasses.replace(load_model(model_path), visibility=VisibilityNet())
    probe = copy.deepcopy(model.keypoint_net)
    strides = [p.stride() for p in probe.parameters()]
    assert device_rules.prepare_model(probe, torch.device("cpu")) is probe
    assert [p.stride() for p in probe.parameters()] != strides  # prepare_model would show, in place
    # A caller mid-training: a Pipeline that switched its networks to eval mode would show too.
    model.detector.train()
    model.keypoint_net.train()
    model.visibility.train()
    before = _watch(model)
    config = RetrainConfig(steps=3, batch_size=4, boxes=boxes, detector_steps=detector_steps, detector_batch_size=2,
                           distill_replay=True, seed=0)
    result = retrain(model, data, ann, hard, config, holdout_ids=holdout)
    _assert_same(before, _watch(model))
    # The result owns its networks (a model kept as it was is a copy, not the caller's).
    assert result.model.detector is not model.detector and result.model.keypoint_net is not model.keypoint_net
    assert isinstance(result.model.visibility, VisibilityNet) and result.model.visibility is not model.visibility
    assert not {id(t) for t in result.model.detector.parameters()} & {id(t) for t in model.detector.parameters()}
    # ...and they were prepared for the device: the retrain ran where (and as) the device wants.
    conv = next(p for p in result.model.keypoint_net.parameters() if p.dim() == 4 and p.shape[-1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert len(result.losses) == 3 and np.isfinite(result.after.hard)


def _crops_per_image(model_path) -> int:
    pipeline = Pipeline(load_model(model_path), device="cpu")
    return pipeline.num_crops * (2 if pipeline.flip_tta else 1)


def test_a_prediction_batch_that_runs_out_of_memory_is_predicted_again_in_halves(workspace, loop_model,
                                                                                   monkeypatch):
    data, model_path = loop_model
    csv = data / "Annotations" / "train.csv"
    ann = load_annotations(csv)
    rows = np.arange(7)
    handle, events = _run(predict_job(workspace, "v001", csv, ann, rows=rows, batch_size=8))
    assert handle.state is JobState.FINISHED, handle.error
    expected = np.concatenate([e.payload.coords for e in events if e.kind == "partial"])

    # The GPU holds the crops of two images at most; more raise what CUDA raises.
    limit = 2 * _crops_per_image(model_path)
    forward, ran = KeypointNet.forward, []

    def short_of_memory(self, x):
        if x.shape[0] > limit:
            raise torch.cuda.OutOfMemoryError(CUDA_OOM)
        ran.append(x.shape[0])
        return forward(self, x)

    released = []
    monkeypatch.setattr(KeypointNet, "forward", short_of_memory)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: released.append(1))
    handle, events = _run(predict_job(workspace, "v001", csv, ann, rows=rows, batch_size=8))
    assert handle.state is JobState.FINISHED, handle.error
    parts = [e.payload for e in events if e.kind == "partial"]
    # 7 images did not fit, nor 4; 2 did, and the run kept 2 to the end.
    assert [len(p.rows) for p in parts] == [2, 2, 2, 1] and handle.result["batch_size"] == 2
    assert np.concatenate([p.rows for p in parts]).tolist() == rows.tolist()
    assert handle.result["predicted"] == 7 and handle.result["errors"] == {}
    assert max(ran) <= limit
    np.testing.assert_allclose(np.concatenate([p.coords for p in parts]), expected, atol=1.01)
    assert workspace.load_predictions("v001", csv)[0].coords.shape[0] == 7
    # The cache went back after each failed try (two) and after the job.
    assert len(released) == 3


def test_fkp_predict_halves_a_batch_that_runs_out_of_memory_and_writes_every_image(loop_model, tmp_path,
                                                                                    monkeypatch):
    from engine.cli import main

    data, model_path = loop_model
    predict = ["predict", "--model", str(model_path), "--data", str(data), "--split", "train", "--limit", "7",
               "--batch-size", "8", "--threads", "1"]
    assert main([*predict, "--out", str(tmp_path / "plain.csv")]) == 0
    limit = 2 * _crops_per_image(model_path)
    forward = KeypointNet.forward

    def short_of_memory(self, x):
        if x.shape[0] > limit:
            raise torch.cuda.OutOfMemoryError(CUDA_OOM)
        return forward(self, x)

    monkeypatch.setattr(KeypointNet, "forward", short_of_memory)
    assert main([*predict, "--out", str(tmp_path / "halved.csv")]) == 0
    plain, halved = load_annotations(tmp_path / "plain.csv"), load_annotations(tmp_path / "halved.csv")
    assert halved.image_ids.tolist() == plain.image_ids.tolist() and len(halved) == 7
    np.testing.assert_allclose(halved.coords, plain.coords, atol=1.01)


def test_an_image_that_does_not_fit_even_alone_gets_its_own_error(workspace, loop_model, monkeypatch):
    data, _ = loop_model
    csv = data / "Annotations" / "train.csv"
    ann = load_annotations(csv)

    def never_fits(self, x):
        raise torch.cuda.OutOfMemoryError(CUDA_OOM)

    monkeypatch.setattr(KeypointNet, "forward", never_fits)
    handle, events = _run(predict_job(workspace, "v001", csv, ann, rows=np.arange(3), batch_size=2))
    assert handle.state is JobState.FINISHED, handle.error
    ids = [str(i) for i in ann.image_ids[:3]]
    assert handle.result["predicted"] == 3 and handle.result["batch_size"] == 1
    assert handle.result["errors"] == {i: f"{i}: out of GPU memory even alone: try the CPU" for i in ids}
    pred, scores = workspace.load_predictions("v001", csv)
    assert list(pred.image_ids) == ids and (pred.coords == -1).all() and (scores == -1).all()


def test_an_error_that_is_not_memory_is_not_retried(workspace, loop_model, monkeypatch):
    data, _ = loop_model
    csv = data / "Annotations" / "train.csv"
    calls = []

    def broken(self, x):
        calls.append(x.shape[0])
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(KeypointNet, "forward", broken)
    handle, _ = _run(predict_job(workspace, "v001", csv, load_annotations(csv), rows=np.arange(4), batch_size=4))
    assert handle.state is JobState.FAILED and "illegal memory access" in handle.error
    assert len(calls) == 1


@pytest.mark.parametrize("where, phase", [
    ("distill_targets", "distilling the replay targets (step 1 of 3)"),
    ("detector_step", "detector fine-tuning (step 1 of 2)"),
])
def test_a_retrain_out_of_gpu_memory_fails_in_one_line_naming_the_phase(workspace, loop_model, monkeypatch,
                                                                        where, phase):
    import engine.training.retrain as retrain_module

    data, _ = loop_model
    ann = load_annotations(data / "Annotations" / "train.csv")

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError(CUDA_OOM)

    monkeypatch.setattr(retrain_module, where, out_of_memory)
    config = RetrainConfig(steps=3, batch_size=4, boxes="annotated", detector_steps=2, detector_batch_size=2,
                           distill_replay=True, max_holdout=4)
    handle, events = _run(retrain_job(workspace, ann, _hard_ids(data), config))
    message = f"out of GPU memory during {phase}: try a smaller batch or the CPU"
    assert handle.state is JobState.FAILED and handle.error == message
    assert events[-1].kind == "failed" and events[-1].payload == message
    assert workspace.model_versions() == ["v001"] and workspace.load_holdout() is None


def test_cached_gpu_memory_goes_back_after_each_job_only_once_cuda_is_up(monkeypatch):
    order = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: order.append("release"))

    def run_two(release: bool = True):
        runner = JobRunner(lambda ev: order.append(ev.kind) if ev.kind in ("finished", "failed") else None,
                           release_gpu_memory=release)
        runner.submit("ok", lambda ctx: order.append("job"))
        failing = runner.submit("fails", lambda ctx: (order.append("job"), 1 / 0))
        assert failing.wait(5)
        runner.shutdown()

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    run_two()
    assert order == ["job", "finished", "job", "failed"]  # CUDA never started: nothing to release
    order.clear()
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    run_two()
    assert order == ["job", "release", "finished", "job", "release", "failed"]
    # A runner whose jobs never use the GPU (the studio's io thread) leaves the cache to the model thread.
    order.clear()
    run_two(release=False)
    assert order == ["job", "finished", "job", "failed"]
    # Without torch loaded the runner neither imports it nor asks CUDA anything.
    order.clear()
    monkeypatch.delitem(sys.modules, "torch")
    run_two()
    assert order == ["job", "finished", "job", "failed"] and "torch" not in sys.modules
