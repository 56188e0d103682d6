"""Precision choices: bf16 only where the chosen GPU has it natively; the detector's boxes in fp32."""

import pytest
import torch
from torchvision.models.detection import FasterRCNN

from engine.model.detector import DetectorConfig, build_detector
from engine.model.device import amp_dtype, describe_device, native_bf16, needs_grad_scaler


@pytest.fixture
def gpus(monkeypatch):
    """Two fake GPUs: 0 a V100 (7.0, bf16 only emulated), 1 an A100 (8.0); the current one is 0."""
    capability = {0: (7, 0), 1: (8, 0)}
    current = {"index": 0}
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        # torch's answer for the *current* device: yes for a V100 when emulation counts
        return including_emulation or capability[current["index"]] >= (8, 0)

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: capability[d if isinstance(d, int) else 0])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current["index"])
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    return current, asked


def test_an_emulating_gpu_gets_fp16_with_a_grad_scaler(gpus):
    _, asked = gpus
    v100 = torch.device("cuda", 0)
    assert amp_dtype(v100) == torch.float16 and needs_grad_scaler(v100)
    assert not native_bf16(torch.device("cuda"))
    assert all(flag is False for flag in asked)  # emulation is never counted


def test_the_chosen_device_decides_not_the_current_one(gpus):
    current, _ = gpus
    a100 = torch.device("cuda", 1)
    assert amp_dtype(a100) == torch.bfloat16 and not needs_grad_scaler(a100)  # current is the V100
    current["index"] = 1
    assert amp_dtype(torch.device("cuda")) == torch.bfloat16
    assert amp_dtype(torch.device("cuda", 0)) == torch.float16  # current is the A100


def test_the_cpu_runs_in_full_precision():
    cpu = torch.device("cpu")
    assert amp_dtype(cpu) is None and not needs_grad_scaler(cpu) and not native_bf16(cpu)
    assert describe_device(cpu).startswith("CPU")


def _share_on_2px_grid(outputs, lo=256.0, hi=511.0) -> tuple[int, float]:
    """How many box coordinates lie in (lo, hi), and the share of them that are multiples of 2."""
    b = torch.cat([o["boxes"].reshape(-1) for o in outputs]).float()
    b = b[(b > lo) & (b < hi)]
    return len(b), float((torch.remainder(b, 2) == 0).float().mean())


def test_under_bf16_autocast_only_the_backbone_runs_in_bf16_and_boxes_keep_their_precision():
    torch.manual_seed(0)
    config = DetectorConfig(backbone="mobilenet_v3_large", min_size=512, max_size=768, fpn_channels=64, box_head_dim=128)
    detector = build_detector(config).eval()
    images = [torch.rand(3, 512, 768)]      # already at the detector's scale: boxes are its own coordinates
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fixed = detector(images)
        plain = FasterRCNN.forward(detector, images)   # torchvision's forward: everything in bf16
    n, share = _share_on_2px_grid(plain)
    assert n >= 4 and share == 1.0 and plain[0]["boxes"].dtype == torch.bfloat16  # the bug, as it was
    n, share = _share_on_2px_grid(fixed)
    assert n >= 4 and share < 0.5 and fixed[0]["boxes"].dtype == torch.float32
    # the state dict is a plain Faster R-CNN's (packages written before load unchanged)
    assert set(detector.state_dict()) == set(FasterRCNN.state_dict(detector))
