"""selab's builders against the networks of the study notes (``tests/seed_reference.py``).

Each study network must have exactly the parameters the note's code builds and, given the same
weights, compute the same outputs.
"""

from __future__ import annotations

import re

import pytest
import torch

import seed_reference as seed
from selab import models
from selab.models.zoo import count_parameters

SE_AS_THE_NOTE = {"name": "se", "options": {"min_hidden": 1}}  # the note's C // 16


def load_renamed(ours: torch.nn.Module, theirs: torch.nn.Module, rules: list[tuple[str, str]]):
    """Copy ``theirs``' state into ``ours``, renaming each key with the first matching rule; every
    key of both must be used, shapes reshaped (the notes' SE uses Linear, selab 1x1 convs)."""
    target = ours.state_dict()
    loaded = {}
    for key, value in theirs.state_dict().items():
        for pattern, replacement in rules:
            if re.fullmatch(pattern, key):
                new = re.sub(pattern, replacement, key)
                break
        else:
            raise AssertionError(f"no rule for {key}")
        assert new in target, (key, new)
        loaded[new] = value.reshape(target[new].shape)
    assert set(loaded) == set(target), set(target) - set(loaded)
    ours.load_state_dict(loaded)


VGG_RULES = [
    (r"conv1_1\.(\w+)", r"stages.0.convs.0.\1"),
    (r"conv1_2\.(\w+)", r"stages.0.convs.2.\1"),
    (r"conv2_1\.(\w+)", r"stages.1.convs.0.\1"),
    (r"conv2_2\.(\w+)", r"stages.1.convs.2.\1"),
    (r"conv3_1\.(\w+)", r"stages.2.convs.0.\1"),
    (r"conv3_2\.(\w+)", r"stages.2.convs.2.\1"),
    (r"conv_skip1\.(\w+)", r"stages.0.projection.0.\1"),
    (r"conv_skip2\.(\w+)", r"stages.1.projection.0.\1"),
    (r"conv_skip3\.(\w+)", r"stages.2.projection.0.\1"),
    (r"caconv1\.(\w+)", r"stages.1.attention.fc1.\1"),
    (r"caconv2\.(\w+)", r"stages.1.attention.fc2.\1"),
    (r"fc1\.(\w+)", r"classifier.1.\1"),
    (r"fc2\.(\w+)", r"classifier.4.\1"),
    (r"fc3\.(\w+)", r"classifier.7.\1"),
]

VGG_ARMS = {
    # arm: (the note's class, selab's options, the parameter count the note's code builds)
    "plain": (seed.Model, {}, 2_633_418),
    "skip": (seed.VGG_SKIP, {"connection": "skip"}, 2_800_522),
    "dense": (seed.VGG_DENSE, {"connection": "dense"}, 2_674_602),
    "ca": (seed.VGG_CA, {"attention": "ca_conv"}, 2_641_738),
}


@pytest.mark.parametrize("arm", VGG_ARMS)
def test_vgg_small_is_the_notes_network(arm):
    reference_cls, options, published = VGG_ARMS[arm]
    torch.manual_seed(0)
    theirs = reference_cls().eval()
    ours = models.vgg_small(**options).eval()
    assert count_parameters(ours) == count_parameters(theirs) == published
    load_renamed(ours, theirs, VGG_RULES)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_vgg_small_default_init_is_pytorchs():
    # PyTorch's default Conv2d init draws from U(-b, b) with b = 1 / sqrt(fan_in): no zero biases.
    model = models.vgg_small()
    conv = model.stages[0].convs[0]
    bound = 1 / (3 * 9) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.bias.abs().min() > 0
    assert models.vgg_small(init="kaiming_in").stages[0].convs[0].bias.abs().max() == 0


MOBILENET_RULES = [
    (r"conv1\.conv\.(\d)\.(\w+)", r"stem.\1.\2"),
    (r"conv2\.(depthwise|pointwise)\.(\d)\.(\w+)", r"blocks.0.\1.\2.\3"),
    (r"conv2\.seblock\.excitation\.0\.(\w+)", r"blocks.0.attention.fc1.\1"),
    (r"conv2\.seblock\.excitation\.2\.(\w+)", r"blocks.0.attention.fc2.\1"),
    *[
        (rf"conv{stage}\.{i}\.(depthwise|pointwise)\.(\d)\.(\w+)", rf"blocks.{block}.\1.\2.\3")
        for stage, first, count in ((3, 1, 2), (4, 3, 2), (5, 5, 6), (6, 11, 1), (7, 12, 1))
        for i, block in enumerate(range(first, first + count))
    ],
    *[
        (
            rf"conv{stage}\.{i}\.seblock\.excitation\.{j}\.(\w+)",
            rf"blocks.{block}.attention.{fc}.\1",
        )
        for stage, first, count in ((3, 1, 2), (4, 3, 2), (5, 5, 6), (6, 11, 1), (7, 12, 1))
        for i, block in enumerate(range(first, first + count))
        for j, fc in ((0, "fc1"), (2, "fc2"))
    ],
    (r"linear\.(\w+)", r"fc.\1"),
]


def test_mobilenetv1_seed_stem_is_the_notes_network():
    torch.manual_seed(0)
    theirs = seed.MobileNetV1(1).eval()
    ours = models.mobilenetv1(
        num_classes=10, stem="seed", init="torchvision", attention=SE_AS_THE_NOTE
    ).eval()
    assert count_parameters(ours) == count_parameters(theirs) == 4_095_678
    stem = ours.stem[0]
    assert stem.kernel_size == (64, 64) and stem.padding == (0, 0) and stem.bias is not None
    assert ours.blocks[-1].depthwise[0].stride == (2, 2)  # the note's last block strides 2
    load_renamed(ours, theirs, MOBILENET_RULES)
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


def test_mobilenetv1_torchvision_init_draws_the_notes_distributions():
    torch.manual_seed(0)
    model = models.mobilenetv1(
        num_classes=10, stem="seed", init="torchvision", attention=SE_AS_THE_NOTE
    )
    fc1 = model.blocks[12].attention.fc1  # 1024 -> 64: the SE "Linear" layers get N(0, 0.01)
    assert abs(fc1.weight.std().item() - 0.01) < 0.001 and fc1.bias.abs().max() == 0
    assert abs(model.fc.weight.std().item() - 0.01) < 0.001
    pointwise = model.blocks[12].pointwise[0].weight  # He normal, fan_out = 1024
    assert abs(pointwise.std().item() - (2 / 1024) ** 0.5) < 0.002


SHAKE_RULES = [
    (r"conv1\.(\w+)", r"stem.0.\1"),
    (r"bn1\.(\w+)", r"stem.1.\1"),
    *[
        (
            rf"stage{s}\.(\d)\.residual_branch(\d)\.{name}\.(\w+)",
            rf"stages.{s - 1}.\1.branch\2.{index}.\3",
        )
        for s in (1, 2, 3)
        for name, index in (("conv1", 1), ("bn1", 2), ("conv2", 4), ("bn2", 5))
    ],
    *[
        (rf"stage{s}\.0\.down_sample\.(conv\d)\.(\w+)", rf"stages.{s - 1}.0.shortcut.\1.\2")
        for s in (1, 2, 3)
    ],
    (r"fc_out\.(\w+)", r"fc.\1"),
]


def test_shake_shake_seed_variant_is_the_notes_network():
    torch.manual_seed(0)
    theirs = seed.ShakeResNet(4, seed.ShakeBlock).eval()
    ours = models.shake_shake26_2x32d(variant="seed").eval()
    assert count_parameters(ours) == count_parameters(theirs) == 2_922_714
    assert count_parameters(models.shake_shake26_2x32d()) == 2_923_162  # the paper's: BN on skips
    load_renamed(ours, theirs, SHAKE_RULES)
    with torch.no_grad():  # random BN statistics, so the in-place ReLU quirk shows
        for (_, a), (_, b) in zip(ours.named_buffers(), theirs.named_buffers(), strict=True):
            if a.is_floating_point():
                value = torch.rand_like(a) + 0.5
                a.copy_(value), b.copy_(value)
        for (_, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
            if a.ndim == 1:  # BN affine and biases: away from their identity init
                value = torch.randn_like(a) * 0.5
                a.copy_(value), b.copy_(value)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)
        paper = models.shake_shake26_2x32d().eval()
        assert paper(x).shape == ours(x).shape


def test_shake_shake_2x96d_seed_variant_widens_the_skip_paths():
    # The note's SkippingBranch maps C to 2C; 16 -> 96 needs each path to give half of 96.
    model = models.shake_shake26_2x96d(variant="seed")
    shortcut = model.stages[0][0].shortcut
    assert shortcut.conv1.out_channels == shortcut.conv2.out_channels == 48
    assert isinstance(shortcut.bn, torch.nn.Identity)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
