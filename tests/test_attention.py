"""The channel-attention zoo, each variant checked against an independent computation.

References below are written from the papers' formulas with plain tensor ops on the modules'
weights; they share no code with ``selab.models.layers``.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selab import models
from selab.models import AttentionSpec, create_attention, eca_kernel_size, list_attention
from selab.models.cifar_resnet import BasicBlock
from selab.models.layers import attention_classes, variant_options

VARIANTS = [name for name in list_attention() if name != "none"]
# Variants without a bottleneck take no reduction.
NO_REDUCTION = {
    n for n, cls in attention_classes().items() if "reduction" not in variant_options(cls)
}
SE_FAMILY = [
    "se",
    "se_max",
    "se_avgmax_mul",
    "se_avgmax_add",
    "se_dual_mul",
    "se_dual_add",
    "cbam_channel",
]
GATE_FNS = {"sigmoid": torch.sigmoid, "hard_sigmoid": F.hardsigmoid, "tanh": torch.tanh}


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def mlp(module: nn.Module, descriptor: torch.Tensor) -> torch.Tensor:
    """SE's bottleneck on an (N, C) descriptor, from the module's 1x1-conv weights."""
    w1, w2 = module.fc1.weight.flatten(1), module.fc2.weight.flatten(1)
    b1 = module.fc1.bias if module.fc1.bias is not None else 0.0
    b2 = module.fc2.bias if module.fc2.bias is not None else 0.0
    return torch.relu(descriptor @ w1.T + b1) @ w2.T + b2


def avg_max(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.flatten(2)
    return flat.sum(-1) / flat.shape[-1], flat.max(-1).values


def channel_gate(name: str, module: nn.Module, x: torch.Tensor, gate=torch.sigmoid):
    """The (N, C) gate of an SE-family variant, written from the variants' formulas (SE paper, CBAM paper, the pooling study note)."""
    avg, mx = avg_max(x)
    return {
        "se": lambda: gate(mlp(module, avg)),
        "ca_conv": lambda: gate(mlp(module, avg)),
        "se_max": lambda: gate(mlp(module, mx)),
        "se_avgmax_mul": lambda: gate(mlp(module, avg * mx)),
        "se_avgmax_add": lambda: gate(mlp(module, avg + mx)),
        "se_dual_mul": lambda: gate(mlp(module, avg)) * gate(mlp(module, mx)),
        "se_dual_add": lambda: gate(mlp(module, avg)) + gate(mlp(module, mx)),
        "cbam_channel": lambda: gate(mlp(module, avg) + mlp(module, mx)),
        "cbam": lambda: gate(mlp(module, avg) + mlp(module, mx)),
    }[name]()


def eca_gate(module: nn.Module, x: torch.Tensor, gate=torch.sigmoid) -> torch.Tensor:
    # Each channel's gate is a weighted sum of its k neighbours' averages (zero outside 0..C-1).
    avg, _ = avg_max(x)
    weight = module.conv.weight.view(-1)
    k = weight.numel()
    windows = F.pad(avg, (k // 2, k // 2)).unfold(1, k, 1)  # (N, C, k)
    return gate((windows * weight).sum(-1))


def spatial_attention(module: nn.Module, y: torch.Tensor) -> torch.Tensor:
    maps = torch.stack([y.sum(1) / y.shape[1], y.max(1).values], dim=1)
    conv, bn = module.conv, module.bn  # eval mode: BN uses its running statistics
    k = conv.weight.shape[-1]
    z = F.conv2d(maps, conv.weight, padding=k // 2)
    z = (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    return y * torch.sigmoid(z)


def reference(name: str, module: nn.Module, x: torch.Tensor, gate=torch.sigmoid) -> torch.Tensor:
    if name == "eca":
        return x * eca_gate(module, x, gate)[:, :, None, None]
    y = x * channel_gate(name, module, x, gate)[:, :, None, None]
    return spatial_attention(module.spatial, y) if name == "cbam" else y


def build(name: str, channels: int = 32, **kwargs) -> nn.Module:
    """A variant with random weights everywhere (biases and BN statistics included), in eval mode;
    a ``reduction`` is passed only to variants that have a bottleneck."""
    if name in NO_REDUCTION:
        kwargs.pop("reduction", None)
    torch.manual_seed(0)
    module = create_attention(name, channels, **kwargs)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.5, 0.5)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return module.eval()


def test_every_variant_is_registered_and_has_a_reference():
    assert set(VARIANTS) == set(SE_FAMILY) | {"ca_conv", "cbam", "eca"}
    assert NO_REDUCTION == {"ca_conv", "eca"}
    assert list_attention()[0] == "none"


@pytest.mark.parametrize("name", VARIANTS)
def test_forward_matches_the_reference(name):
    module = build(name, 32, reduction=4)
    x = torch.randn(3, 32, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(module(x), reference(name, module, x))


def test_se_matches_torchvision_squeeze_excitation_with_the_same_weights():
    import torchvision

    torch.manual_seed(0)
    se = create_attention("se", 64, reduction=16, min_hidden=1)
    reference = torchvision.ops.SqueezeExcitation(64, 4)
    reference.load_state_dict(se.state_dict())  # same names: fc1/fc2 as 1x1 convs
    x = torch.randn(3, 64, 8, 8)
    torch.testing.assert_close(se(x), reference(x))


@pytest.mark.parametrize("gate", ["hard_sigmoid", "tanh"])
@pytest.mark.parametrize("name", ["se", "se_dual_add", "cbam_channel", "cbam", "eca", "ca_conv"])
def test_gate_option_matches_the_reference(name, gate):
    module = build(name, 16, gate=gate)
    x = 3 * torch.randn(2, 16, 4, 4)  # wide enough to reach hard_sigmoid's flat parts
    with torch.no_grad():
        torch.testing.assert_close(module(x), reference(name, module, x, GATE_FNS[gate]))


@pytest.mark.parametrize("name", SE_FAMILY + ["ca_conv"])
def test_bias_option(name):
    module = build(name, 16, bias=False)
    assert module.fc1.bias is None and module.fc2.bias is None
    x = torch.randn(2, 16, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(module(x), reference(name, module, x))


# Gate bounds: sigmoid-like gates in [0, 1], tanh in [-1, 1]; se_dual_add doubles them.
BOUNDS = {"sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}


@pytest.mark.parametrize("gate", BOUNDS)
@pytest.mark.parametrize("name", SE_FAMILY + ["ca_conv", "eca"])
def test_gate_stays_in_its_range(name, gate):
    module = build(name, 32, gate=gate)
    low, high = BOUNDS[gate]
    if name == "se_dual_add":
        low, high = 2 * low, 2 * high
    x = 10 * torch.randn(8, 32, 5, 5)
    with torch.no_grad():
        g = module.excitation(x)
    assert g.shape == (8, 32, 1, 1)
    assert low <= g.min() and g.max() <= high
    assert g.max() - g.min() > 0.1 * (high - low)  # really gating, not constant


@pytest.mark.parametrize("logit, expected", [(20.0, 2.0), (-20.0, 0.0)])
def test_dual_add_gate_reaches_both_ends_of_0_2(logit, expected):
    # With a constant logit both gates saturate together: nothing clamps the sum back to 1.
    module = build("se_dual_add", 16)
    with torch.no_grad():
        module.fc2.weight.zero_()
        module.fc2.bias.fill_(logit)
        g = module.excitation(torch.randn(2, 16, 4, 4))
    torch.testing.assert_close(g, torch.full_like(g, expected), atol=1e-6, rtol=0)


SIGMOID_1, SIGMOID_2 = 1 / (1 + math.exp(-1)), 1 / (1 + math.exp(-2))


@pytest.mark.parametrize("name, expected", [
    ("se", SIGMOID_1), ("se_max", SIGMOID_1), ("se_avgmax_mul", SIGMOID_1),
    ("se_avgmax_add", SIGMOID_1), ("se_dual_mul", SIGMOID_1**2), ("se_dual_add", 2 * SIGMOID_1),
    ("cbam_channel", SIGMOID_2),
])  # fmt: skip
def test_gates_combine_where_the_papers_say(name, expected):
    # A constant logit of 1 from the bottleneck: one sigmoid of 1, two of them multiplied or added,
    # or (CBAM) the two logits summed before one sigmoid.
    module = build(name, 16)
    with torch.no_grad():
        module.fc2.weight.zero_()
        module.fc2.bias.fill_(1.0)
        g = module.excitation(torch.randn(2, 16, 4, 4))
    torch.testing.assert_close(g, torch.full_like(g, expected))


def test_cbam_spatial_gate_varies_over_positions_and_stays_in_0_1():
    module = build("cbam", 32)
    x = 5 * torch.randn(4, 32, 9, 9)
    with torch.no_grad():
        s = module.spatial.excitation(x)
    assert s.shape == (4, 1, 9, 9)
    assert 0 <= s.min() and s.max() <= 1 and s.std() > 0.05


def se_params(channels: int, hidden: int, bias: bool = True) -> int:
    return 2 * channels * hidden + (hidden + channels if bias else 0)


@pytest.mark.parametrize("name", SE_FAMILY)
@pytest.mark.parametrize(
    "channels, reduction, min_hidden, bias, hidden",
    [(64, 16, 1, True, 4), (64, 16, 8, True, 8), (16, 16, 8, False, 8), (256, 4, 8, True, 64),
     (4, 16, 8, True, 4)],
)  # fmt: skip
def test_se_family_parameter_count(name, channels, reduction, min_hidden, bias, hidden):
    module = create_attention(name, channels, reduction=reduction, min_hidden=min_hidden, bias=bias)
    assert module.fc1.out_channels == hidden
    assert n_params(module) == se_params(channels, hidden, bias)  # avg and max share one MLP


@pytest.mark.parametrize("channels", [16, 64, 256])
def test_parameter_counts_of_cbam_eca_and_ca_conv(channels):
    hidden = max(channels // 16, 8)
    cbam = create_attention("cbam", channels, reduction=16)
    assert n_params(cbam) == se_params(channels, hidden) + 2 * 7 * 7 + 2  # conv 2->1 7x7 + BN
    assert n_params(create_attention("cbam", channels, spatial_kernel=3)) == (
        se_params(channels, hidden) + 2 * 3 * 3 + 2
    )
    assert n_params(create_attention("eca", channels)) == eca_kernel_size(channels)
    assert n_params(create_attention("ca_conv", channels)) == 2 * channels**2 + 2 * channels


def nearest_odd(t: float) -> int:
    # ECA's |t|_odd; ties (t even) go up, as in the authors' code.
    odd = 2 * math.floor((t - 1) / 2) + 1
    return odd if t - odd < 1 else odd + 2


ECA_WIDTHS = [1, 2, 3, 8, 16, 32, 48, 64, 100, 128, 256, 512, 1000, 1024, 2048, 4096]


@pytest.mark.parametrize("channels", ECA_WIDTHS)
def test_eca_kernel_size_follows_the_formula(channels):
    k = nearest_odd(math.log2(channels) / 2 + 1 / 2)
    assert eca_kernel_size(channels) == k
    assert create_attention("eca", channels).conv.kernel_size == (k,)


def test_eca_kernel_sizes_known_values():
    # 3 for the CIFAR ResNet widths; 5, 5, 5, 7 for the ResNet-50 stages (256 ... 2048).
    assert [eca_kernel_size(c) for c in (16, 32, 64)] == [3, 3, 3]
    assert [eca_kernel_size(c) for c in (256, 512, 1024, 2048)] == [5, 5, 5, 7]
    assert eca_kernel_size(64, gamma=1, beta=1) == 7
    assert create_attention("eca", 64, kernel_size=5).conv.kernel_size == (5,)


def test_options_the_variant_does_not_take_are_errors():
    assert create_attention("se", 64, reduction=4).fc1.out_channels == 16
    with pytest.raises(ValueError, match="'eca' has no option 'reduction'; it takes beta, gamma"):
        create_attention("eca", 64, reduction=16)
    with pytest.raises(ValueError, match="'ca_conv' has no option 'reduction'"):
        create_attention("ca_conv", 64, reduction=16)
    with pytest.raises(ValueError, match="'eca' has no option 'bias'; it takes beta, gamma"):
        create_attention("eca", 64, bias=False)
    with pytest.raises(ValueError, match="'ca_conv' has no option 'min_hidden'"):
        create_attention("ca_conv", 64, min_hidden=4)
    with pytest.raises(ValueError, match="'se' has no option 'kernel_size', 'spatial_kernel'"):
        create_attention("se", 64, spatial_kernel=7, kernel_size=3)
    with pytest.raises(ValueError, match="unknown gate 'relu'"):
        create_attention("se_dual_add", 64, gate="relu")
    with pytest.raises(ValueError, match="odd"):
        create_attention("eca", 64, kernel_size=4)
    with pytest.raises(ValueError, match="odd"):
        create_attention("cbam", 64, spatial_kernel=6)


def test_backbone_passes_the_spec_and_rejects_what_the_variant_does_not_take():
    with pytest.raises(ValueError, match="'eca' has no option 'reduction'"):
        models.resnet20(attention={"name": "eca", "reduction": 4})
    with pytest.raises(ValueError, match="'eca' has no option 'bias'"):
        models.resnet20(attention={"name": "eca", "options": {"bias": False}})
    spec = AttentionSpec(name="se_dual_add", reduction=4, options={"gate": "tanh"})
    model = models.resnet20(attention=spec)
    assert isinstance(model.stages[2][0].attention.gate, nn.Tanh)
    assert model.stages[2][0].attention.fc1.out_channels == 16  # 64 // 4
    # The same spec as a dict (YAML) and with another variant's name builds the same way.
    assert n_params(models.resnet20(attention=spec)) == n_params(
        models.resnet20(attention={"name": "se", "reduction": 4})
    )
    with pytest.raises(ValueError, match="unknown attention 'sse'"):
        models.resnet20(attention="sse")
    with pytest.raises(ValueError, match="reduction must be >= 1, got 0"):
        models.resnet20(attention={"name": "se", "reduction": 0})
    with pytest.raises(ValueError, match="attention has no field 'stage'"):
        models.resnet20(attention={"name": "se", "stage": [2]})
    with pytest.raises(ValueError, match="CifarResNet has stages 1..3; attention stages \\[4\\]"):
        models.resnet20(attention={"name": "se", "stages": [4]})
    with pytest.raises(ValueError, match="unknown attention position 'middle'"):
        models.resnet20(attention={"name": "se", "position": "middle"})


def block_params(name: str, channels: int) -> int:
    """Closed-form parameters of ``name`` at width C with the backbone's reduction 16."""
    hidden = min(channels, max(channels // 16, 8))
    return {
        "eca": eca_kernel_size(channels),
        "ca_conv": 2 * channels**2 + 2 * channels,
        "cbam": se_params(channels, hidden) + 2 * 49 + 2,
    }.get(name, se_params(channels, hidden))


@pytest.mark.parametrize("name", VARIANTS)
def test_resnet20_adds_the_closed_form_count(name):
    added = n_params(models.resnet20(attention=name)) - n_params(models.resnet20())
    assert added == sum(3 * block_params(name, c) for c in (16, 32, 64))  # 3 blocks per stage


@pytest.mark.parametrize("name", VARIANTS)
def test_channels_last_bfloat16_and_any_spatial_size(name):
    module = build(name, 16, reduction=4)
    for h, w in [(1, 1), (3, 5), (11, 7)]:
        x = torch.randn(2, 16, h, w)
        with torch.no_grad():
            expected = module(x)
            out = module(x.contiguous(memory_format=torch.channels_last))
            half = copy.deepcopy(module).to(torch.bfloat16)(x.bfloat16())
        torch.testing.assert_close(out, expected)
        if h > 1:  # a 1x1 map is contiguous in both layouts
            assert out.is_contiguous(memory_format=torch.channels_last)
        assert half.dtype == torch.bfloat16
        torch.testing.assert_close(half.float(), expected, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("name", VARIANTS)
def test_compiles_into_one_graph(name):
    torch._dynamo.reset()  # the variants share SqueezeExcite.forward: no recompile limit
    module = build(name, 16, reduction=4).train()  # training mode: CBAM's BN uses batch stats
    compiled = torch.compile(module, backend="eager", fullgraph=True)  # a graph break raises
    x = torch.randn(4, 16, 5, 5)
    torch.testing.assert_close(compiled(x), module(x))


# Placement: the four positions of the SE paper's integration ablation on a BasicBlock.


def option_a(x: torch.Tensor, out_channels: int) -> torch.Tensor:
    extra = out_channels - x.shape[1]
    return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, extra // 2, extra - extra // 2))


@pytest.mark.parametrize("in_channels, out_channels, stride", [(16, 16, 1), (16, 32, 2)])
@pytest.mark.parametrize("position", ["standard", "pre", "post", "identity"])
def test_basic_block_attention_position(position, in_channels, out_channels, stride):
    torch.manual_seed(0)
    block = BasicBlock(
        in_channels,
        out_channels,
        stride,
        attention=AttentionSpec(name="se", reduction=4, position=position),
    )
    with torch.no_grad():
        for bn in (block.bn1, block.bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    block.eval()
    attn = block.attention
    assert attn.fc1.in_channels == (in_channels if position == "pre" else out_channels)

    def branch(z):
        return block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(z)))))

    x = torch.randn(2, in_channels, 8, 8)
    shortcut = x if stride == 1 else option_a(x, out_channels)
    expected = {
        "standard": lambda: torch.relu(attn(branch(x)) + shortcut),
        "pre": lambda: torch.relu(branch(attn(x)) + shortcut),
        "post": lambda: attn(torch.relu(branch(x) + shortcut)),
        "identity": lambda: torch.relu(branch(x) + attn(shortcut)),
    }
    with torch.no_grad():
        out = block(x)
        torch.testing.assert_close(out, expected[position]())
        for other, computation in expected.items():  # the positions really differ
            if other != position and (stride == 1 or "pre" not in (other, position)):
                assert not torch.allclose(out, computation(), atol=1e-3)


def test_attention_stages_puts_attention_only_in_the_listed_stages():
    model = models.resnet20(attention={"name": "eca", "stages": [1, 3]})
    kinds = [[type(b.attention).__name__ for b in stage] for stage in model.stages]
    eca = "EfficientChannelAttention"
    assert kinds == [[eca] * 3, ["Identity"] * 3, [eca] * 3]
    assert n_params(model) - n_params(models.resnet20()) == 6 * 3  # k = 3 at 16 and 64 channels
    # "pre" in stage 2 only: its first block sees the 16-channel input of the stage.
    model = models.resnet20(attention={"name": "se", "stages": [2], "position": "pre"})
    widths = [b.attention.fc1.in_channels for b in model.stages[1]]
    assert widths == [16, 32, 32]
    assert all(isinstance(b.attention, nn.Identity) for s in (0, 2) for b in model.stages[s])
    assert n_params(model) - n_params(models.resnet20()) == se_params(16, 8) + 2 * se_params(32, 8)
    # Every attention module knows its stage.
    assert [b.attention.stage for b in model.stages[1]] == [2, 2, 2]
