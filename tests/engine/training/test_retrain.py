"""Retraining on hard samples: the engine side of the hard-example loop (tiny model, tiny data)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from trained_fixtures import TEST_SEED  # the suite's seed
from engine.io.annotations import load_annotations
from engine.cli import main
from engine.jobs.runner import JobRunner, JobState
from engine.jobs.model_jobs import ensure_active_model, evaluate_job, predict_job, retrain_job
from engine.analysis.ne import normalized_errors, per_image_ne
from engine.model.package import load_model
from engine.training.retrain import (
    RetrainConfig, RetrainError, choose_holdout, distill_targets, fine_tune_detector, mixed_batches, retrain,
)
from engine.synth import load_hard_kinds
from engine.io.workspace import Workspace

pytestmark = pytest.mark.float_paths  # its figures depend on the CPU's kernels: make test-kernels

FAST = RetrainConfig(steps=200, lr=3e-3, batch_size=8, boxes="annotated", detector_steps=10, seed=TEST_SEED)


def _hard_ids(root) -> list[str]:
    return list(load_hard_kinds(root, "train"))[:10]


def _run(job_fn, cancel_after_partials: int | None = None):
    events = []
    runner_box = {}

    def on_event(ev):
        events.append(ev)
        if cancel_after_partials is not None and ev.kind == "partial":
            if sum(e.kind == "partial" for e in events) >= cancel_after_partials:
                runner_box["handle"].cancel()

    runner = JobRunner(on_event)
    runner_box["handle"] = handle = runner.submit("job", job_fn)
    assert handle.wait(300)
    runner.shutdown()
    return handle, events


def test_holdout_is_deterministic_excludes_the_hard_set_and_ignores_order():
    ids = [f"Images/blouse/{i:03d}.jpg" for i in range(200)]
    hard = ids[:30]
    a = choose_holdout(ids, hard, 0.1, 100)
    b = choose_holdout(ids[::-1], hard, 0.1, 100)
    assert a == b and len(a) == 17 and not set(a) & set(hard)
    # A larger data set keeps most earlier choices: hash order does not depend on the others.
    more = choose_holdout(ids + [f"Images/dress/{i:03d}.jpg" for i in range(200)], hard, 0.1, 100)
    assert len(set(a) & set(more)) >= 10
    assert len(choose_holdout(ids, hard, 0.5, 20)) == 20


def test_mixed_batches_oversample_the_hard_set_evenly():
    b = mixed_batches(n_hard=3, n_replay=50, batch_size=8, hard_share=0.5, steps=30, seed=0)
    assert b.shape == (30, 8)
    hard = b[:, :4]
    assert (hard < 3).all() and (b[:, 4:] >= 3).all()
    counts = np.bincount(hard.ravel(), minlength=3)
    assert counts.max() - counts.min() <= 1          # every hard image equally often
    assert len(np.unique(b[:, 4:])) > 40              # the replay covers the other images
    with pytest.raises(RetrainError, match="hard set has no usable image"):
        mixed_batches(0, 10, 8, 0.5, 5, 0)


def test_retrain_lowers_hard_set_ne_and_never_trains_on_held_out_images(loop_model, figure):
    """Hard-set NE after / before: 0.34-0.87 over FKP_TEST_SEED 0-4 x 1-2 threads; 0.40-0.88 with
    FKP_TEST_SEED 0-1 x default, SSE41 and AVX2 kernels (the assertion: below 0.95)."""
    data, model_path = loop_model
    ann = load_annotations(data / "Annotations" / "train.csv")
    hard = _hard_ids(data)
    model = load_model(model_path)
    before_weights = {k: v.clone() for k, v in model.keypoint_net.state_dict().items()}
    steps = []
    result = retrain(model, data, ann, hard, FAST, on_step=lambda s, n, loss: steps.append((s, n, loss)))
    assert [s for s, _, _ in steps] == list(range(1, FAST.steps + 1))
    figure("hard_ratio", result.after.hard / result.before.hard)
    assert result.after.hard < 0.95 * result.before.hard, (result.before.hard, result.after.hard)
    assert np.isfinite(result.after.overall) and set(result.after.per_category) == {"blouse", "dress"}
    assert not set(result.holdout_ids) & set(result.hard_ids)
    assert len(result.holdout_ids) + len(result.hard_ids) + result.replay_images == len(ann)
    # The model passed in is untouched.
    for k, v in model.keypoint_net.state_dict().items():
        assert (v == before_weights[k]).all()


def test_retrain_job_adds_an_inactive_version_and_keeps_the_holdout(workspace, loop_model):
    """The job's side of a retrain (that a retrain lowers the hard-set NE is the test above)."""
    data, _ = loop_model
    ann = load_annotations(data / "Annotations" / "train.csv")
    short = dataclasses.replace(FAST, steps=20, detector_steps=2)
    handle, events = _run(retrain_job(workspace, ann, _hard_ids(data), short))
    assert handle.state is JobState.FINISHED, handle.error
    assert handle.result["version"] == "v002" and handle.result["base_version"] == "v001"
    assert workspace.model_versions() == ["v001", "v002"] and workspace.active_model_version() == "v001"
    losses = [e.payload["loss"] for e in events if e.kind == "partial"]
    assert len(losses) == short.steps and all(np.isfinite(losses))
    meta = load_model(workspace.model_path("v002")).metadata
    report = handle.result["report"]
    assert meta["retrain"]["parent"] == "v001" and meta["retrain"]["steps"] == 20
    assert meta["retrain"]["before"] == report["before"] and meta["retrain"]["after"] == report["after"]
    assert np.isfinite(meta["retrain"]["after"]["hard"])
    holdout = workspace.load_holdout()
    assert holdout and not set(holdout) & set(_hard_ids(data))
    workspace.set_active_model("v002")
    assert workspace.active_model_version() == "v002"
    # A second retrain (from v002, with more hard images) keeps the same held-out images.
    second = RetrainConfig(steps=3, batch_size=4, boxes="annotated", detector_steps=0)
    handle, _ = _run(retrain_job(workspace, ann, _hard_ids(data)[:4], second))
    assert handle.state is JobState.FINISHED and handle.result["base_version"] == "v002"
    assert workspace.load_holdout() == holdout and handle.result["report"]["holdout_images"] == len(holdout)


def _state_files(ws: Workspace) -> dict[str, bytes]:
    return {str(p.relative_to(ws.state_dir)): p.read_bytes() for p in sorted(ws.state_dir.rglob("*")) if p.is_file()}


def test_cancel_mid_retrain_keeps_the_old_model(workspace, loop_model):
    data, _ = loop_model
    ann = load_annotations(data / "Annotations" / "train.csv")
    workspace.save_holdout(choose_holdout(list(ann.image_ids), _hard_ids(data), 0.1, 50))
    files = _state_files(workspace)
    handle, events = _run(retrain_job(workspace, ann, _hard_ids(data), FAST), cancel_after_partials=3)
    assert handle.state is JobState.CANCELLED
    assert sum(e.kind == "partial" for e in events) < FAST.steps
    assert workspace.model_versions() == ["v001"] and workspace.active_model_version() == "v001"
    assert _state_files(workspace) == files


def test_nan_loss_fails_clearly_and_leaves_the_workspace_intact(workspace, loop_model, tmp_path):
    data, model_path = loop_model
    broken = load_model(model_path)
    for p in broken.keypoint_net.parameters():
        p.data.fill_(float("nan"))
    from engine.model.package import save_model

    save_model(tmp_path / "nan.fkpmodel", broken.preset, broken.detector, broken.detector_config, broken.keypoint_net)
    version = workspace.import_model(tmp_path / "nan.fkpmodel")
    workspace.set_active_model(version)
    files = _state_files(workspace)
    ann = load_annotations(data / "Annotations" / "train.csv")
    handle, events = _run(retrain_job(workspace, ann, _hard_ids(data), RetrainConfig(steps=5, boxes="annotated")))
    assert handle.state is JobState.FAILED
    assert "loss became nan at step 1" in handle.error
    assert events[-1].kind == "failed" and "loss became nan" in events[-1].payload
    assert workspace.model_versions() == ["v001", "v002"] and workspace.active_model_version() == version
    assert _state_files(workspace) == files
    assert not [p for p in workspace.models_dir.iterdir() if p.name.startswith(".")]


def test_broken_hard_image_fails_naming_the_file(loop_model, tmp_path):
    data, model_path = loop_model
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    hard = _hard_ids(copy)
    (copy / hard[2]).write_bytes(b"not a jpeg")
    ws = Workspace(copy, state_dir=tmp_path / "state")
    ensure_active_model(ws, model_path)
    files = _state_files(ws)
    ann = load_annotations(copy / "Annotations" / "train.csv")
    handle, _ = _run(retrain_job(ws, ann, hard, RetrainConfig(steps=5, boxes="annotated")))
    assert handle.state is JobState.FAILED and hard[2].split("/")[-1] in handle.error
    assert ws.model_versions() == ["v001"] and _state_files(ws) == files


def test_predict_job_sends_what_it_saves_and_merges_a_selection(workspace, loop_model):
    data, _ = loop_model
    csv = data / "Annotations" / "train.csv"
    ann = load_annotations(csv)
    handle, events = _run(predict_job(workspace, "v001", csv, ann, rows=np.arange(20), batch_size=8))
    assert handle.state is JobState.FINISHED, handle.error
    parts = [e.payload for e in events if e.kind == "partial"]
    assert [len(p.rows) for p in parts] == [8, 8, 4]
    assert np.concatenate([p.rows for p in parts]).tolist() == list(range(20))
    pred, scores = workspace.load_predictions("v001", csv)
    assert list(pred.image_ids) == [str(i) for i in ann.image_ids[:20]] and scores.shape == (20, 24)
    # The partials are what the files hold: the same whole pixels and the same confidences.
    np.testing.assert_array_equal(np.concatenate([p.coords for p in parts]), pred.coords)
    np.testing.assert_array_equal(np.concatenate([p.scores for p in parts]), scores)
    # Predicting a selection replaces those rows and adds the new ones, in file order.
    handle, events = _run(predict_job(workspace, "v001", csv, ann, rows=np.array([30, 5]), batch_size=8))
    (part,) = [e.payload for e in events if e.kind == "partial"]
    pred2, _ = workspace.load_predictions("v001", csv)
    assert list(pred2.image_ids) == [str(i) for i in ann.image_ids[:20]] + [str(ann.image_ids[30])]
    np.testing.assert_allclose(pred2.coords[5], pred.coords[5], atol=1.01)
    handle, _ = _run(evaluate_job(workspace, "v001", csv, ann, hard_ids=[str(ann.image_ids[5])]))
    assert handle.state is JobState.FINISHED and handle.result["images"] == 21
    # The NE of the fresh prediction is the NE of the saved one.
    fresh5 = normalized_errors(ann.coords[5:6], ann.visibility[5:6], ann.categories[5:6].astype(np.int64),
                               part.coords[1:2], part.visibility[1:2]).errors
    assert handle.result["hard"] == pytest.approx(per_image_ne(fresh5)[0], abs=1e-9)


def test_workspace_versions_hard_set_and_refusals(tmp_path, loop_model):
    _, model_path = loop_model
    ws = Workspace(tmp_path / "root", state_dir=tmp_path / "state")
    assert ws.model_versions() == [] and ws.active_model_version() is None
    assert ws.import_model(model_path) == "v001" and ws.import_model(model_path) == "v001", "imported once"
    shutil.copyfile(model_path, tmp_path / "other.fkpmodel")
    assert ws.import_model(tmp_path / "other.fkpmodel") == "v002"
    with pytest.raises(FileNotFoundError):
        ws.set_active_model("v003")
    with pytest.raises(ValueError, match="not a model version"):
        ws.model_path("../x")
    ws.set_active_model("v002")
    with pytest.raises(ValueError, match="active model"):
        ws.remove_model_version("v002")
    ws.remove_model_version("v001")
    assert ws.model_versions() == ["v002"]
    with pytest.raises(RuntimeError):
        ws.add_model_version(lambda d: (_ for _ in ()).throw(RuntimeError("disk full")))
    assert sorted(p.name for p in ws.models_dir.iterdir()) == ["active", "v002"]  # no half-written version
    entries = {"Images/a,b.jpg": "manual", "Images/c.jpg": "corrected", "Images/d.jpg": "removed"}
    ws.save_hard_set(entries)
    assert ws.load_hard_set() == entries
    ws.hard_set_path.write_text("image_id,reason\nImages/x.jpg,because\n")
    with pytest.raises(ValueError, match=r"hard_set\.csv, row 2"):
        ws.load_hard_set()


def test_cli_retrain_writes_a_package_and_reports(loop_model, tmp_path, capsys):
    data, model_path = loop_model
    hard = tmp_path / "hard.txt"
    hard.write_text("\n".join(_hard_ids(data)) + "\n")
    out = tmp_path / "retrained.fkpmodel"
    holdout = tmp_path / "holdout.txt"
    code = main(["retrain", "--model", str(model_path), "--data", str(data), "--hard", str(hard), "--out", str(out),
                 "--steps", "20", "--detector-steps", "5", "--boxes", "annotated", "--holdout", str(holdout),
                 "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["steps"] == 20 and report["hard_images"] == 10 and holdout.is_file()
    assert report["detector_steps"] == 5
    assert load_model(out).metadata["retrain"]["holdout_images"] == report["holdout_images"]
    assert main(["retrain", "--model", str(tmp_path / "none.fkpmodel"), "--data", str(data), "--hard", str(hard),
                 "--out", str(out)]) == 2


def test_fine_tuned_detector_keeps_finding_the_hard_set_and_leaves_the_original(loop_model, figure):
    """Fine-tuned on the hard set, the detector's boxes of it move within noise for this tiny,
    briefly trained detector: the best of its top 10 boxes gained 0.018-0.175 of mean IoU over
    FKP_TEST_SEED 0-4 x 1-2 threads, but -0.024 to +0.117 over FKP_TEST_SEED 0-2 x default, SSE41
    and AVX2 kernels (AVX2 at seed 1 lost 0.024); the fused top box moved by -0.054 to +0.126.
    So neither is asserted to rise: both are recorded, and asserted not to fall by 0.1, which a
    fine-tune that breaks the detector (a diverging learning rate) exceeds many times over.
    The network given stays as it was."""
    import torch

    from engine.training.detector import detector_samples, evaluate_detector

    data, model_path = loop_model
    model = load_model(model_path)
    ann = load_annotations(data / "Annotations" / "train.csv")
    hard_ids = set(_hard_ids(data))
    is_hard = np.array([str(i) in hard_ids for i in ann.image_ids])
    hard = detector_samples(data, ann.subset(np.flatnonzero(is_hard)), model.detector_config)
    replay = detector_samples(data, ann.subset(np.flatnonzero(~is_hard)), model.detector_config)
    original = {k: v.clone() for k, v in model.detector.state_dict().items()}
    before = evaluate_detector(model.detector, hard)
    config = RetrainConfig(detector_steps=80, detector_batch_size=4, seed=TEST_SEED)
    detector, losses = fine_tune_detector(model.detector, hard, replay, config, torch.device("cpu"))
    after = evaluate_detector(detector, hard)
    candidate_gain, fused_gain = (after[k] - before[k] for k in ("candidate_iou", "mean_iou"))
    figure("candidate_iou_gain", candidate_gain), figure("iou_gain", fused_gain)
    assert len(losses) == 80 and np.isfinite(losses).all()
    assert candidate_gain > -0.1 and fused_gain > -0.1, (candidate_gain, fused_gain)
    for k, v in model.detector.state_dict().items():
        assert torch.equal(v, original[k])


def test_detector_fine_tuning_repeats_exactly_whatever_ran_before(loop_model):
    import torch

    from engine.training.detector import detector_samples

    data, model_path = loop_model
    model = load_model(model_path)
    ann = load_annotations(data / "Annotations" / "train.csv")
    samples = detector_samples(data, ann, model.detector_config)
    config = RetrainConfig(detector_steps=3, detector_lr=1e-3, detector_batch_size=4, seed=5)
    first, _ = fine_tune_detector(model.detector, samples, None, config, torch.device("cpu"))
    torch.rand(1000)  # other work moves torch's global generator on between the two
    state = torch.random.get_rng_state()
    second, _ = fine_tune_detector(model.detector, samples, None, config, torch.device("cpu"))
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's stream is left alone
    for (k, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), k


def test_distilled_replay_rows_pull_nowhere_at_the_start_and_hard_rows_keep_their_annotations(loop_model):
    import torch
    from torch.utils.data import DataLoader

    from engine.training.dataset import KeypointCropDataset, device_batch
    from engine.model.targets import instance_losses

    data, model_path = loop_model
    model = load_model(model_path)
    ann = load_annotations(data / "Annotations" / "train.csv")
    batch = next(iter(DataLoader(KeypointCropDataset(data, ann.subset(np.arange(4)), model.preset), batch_size=4)))
    batch = device_batch(batch, model.preset, torch.device("cpu"))  # network input and targets
    net = model.keypoint_net.eval()
    replay = torch.tensor([False, False, True, True])
    new = distill_targets(batch, net, replay, torch.device("cpu"))
    assert torch.equal(new["heat"][:2], batch["heat"][:2]) and torch.equal(new["offsets"][:2], batch["offsets"][:2])
    assert not torch.equal(new["heat"][2:], batch["heat"][2:])
    out = net(batch["image"])[-1].detach().requires_grad_(True)
    p = model.preset
    per = instance_losses(out, new["heat"], new["offsets"], p.radius, p.stride, p.offset_weight)
    (per * new["valid"]).sum().backward()
    grad = out.grad.abs().flatten(1).amax(dim=1)
    assert (grad[2:] < 1e-5).all() and (grad[:2] > 1e-3).all(), grad
