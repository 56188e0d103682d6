import pytest
import torch
import torchvision

from engine.model.hourglass import (
    EncoderWeightsError, KeypointNet, count_flops, count_parameters, load_encoder_weights, split_output,
)
from engine.model.presets import PRESETS, SEED_WIDTHS, TORCHVISION_WIDTHS, NetConfig

TINY = NetConfig(blocks=(1, 1, 1, 1), widths=((16, 8), (24, 8), (32, 8), (32, 8)), stem_channels=8,
                 decoder_channels=16, num_stages=3, refine_widths=((16, 8), (32, 8), (32, 8)), refine_blocks=(1, 1, 1))


def test_every_stage_outputs_72_channels_at_a_quarter_of_the_input():
    net = KeypointNet(TINY)
    outs = net(torch.randn(2, 3, 64, 96))
    assert len(outs) == 3
    assert all(o.shape == (2, 72, 16, 24) for o in outs)
    heat, off = split_output(outs[-1])
    assert heat.shape == (2, 24, 16, 24) and off.shape == (2, 24, 2, 16, 24)
    assert torch.equal(off[:, 5, 1], outs[-1][:, 24 + 2 * 5 + 1])  # layout: K heatmaps, then (dx, dy) pairs
    # The heatmap bias starts near the positive rate, far from 0.5.
    assert float(torch.sigmoid(heat.detach()).mean()) < 0.1


def test_seed_encoder_keeps_64_32_32_32_for_a_256_crop():
    cfg = NetConfig(blocks=(1, 1, 1, 1), widths=SEED_WIDTHS, num_stages=1)
    net = KeypointNet(cfg)
    sizes = {}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        getattr(net.encoder, name).register_forward_hook(lambda m, i, o, n=name: sizes.__setitem__(n, tuple(o.shape[1:])))
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, 3, 256, 256))
    assert sizes == {"layer1": (256, 64, 64), "layer2": (256, 32, 32), "layer3": (512, 32, 32), "layer4": (512, 32, 32)}


def test_presets_grow_in_cost_lite_fast_accurate():
    cost = {n: (count_parameters(KeypointNet(p.net)), count_flops(KeypointNet(p.net), p.input_size)) for n, p in PRESETS.items()}
    assert cost["lite"][0] < cost["fast"][0] < cost["accurate"][0]
    assert cost["lite"][1] < cost["fast"][1] < cost["accurate"][1]
    assert PRESETS["accurate"].net.blocks == (3, 4, 23, 3) and PRESETS["fast"].net.blocks == (3, 4, 6, 3)


def test_torchvision_width_variant_loads_local_imagenet_style_weights(tmp_path):
    ref = torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [1, 1, 1, 1])
    path = tmp_path / "resnet.pth"
    torch.save(ref.state_dict(), path)
    cfg = NetConfig(blocks=(1, 1, 1, 1), widths=TORCHVISION_WIDTHS, num_stages=1, decoder_channels=16)
    net = KeypointNet(cfg)
    loaded = load_encoder_weights(net, path)
    assert "layer4.0.conv3.weight" in loaded and "fc.weight" not in loaded
    assert torch.equal(net.encoder.layer3[0].conv2.weight, ref.layer3[0].conv2.weight)
    # The seed's widths match no ImageNet ResNet: refused with a clear message.
    with pytest.raises(EncoderWeightsError, match="torchvision"):
        load_encoder_weights(KeypointNet(TINY), path)
    with pytest.raises(EncoderWeightsError, match="not found"):
        load_encoder_weights(net, tmp_path / "missing.pth")
