import pickle

import pytest
import torch

from engine.model.checkpoints import (
    KEYPOINT_FORMAT, CheckpointError, keypoint_checkpoint, load_checkpoint, load_keypoint_net, save_checkpoint,
)
from engine.model.hourglass import KeypointNet
from engine.model.presets import NetConfig, get_preset

TINY = NetConfig(blocks=(1, 1, 1, 1), widths=((16, 8), (24, 8), (32, 8), (32, 8)), stem_channels=8,
                 decoder_channels=16, num_stages=2, refine_widths=((16, 8), (32, 8), (32, 8)), refine_blocks=(1, 1, 1))


@pytest.fixture
def saved(tmp_path):
    preset = get_preset("lite").with_(net=TINY, input_size=64, radius=6.0)
    net = KeypointNet(TINY)
    path = tmp_path / "kp.pt"
    save_checkpoint(path, keypoint_checkpoint(net, preset, epoch=3, history=[{"epoch": 3, "val_ne": 0.1}]))
    return path, net, preset


def test_keypoint_checkpoint_round_trip(saved):
    path, net, preset = saved
    model, p2, ckpt = load_keypoint_net(path)
    assert p2 == preset and ckpt["epoch"] == 3 and ckpt["history"][0]["val_ne"] == 0.1
    x = torch.randn(1, 3, 64, 64)
    net.eval()
    assert torch.allclose(model(x)[-1], net(x)[-1])
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left no temporary behind


def test_truncated_corrupt_empty_and_missing_files_raise_checkpoint_error(saved, tmp_path):
    path, _, _ = saved
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"this is not a checkpoint" * 10)
    (tmp_path / "empty.pt").write_bytes(b"")
    for name, why in [("trunc.pt", "corrupt or truncated"), ("junk.pt", "corrupt or truncated checkpoint, or a foreign file"),
                      ("empty.pt", "empty"), ("missing.pt", "not found")]:
        with pytest.raises(CheckpointError, match=why) as e:
            load_checkpoint(tmp_path / name)
        assert name in str(e.value)


class Foreign:
    pass


def test_foreign_and_unsafe_files_are_refused(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an FKP checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"format": "fkp-detector/1"}, tmp_path / "det.pt")
    with pytest.raises(CheckpointError, match="expected"):
        load_checkpoint(tmp_path / "det.pt", KEYPOINT_FORMAT)
    torch.save({"format": KEYPOINT_FORMAT, "obj": Foreign()}, tmp_path / "unsafe.pt")  # arbitrary pickled class
    with pytest.raises(CheckpointError, match="refused") as e:
        load_checkpoint(tmp_path / "unsafe.pt")
    assert "weights_only=False" not in str(e.value)  # never advise the unsafe load
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"format": KEYPOINT_FORMAT}, f)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "plain.pkl")
