import pytest
import torch
import torchvision
from torch import nn

from selab import models
from selab.models import SqueezeExcite, create_attention, list_attention


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_se_matches_a_hand_computation():
    torch.manual_seed(0)
    se = SqueezeExcite(32, reduction=4, min_hidden=1)
    x = torch.randn(2, 32, 5, 7)
    w1, b1 = se.fc1.weight.view(8, 32), se.fc1.bias
    w2, b2 = se.fc2.weight.view(32, 8), se.fc2.bias
    squeezed = x.mean(dim=(2, 3))  # (N, C)
    gate = torch.sigmoid(torch.relu(squeezed @ w1.T + b1) @ w2.T + b2)
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])


def test_se_matches_torchvision_squeeze_excitation_with_the_same_weights():
    torch.manual_seed(0)
    se = SqueezeExcite(64, reduction=16, min_hidden=1)
    reference = torchvision.ops.SqueezeExcitation(64, 4)
    reference.load_state_dict(
        {k: v for k, v in se.state_dict().items()}  # same names: fc1/fc2 as 1x1 convs
    )
    x = torch.randn(3, 64, 8, 8)
    torch.testing.assert_close(se(x), reference(x))


@pytest.mark.parametrize(
    "channels, reduction, min_hidden, hidden",
    [(64, 16, 1, 4), (64, 16, 8, 8), (16, 16, 8, 8), (256, 16, 8, 16), (4, 16, 8, 4)],
)
def test_se_hidden_width_and_parameter_count(channels, reduction, min_hidden, hidden):
    se = SqueezeExcite(channels, reduction=reduction, min_hidden=min_hidden)
    assert se.fc1.out_channels == hidden
    assert n_params(se) == 2 * channels * hidden + hidden + channels


def test_attention_registry():
    assert {"none", "se"} <= set(list_attention())
    assert isinstance(create_attention("none", 16), nn.Identity)
    assert isinstance(create_attention("se", 16, reduction=4), SqueezeExcite)
    with pytest.raises(ValueError, match="unknown attention 'sse'.*se"):
        create_attention("sse", 16)


# He et al. 2016, Table 6: parameters of the CIFAR-10 ResNets (option A shortcuts).
PUBLISHED = {
    "resnet20": 0.27e6,
    "resnet32": 0.46e6,
    "resnet44": 0.66e6,
    "resnet56": 0.85e6,
    "resnet110": 1.7e6,
}


@pytest.mark.parametrize("name, published", PUBLISHED.items())
def test_cifar_resnet_parameter_counts_match_he_et_al(name, published):
    model = models.build_backbone(name)
    depth = int(name[len("resnet") :])
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert convs + 1 == depth  # depth counts the conv layers and the FC layer
    assert abs(n_params(model) - published) / published < 0.02


def test_resnet20_exact_count_by_hand():
    # stem 3*16*9 + BN; stage1 3 blocks of two 16->16 convs; stage2/3 first block widens;
    # two BN params per channel; FC 64*10 + 10.
    stem = 3 * 16 * 9 + 32
    stage1 = 3 * (2 * 16 * 16 * 9 + 2 * 32)
    stage2 = (16 * 32 * 9 + 32 * 32 * 9 + 2 * 64) + 2 * (2 * 32 * 32 * 9 + 2 * 64)
    stage3 = (32 * 64 * 9 + 64 * 64 * 9 + 2 * 128) + 2 * (2 * 64 * 64 * 9 + 2 * 128)
    assert n_params(models.resnet20()) == stem + stage1 + stage2 + stage3 + 64 * 10 + 10 == 269_722


def test_se_resnet_adds_the_closed_form_parameter_count():
    base = n_params(models.resnet56())
    se = n_params(models.resnet56(attention="se", reduction=16))
    # 9 blocks per stage; hidden = max(C // 16, 8): 8, 8, 8 for C = 16, 32, 64.
    expected = sum(9 * (2 * c * 8 + 8 + c) for c in (16, 32, 64))
    assert se - base == expected


def test_se_sits_before_the_addition_in_every_block():
    model = models.resnet20(attention="se")
    blocks = [m for m in model.modules() if isinstance(m, models.cifar_resnet.BasicBlock)]
    assert len(blocks) == 9 and all(isinstance(b.attention, SqueezeExcite) for b in blocks)
    # A gate of exactly zero removes the residual branch: the block becomes relu(shortcut(x)).
    block = blocks[0].eval()
    nn.init.zeros_(block.attention.fc2.weight)
    nn.init.constant_(block.attention.fc2.bias, -1e4)
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_forward_shapes_and_num_classes():
    model = models.resnet20(num_classes=7, attention="se")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert model(torch.randn(2, 3, 96, 96)).shape == (2, 7)  # STL10 size


def test_bad_depth_and_names_fail_clearly():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        models.CifarResNet(depth=21)
    with pytest.raises(ValueError, match="unknown backbone 'resnet21'.*resnet20"):
        models.build_backbone("resnet21")
    assert {"resnet20", "resnet56", "resnet110"} <= set(models.list_backbones())
