"""A retrain on reviewed images of a new domain ("adapt" mode): its settings, the BatchNorm
statistics estimated again on the images trained on, and `fkp retrain --mode adapt`."""

from __future__ import annotations

import pytest
import torch

from engine.cli import main
from engine.model.package import load_model
from engine.synth import load_hard_kinds
from engine.training.retrain import RetrainConfig, reestimate_batchnorm

pytestmark = pytest.mark.float_paths  # its figures depend on the CPU's kernels: make test-kernels


def test_adapt_mode_replays_more_and_trains_longer_the_more_images_were_reviewed():
    hard, adapt = RetrainConfig(), RetrainConfig.adapt()
    assert hard.mode == "hard" and adapt.mode == "adapt" and not hard.reestimate_batchnorm
    # The searched recipe (issue 31): most of each batch replays the old domain, distilled; the steps
    # grow with the reviewed images; the hard mode's steps stay what they are.
    assert adapt.hard_share < hard.hard_share and adapt.distill_replay and adapt.freeze_batchnorm
    assert adapt.steps_for(10) == adapt.steps < adapt.steps_for(200) < adapt.steps_for(10_000) == adapt.max_steps
    assert hard.steps_for(10_000) == hard.steps and not adapt.self_training
    assert RetrainConfig.adapt(steps=7).steps == 7 and RetrainConfig.for_mode("adapt", lr=0.01).lr == 0.01
    assert RetrainConfig.for_mode("hard") == hard
    with pytest.raises(ValueError, match="mode must be one of hard, adapt"):
        RetrainConfig.for_mode("domain")
    with pytest.raises(ValueError, match="batchnorm_images"):
        RetrainConfig(batchnorm_images="all").check()


class _Crops(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i]}


def test_reestimated_batchnorm_statistics_are_those_of_the_data_and_the_weights_stay():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    net[1].running_mean.fill_(5.0)   # statistics of another domain
    net[1].running_var.fill_(9.0)
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    images = torch.randn(24, 3, 10, 10) * 2 + 1
    seen = reestimate_batchnorm(net, _Crops(images), torch.device("cpu"), batch_size=8, max_batches=10)
    assert seen == 24 and not net.training and net[1].momentum == 0.1
    with torch.no_grad():
        features = net[0](images)
    # Equal batches: the average of the batch means is the mean over every crop.
    torch.testing.assert_close(net[1].running_mean, features.mean(dim=(0, 2, 3)), atol=1e-4, rtol=1e-4)
    # The variance: an average of (shuffled) batch variances, close to the variance over every crop,
    # far from the 9 it was.
    torch.testing.assert_close(net[1].running_var, features.var(dim=(0, 2, 3)), atol=0.0, rtol=0.05)
    for k, v in weights.items():
        assert torch.equal(net.state_dict()[k], v), k
    # At most max_batches batches are seen.
    assert reestimate_batchnorm(net, _Crops(images), torch.device("cpu"), batch_size=8, max_batches=1) == 8


def _batchnorm_means(path) -> list[torch.Tensor]:
    net = load_model(path).keypoint_net
    return [m.running_mean.clone() for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def test_fkp_retrain_mode_adapt_and_batchnorm_statistics_estimated_again(loop_model, tmp_path):
    data, model_path = loop_model
    reviewed = tmp_path / "reviewed.txt"
    reviewed.write_text("\n".join(list(load_hard_kinds(data, "train"))[:8]) + "\n")
    common = ["--model", str(model_path), "--data", str(data), "--hard", str(reviewed), "--steps", "2",
              "--detector-steps", "0", "--boxes", "annotated", "--threads", "1"]
    assert main(["retrain", *common, "--out", str(tmp_path / "hard.fkpmodel")]) == 0
    assert main(["retrain", *common, "--mode", "adapt", "--reestimate-batchnorm",
                 "--out", str(tmp_path / "adapt.fkpmodel")]) == 0
    before = _batchnorm_means(model_path)
    frozen, adapted = _batchnorm_means(tmp_path / "hard.fkpmodel"), _batchnorm_means(tmp_path / "adapt.fkpmodel")
    assert all(torch.equal(a, b) for a, b in zip(before, frozen))  # hard mode: BatchNorm frozen
    assert sum(not torch.allclose(a, b) for a, b in zip(before, adapted)) > len(before) // 2
    with pytest.raises(SystemExit) as refused:
        main(["retrain", *common, "--mode", "domain", "--out", str(tmp_path / "x.fkpmodel")])
    assert refused.value.code == 2
