"""The backbone zoo: published parameter counts, SE's closed-form cost, shapes, Shake-Shake's
forward/backward mixing, and attention injected into torchvision models."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from conftest import REPO
from selab import models
from selab.cli import run
from selab.models import SqueezeExcite
from selab.models.shake_shake import ShakeBlock, shake
from selab.models.zoo import REFERENCES, count_backbone, count_parameters, describe, tolerance


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny inputs run fastest on one thread (OpenMP threads of tiny ops wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def se_cost(channels: list[int], reduction: int = 16, min_hidden: int = 8, bias: bool = True):
    """Parameters SE adds for blocks of the given widths: 2 C h (+ h + C biases) each."""
    total = 0
    for c in channels:
        h = min(c, max(c // reduction, min_hidden))
        total += 2 * c * h + (h + c if bias else 0)
    return total


def n_se(model: nn.Module) -> int:
    return sum(isinstance(m, SqueezeExcite) for m in model.modules())


# -- parameter counts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref", [r for r in REFERENCES if r.params], ids=lambda r: f"{r.name}-{r.params}M"
)
def test_parameter_counts_match_the_papers(ref):
    count = count_backbone(ref.name, **ref.kwargs)
    published = float(ref.params) * 1e6
    assert abs(count - published) <= tolerance(ref.params), (ref.name, count, ref.params)


def test_published_table_is_as_printed():
    # A typo in the references would make the test above meaningless: pin the paper numbers.
    published = {describe(r): r.params for r in REFERENCES if r.params}
    assert published["resnet164"] == "1.7"
    assert published["wrn16_8"] == "11.0"
    assert published["mobilenetv1"] == "4.2"
    assert published["shake_shake26_2x32d"] == "2.9"
    assert published["shake_shake26_2x96d"] == "26.2"
    assert published["resnext29_8x64d"] == "34.4"
    # The study networks, exactly as the notes' code builds them.
    assert published["vgg_small"] == "2.633418"
    assert published["vgg_small(connection=skip)"] == "2.800522"
    assert published["vgg_small(connection=dense)"] == "2.674602"
    assert published["vgg_small(attention=ca_conv)"] == "2.641738"
    assert published["mobilenetv1(stem=seed, attention=se)"] == "4.095678"
    assert published["shake_shake26_2x32d(variant=seed)"] == "2.922714"
    assert tolerance("1.7") == 1e5 and tolerance("34.4") == 1e5 and tolerance("0.27") == 1e4
    assert tolerance("2.633418") == 1


# He et al. 2016, Table 6: CIFAR-10 ResNets (option A shortcuts); depth counts convs and the FC.
CIFAR_RESNETS = {"resnet20": 0.27e6, "resnet32": 0.46e6, "resnet44": 0.66e6, "resnet56": 0.85e6}


@pytest.mark.parametrize("name, published", CIFAR_RESNETS.items())
def test_cifar_resnet_depth_and_parameters_match_he_et_al(name, published):
    model = models.build_backbone(name)
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert convs + 1 == int(name[len("resnet") :])
    assert abs(count_parameters(model) - published) / published < 0.02


def test_resnet20_exact_count_by_hand():
    # stem 3*16*9 + BN; stage1 3 blocks of two 16->16 convs; stage2/3 first block widens;
    # two BN params per channel; FC 64*10 + 10.
    stem = 3 * 16 * 9 + 32
    stage1 = 3 * (2 * 16 * 16 * 9 + 2 * 32)
    stage2 = (16 * 32 * 9 + 32 * 32 * 9 + 2 * 64) + 2 * (2 * 32 * 32 * 9 + 2 * 64)
    stage3 = (32 * 64 * 9 + 64 * 64 * 9 + 2 * 128) + 2 * (2 * 64 * 64 * 9 + 2 * 128)
    total = stem + stage1 + stage2 + stage3 + 64 * 10 + 10
    assert count_parameters(models.resnet20()) == total == 269_722
    with pytest.raises(ValueError, match="6n \\+ 2"):
        models.CifarResNet(depth=21)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_imagenet_resnets_equal_torchvision(name):
    ours = models.build_backbone(name, stem="imagenet", num_classes=1000)
    theirs = getattr(torchvision.models, name)(weights=None)
    assert count_parameters(ours) == count_parameters(theirs)
    # Same layout and names: torchvision's weights load unchanged and give the same logits.
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval(), theirs.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_se_resnet50_matches_the_se_paper():
    # Hu et al. 2018: SE-ResNet-50 (r = 16) has 28.09M parameters (28.1M in their reduction-ratio
    # table), ResNet-50's 25.56M plus about 2.5M. The closed form (2 / r) sum_s N_s C_s^2 counts
    # the excitation weights only; the published total includes the FC biases (h + C per block).
    base = count_backbone("resnet50", stem="imagenet", num_classes=1000)
    se = count_backbone("resnet50", stem="imagenet", num_classes=1000, attention="se")
    widths = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
    assert se - base == se_cost(widths) == 2_530_992
    assert se == 28_088_024 and abs(se - 28.09e6) < 5e3
    no_bias = count_backbone(
        "resnet50", stem="imagenet", attention={"name": "se", "options": {"bias": False}}
    )
    assert no_bias - base == sum(2 * c * c // 16 for c in widths) == 2_514_944


SE_WIDTHS = {
    # backbone kwargs -> the width of every block that gets SE (r = 16, hidden max(C // 16, 8))
    ("resnet18", ()): [64] * 2 + [128] * 2 + [256] * 2 + [512] * 2,
    ("resnet164", ()): [64] * 18 + [128] * 18 + [256] * 18,
    ("wrn16_8", ()): [128] * 2 + [256] * 2 + [512] * 2,
    ("mobilenetv1", ()): [64, 128, 128, 256, 256] + [512] * 6 + [1024] * 2,
    ("mobilenetv1", (("alpha", 0.5),)): [32, 64, 64, 128, 128] + [256] * 6 + [512] * 2,
    ("shake_shake26_2x32d", ()): [32] * 4 + [64] * 4 + [128] * 4,
    ("resnext29_2x64d", ()): [256] * 3 + [512] * 3 + [1024] * 3,
    ("vgg_small", ()): [64],  # after the second stage only
    ("vgg_small", (("connection", "dense"),)): [35 + 64],
    ("vgg_small", (("stages", (1, 2, 3)),)): [32, 64, 256],
}


@pytest.mark.parametrize("key", SE_WIDTHS, ids=lambda k: k[0] + "".join(f"-{v}" for _, v in k[1]))
def test_se_adds_the_closed_form_count(key):
    name, options = key
    kwargs = dict(options)
    spec = {"name": "se", "stages": kwargs.pop("stages", None)}
    base = count_backbone(name, **kwargs)
    with torch.device("meta"):
        model = models.build_backbone(name, attention=spec, **kwargs)
    assert count_parameters(model) - base == se_cost(SE_WIDTHS[key])
    assert n_se(model) == len(SE_WIDTHS[key])


def test_attention_stages_limit_se_to_those_stages():
    with torch.device("meta"):
        model = models.resnet50(attention={"name": "se", "stages": [4]})
    assert n_se(model) == 3 and all(n_se(getattr(model, f"layer{i}")) == 0 for i in (1, 2, 3))
    with torch.device("meta"):
        model = models.shake_shake26_2x32d(attention={"name": "se", "stages": [1, 3]})
    assert [n_se(stage) for stage in model.stages] == [4, 0, 4]


# -- shapes --------------------------------------------------------------------------------

SHAPES = [
    # (builder, kwargs, input size, final feature-map size)
    ("resnet18", {"stem": "cifar"}, 32, 4),
    ("resnet18", {"stem": "stl"}, 96, 6),
    ("resnet18", {"stem": "imagenet"}, 224, 7),
    ("resnet50", {"stem": "stl"}, 96, 6),
    ("resnet164", {}, 32, 8),
    ("wrn16_8", {"dropout": 0.3}, 32, 8),
    ("mobilenetv1", {"alpha": 0.25}, 224, 7),
    ("mobilenetv1", {"alpha": 0.25, "stem": "stl"}, 96, 6),
    ("vgg_small", {}, 32, 4),
    ("vgg_small", {"connection": "skip"}, 32, 4),
    ("vgg_small", {"connection": "dense"}, 32, 4),
    ("shake_shake26_2x32d", {}, 32, 8),
    ("resnext29_2x64d", {}, 16, 4),
]


@pytest.mark.parametrize("name, kwargs, size, final", SHAPES, ids=lambda v: str(v))
def test_output_and_feature_shapes(name, kwargs, size, final):
    model = models.build_backbone(name, num_classes=7, attention="se", **kwargs)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape[-1] == final
        assert model(x).shape == (2, 7)


def test_vgg_small_fc_input_and_connections():
    assert models.vgg_small().classifier[1].in_features == 256 * 4 * 4 == 4096
    assert models.vgg_small(connection="skip").classifier[1].in_features == 4096
    dense = models.vgg_small(connection="dense")
    assert dense.classifier[1].in_features == 4096  # no concatenation after stage 3
    assert [stage.convs[0].in_channels for stage in dense.stages] == [3, 3 + 32, 35 + 64]
    widths = [
        [m.out_channels for m in stage.convs if isinstance(m, nn.Conv2d)]
        for stage in models.vgg_small().stages
    ]
    assert widths == [[16, 32], [32, 64], [128, 256]]  # six convs, three pairs
    # skip adds relu(conv3x3(stage input)); with its weights at zero it is plain again.
    torch.manual_seed(0)
    plain, skip = models.vgg_small().eval(), models.vgg_small(connection="skip").eval()
    skip.load_state_dict(plain.state_dict(), strict=False)
    for stage in skip.stages:
        nn.init.zeros_(stage.projection[0].weight), nn.init.zeros_(stage.projection[0].bias)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(skip(x), plain(x))
    with pytest.raises(ValueError, match="unknown connection 'res'"):
        models.vgg_small(connection="res")


@pytest.mark.parametrize(
    "name, kwargs, size",
    [
        ("resnet18", {"stem": "cifar"}, 16),
        ("resnet50", {"stem": "cifar"}, 16),
        ("resnet164", {}, 16),
        ("wrn16_8", {}, 16),
        ("shake_shake26_2x32d", {}, 16),
        ("resnext29_2x64d", {}, 8),
    ],
)
@pytest.mark.parametrize("position", ["pre", "post", "identity"])
def test_every_residual_backbone_takes_every_attention_position(name, kwargs, size, position):
    model = models.build_backbone(
        name, num_classes=7, attention={"name": "se", "position": position}, **kwargs
    )
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 7)


def test_resnet164_downsampling_unit_strides_in_its_first_1x1_conv():
    # KaimingHe/resnet-1k-layers, resnet-pre-act.lua: Convolution(nIn, nBottleneck, 1, 1, stride).
    unit = models.resnet164().stages[1][0]
    assert unit.conv1.stride == (2, 2) and unit.conv1.kernel_size == (1, 1)
    assert unit.conv2.stride == (1, 1) and unit.projection.stride == (2, 2)
    x = torch.randn(1, 64, 8, 8)
    assert unit(x).shape == (1, 128, 4, 4)


def test_preact_units_with_a_zero_gate_pass_the_shortcut_only():
    model = models.resnet164(attention="se").eval()
    for unit in (model.stages[0][0], model.stages[0][1]):  # projecting, identity
        nn.init.zeros_(unit.attention.fc2.weight)
        nn.init.constant_(unit.attention.fc2.bias, -1e4)
    x = torch.randn(2, 16, 8, 8)
    first, second = model.stages[0][0], model.stages[0][1]
    with torch.no_grad():
        expected = first.projection(torch.relu(first.bn1(x)))  # shared pre-activation
        torch.testing.assert_close(first(x), expected)
        y = torch.randn(2, 64, 8, 8)
        torch.testing.assert_close(second(y), y)  # nothing after the addition


# -- Shake-Shake ---------------------------------------------------------------------------


def test_shake_mixes_per_image_forward_and_independently_backward():
    torch.manual_seed(0)
    n = 64
    x1 = torch.ones(n, 3, 4, 4, requires_grad=True)
    x2 = torch.zeros(n, 3, 4, 4, requires_grad=True)
    out = shake(x1, x2, training=True)
    alpha = out[:, 0, 0, 0]  # 1 * alpha + 0 * (1 - alpha)
    assert torch.equal(out, alpha.view(n, 1, 1, 1).expand_as(out))  # one alpha per image
    assert 0 <= alpha.min() and alpha.max() <= 1 and alpha.std() > 0.1
    out.sum().backward()
    beta = x1.grad[:, 0, 0, 0]
    assert torch.equal(x1.grad, beta.view(n, 1, 1, 1).expand_as(x1.grad))
    torch.testing.assert_close(x2.grad, 1 - x1.grad)  # the two gradients sum to the incoming one
    # beta is drawn independently of alpha: the backward pass does not follow the forward mix.
    assert (beta - alpha).abs().mean() > 0.1
    assert abs(torch.corrcoef(torch.stack([alpha, beta]))[0, 1]) < 0.4


@pytest.mark.parametrize("backward, expected", [("keep", "alpha"), ("even", 0.5)])
def test_shake_backward_variants(backward, expected):
    torch.manual_seed(1)
    x1 = torch.ones(8, 2, 1, 1, requires_grad=True)
    x2 = torch.zeros(8, 2, 1, 1, requires_grad=True)
    out = shake(x1, x2, training=True, backward=backward)
    out.sum().backward()
    target = out.detach() if expected == "alpha" else torch.full_like(out, 0.5)
    torch.testing.assert_close(x1.grad, target)


def test_shake_block_uses_the_average_at_eval_and_random_mixes_in_training():
    torch.manual_seed(0)
    block = ShakeBlock(8, 16, stride=2)
    x = torch.randn(4, 8, 8, 8)
    block.eval()
    with torch.no_grad():
        expected = block.shortcut(x) + 0.5 * (block.branch1(x) + block.branch2(x))
        torch.testing.assert_close(block(x), expected)
        torch.testing.assert_close(block(x), block(x))  # deterministic
    block.train()
    with torch.no_grad():
        b1, b2 = block.branch1(x), block.branch2(x)  # BN in training mode: batch statistics
        residual = block(x) - block.shortcut(x)
    # each image's residual is alpha * b1 + (1 - alpha) * b2 for its own alpha in [0, 1]
    diff = (b1 - b2).flatten(1)
    alpha = ((residual - b2).flatten(1) * diff).sum(1) / (diff * diff).sum(1)
    torch.testing.assert_close(
        residual, alpha.view(4, 1, 1, 1) * b1 + (1 - alpha.view(4, 1, 1, 1)) * b2
    )
    assert ((0 <= alpha) & (alpha <= 1)).all() and alpha.std() > 0


def test_shake_shortcut_samples_both_pixel_grids():
    block = ShakeBlock(4, 8, stride=2).eval()
    shortcut = block.shortcut
    x = torch.zeros(1, 4, 4, 4)
    x[..., 1, 1] = 1.0  # a pixel the plain stride-2 sampling skips
    with torch.no_grad():
        nn.init.ones_(shortcut.conv1.weight), nn.init.ones_(shortcut.conv2.weight)
        path1 = shortcut.conv1(torch.relu(x)[..., ::2, ::2])
        out = torch.cat([path1, shortcut.conv2(torch.relu(x)[..., 1::2, 1::2])], 1)
        torch.testing.assert_close(shortcut(x), shortcut.bn(out))
        assert path1.abs().sum() == 0 and out.abs().sum() > 0


# -- inject_attention ----------------------------------------------------------------------


def force_gate(model: nn.Module, logit: float) -> None:
    """Make every SE gate sigmoid(logit): 1 for a large logit, 0 for a very negative one."""
    for m in model.modules():
        if isinstance(m, SqueezeExcite):
            nn.init.zeros_(m.fc2.weight)
            nn.init.constant_(m.fc2.bias, logit)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2"])
def test_injected_model_with_an_open_gate_equals_the_original(name):
    torch.manual_seed(0)
    original = getattr(torchvision.models, name)(num_classes=10).eval()
    injected = models.inject_attention(copy.deepcopy(original), "se")
    assert n_se(injected) > 0
    missing, unexpected = injected.load_state_dict(original.state_dict(), strict=False)
    assert not unexpected and all(".attention." in key for key in missing)  # names kept
    force_gate(injected, 1e4)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = original(x)
        scale = reference.abs().max()  # a fresh MobileNetV2's logits are ~1e-10: compare relative
        assert scale > 0
        torch.testing.assert_close(injected(x) / scale, reference / scale)
        force_gate(injected, 0.0)  # a half gate changes the output: the attention is in use
        assert (injected(x) - reference).abs().max() > 1e-2 * scale


def test_injected_blocks_with_a_zero_gate_reduce_to_relu_of_the_shortcut():
    model = models.inject_attention(torchvision.models.resnet50(), "se").eval()
    force_gate(model, -1e4)
    x = torch.randn(2, 256, 8, 8)
    with torch.no_grad():
        same = model.layer1[1]  # identity shortcut
        torch.testing.assert_close(same(x), torch.relu(x))
        down = model.layer2[0]  # projection shortcut
        torch.testing.assert_close(down(x), torch.relu(down.downsample(x)))
    basic = models.inject_attention(torchvision.models.resnet18(), "se").eval()
    force_gate(basic, -1e4)
    y = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(basic.layer1[0](y), torch.relu(y))
    mobile = models.inject_attention(torchvision.models.mobilenet_v2(), "se").eval()
    force_gate(mobile, -1e4)
    residual, plain = mobile.features[3], mobile.features[2]  # 24 -> 24 stride 1; 16 -> 24 stride 2
    assert residual.use_res_connect and not plain.use_res_connect
    z = torch.randn(2, 24, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(residual(z), z)
        assert plain(torch.randn(2, 16, 8, 8)).abs().max() < 1e-6


def test_mobilenet_v2_attention_sits_between_depthwise_and_projection():
    # SE-MobileNet / MobileNetV3: on the expanded features after the depthwise conv, before the
    # linear 1x1 projection; stages count resolutions.
    torch.manual_seed(0)
    model = models.inject_attention(
        torchvision.models.mobilenet_v2(), {"name": "se", "reduction": 4}
    )
    block = model.features[2]  # 16 -> 96 expand, depthwise stride 2, 96 -> 24 project
    assert block.attention.fc1.in_channels == 96 and block.attention.fc1.out_channels == 24
    assert [model.features[i].attention.stage for i in (1, 2, 3, 4)] == [1, 2, 2, 3]
    block.eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        expanded = block.conv[1](block.conv[0](x))
        expected = block.conv[3](block.conv[2](block.attention(expanded)))
        torch.testing.assert_close(block(x), expected)


def test_injection_counts_match_the_native_backbones():
    se_tv = models.inject_attention(torchvision.models.resnet50(), "se")
    assert count_parameters(se_tv) == 28_088_024  # = selab's SE-ResNet-50, the SE paper's 28.09M
    with torch.device("meta"):  # 69M parameters: count without allocating them
        wide = torchvision.models.wide_resnet50_2()
        before = count_parameters(wide)
        models.inject_attention(wide, {"name": "se", "stages": [4]})
    assert count_parameters(wide) - before == se_cost([2048] * 3)


def test_inject_rejects_unsupported_and_already_injected_models():
    with pytest.raises(TypeError, match="does not support VGG.*ResNet.*ResNeXt.*MobileNetV2"):
        models.inject_attention(torchvision.models.vgg11())
    with pytest.raises(TypeError, match="does not support Sequential"):
        models.inject_attention(nn.Sequential(nn.Conv2d(3, 8, 3)))
    model = models.inject_attention(torchvision.models.resnet18(), "se")
    with pytest.raises(ValueError, match="already has attention"):
        models.inject_attention(model, "se")
    with pytest.raises(ValueError, match="MobileNetV2 takes attention position 'standard'"):
        models.inject_attention(
            torchvision.models.mobilenet_v2(), {"name": "se", "position": "post"}
        )
    with pytest.raises(ValueError, match="unknown attention 'sse'"):
        models.inject_attention(torchvision.models.resnet18(), "sse")


def test_torchvision_backbone_builder(monkeypatch):
    model = models.torchvision_backbone("resnet18", num_classes=10, attention="se")
    assert model.fc.out_features == 10 and n_se(model) == 8
    plain = models.torchvision_backbone("efficientnet_b0", num_classes=5)  # any model, no attention
    assert plain.classifier[-1].out_features == 5
    with pytest.raises(ValueError, match="unknown torchvision classification model 'resnet51'"):
        models.torchvision_backbone("resnet51")

    # Pretrained weights come with 1000 classes; the head is replaced for the dataset's.
    def fake_get_model(name, weights=None, **kwargs):
        assert weights == "DEFAULT" and "num_classes" not in kwargs
        return torchvision.models.resnet18()

    monkeypatch.setattr(torchvision.models, "get_model", fake_get_model)
    tuned = models.torchvision_backbone(
        "resnet18", num_classes=10, weights="DEFAULT", attention="se"
    )
    assert tuned.fc.out_features == 10 and n_se(tuned) == 8


def test_torchvision_backbone_from_yaml_gets_the_dataset_classes(in_tmp):
    cli = run(
        [
            "--config", str(REPO / "configs/cifar10/resnet20.yaml"),
            "--model.backbone.class_path=selab.models.torchvision_backbone",
            "--model.backbone.init_args.name=resnet18",
            "--model.backbone.init_args.attention=se",
        ],
        run=False,
    )  # fmt: skip
    assert cli.model.backbone.fc.out_features == 10  # set by before_instantiate_classes
    assert n_se(cli.model.backbone) == 8


def test_registry_lists_the_zoo():
    names = set(models.list_backbones())
    assert {
        "resnet18", "resnet34", "resnet50", "resnet164", "wrn16_8", "mobilenetv1", "vgg_small",
        "shake_shake26_2x32d", "shake_shake26_2x96d", "resnext29_8x64d", "resnext29_2x64d",
        "resnext29_4x64d", "torchvision_backbone",
    } <= names  # fmt: skip
    with pytest.raises(ValueError, match="unknown stem 'tiny'"):
        models.resnet18(stem="tiny")
    with pytest.raises(ValueError, match="6n \\+ 4"):
        models.WideResNet(depth=15)
    with pytest.raises(ValueError, match="unknown shake_backward 'random'"):
        models.shake_shake26_2x32d(shake_backward="random")
