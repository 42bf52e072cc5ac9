"""A small VGG-style network that trains on CIFAR-10 to 94% in about ten epochs.

Written from the method section of Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on a single
GPU" (arXiv 2404.00498, the airbench94 recipe); the recipe itself (optimizer, schedule, Lookahead,
augmentation, test-time augmentation) is ``configs/cifar10/speedrun94.yaml``. The network:

- **Patch whitening**: the first layer is a 2x2 convolution without padding whose 2 * 3 * 2 * 2 = 24
  filters are the eigenvectors of the covariance of 2x2 training-image patches, scaled by
  ``1 / sqrt(eigenvalue + eps)``, and their negatives (so a GELU after it keeps both signs).
  :meth:`SpeedrunNet.initialize_from_data` computes them from un-augmented training images
  (``Classifier`` calls it when ``fit`` starts). The filters are frozen; the bias trains for the
  first ``whiten_bias_epochs`` epochs only. The layer runs in float32 under mixed precision.
- **Three blocks** of conv3x3 -> max-pool 2x2 -> BN -> GELU -> conv3x3 -> BN -> GELU, with widths
  64, 256, 256 (32 px -> 31 after the 2x2 whitening, then 15, 7 and 3), global max pooling, and a
  bias-free linear layer whose logits are multiplied by ``logit_scale`` (1/9).
- **Identity initialisation**: the first ``in_channels`` filters of every 3x3 convolution are a
  Dirac delta, so each block starts close to passing its input through.
- **BatchNorm** with the scale frozen at 1 and a learnable bias (``parameter_groups`` gives the
  biases their own learning-rate multiplier, 64 in the recipe), momentum 0.4 in PyTorch's
  convention (0.6 in the paper's) and eps 1e-12.
- ``attention`` adds channel attention (``se``, ``eca``, ...) at the end of each block (stage 1..3),
  so the SE question can be asked at speedrun cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_backbone
from .layers import AttentionSpec, parse_attention

WIDTHS = (64, 256, 256)


class FrozenScaleBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose scale stays 1 (not trained) and whose bias trains."""

    def __init__(self, channels: int, momentum: float = 0.4, eps: float = 1e-12) -> None:
        super().__init__(channels, eps=eps, momentum=momentum)
        self.weight.requires_grad_(False)


class PatchWhitening(nn.Conv2d):
    """2x2 convolution (no padding) whose frozen filters whiten the image's 2x2 patches.

    It always runs in float32, autocast or not: its finest filters are scaled by up to
    ``1 / sqrt(eps)``, and bfloat16's 8-bit mantissa adds 5-18% error to those channels.
    """

    def __init__(self, in_channels: int = 3, patch: int = 2, eps: float = 5e-4) -> None:
        dims = in_channels * patch * patch
        super().__init__(in_channels, 2 * dims, patch, padding=0, bias=True)
        self.eps = eps
        self.weight.requires_grad_(False)
        nn.init.zeros_(self.bias)
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def initialize(self, images: torch.Tensor) -> None:
        """Set the filters from ``images`` (N, C, H, W), normalised as the network will see them."""
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"patch whitening needs images of shape (N, {self.in_channels}, H, W), got "
                f"{tuple(images.shape)}"
            )
        patches = F.unfold(images.double(), self.kernel_size)  # (N, C*k*k, L), conv weight order
        patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])
        patches = patches - patches.mean(0)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)  # largest first
        filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp_min(0) + self.eps)[:, None]
        filters = filters.reshape(-1, *self.weight.shape[1:])
        weight = torch.cat([filters, -filters]).to(self.weight)
        self.weight.copy_(weight)
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "meta":  # shape checks: no autocast there
            return F.conv2d(x, self.weight, self.bias)
        with torch.autocast(x.device.type, enabled=False):
            return F.conv2d(x.float(), self.weight.float(), self.bias.float())


def identity_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 conv (same padding, no bias) whose first ``in_channels`` filters pass their input on."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(in_channels, out_channels)])
    return conv


class SpeedrunBlock(nn.Module):
    """conv3x3 -> max-pool 2x2 -> BN -> GELU -> conv3x3 -> BN -> GELU (-> attention)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        attention: AttentionSpec | str = "none",
        stage: int | None = None,
        bn_momentum: float = 0.4,
    ) -> None:
        super().__init__()
        self.conv1 = identity_conv(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = FrozenScaleBatchNorm(out_channels, bn_momentum)
        self.conv2 = identity_conv(out_channels, out_channels)
        self.bn2 = FrozenScaleBatchNorm(out_channels, bn_momentum)
        self.act = nn.GELU()
        self.attention = parse_attention(attention).create(out_channels, stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.pool(self.conv1(x))))
        x = self.act(self.bn2(self.conv2(x)))
        return self.attention(x)


class SpeedrunNet(nn.Module):
    """Patch whitening, three conv blocks, global max pooling, scaled linear head.

    Args:
        num_classes: outputs of the head.
        widths: channels of the three blocks (64, 256, 256 in the paper's 94% network).
        attention: channel attention at the end of each block (stages 1..3), e.g. ``se``.
        logit_scale: multiplies the logits (1/9): a temperature that suits label smoothing 0.2.
        bn_momentum: BatchNorm running-statistics momentum in PyTorch's convention.
        whiten_bias_epochs: epochs during which the whitening layer's bias trains (then frozen).
        whiten_images: training images used to compute the whitening filters.
        norm_bias_lr_scale: learning-rate multiplier of the BatchNorm biases (64; their weight
            decay is divided by it, so the decay per step is the other weights').
        in_channels: image channels.
    """

    def __init__(
        self,
        num_classes: int = 10,
        widths: Sequence[int] = WIDTHS,
        attention: AttentionSpec | str = "none",
        logit_scale: float = 1 / 9,
        bn_momentum: float = 0.4,
        whiten_bias_epochs: int = 3,
        whiten_images: int = 5000,
        norm_bias_lr_scale: float = 64.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"SpeedrunNet has three blocks; got widths {list(widths)}")
        spec = parse_attention(attention)
        spec.require_position("standard", backbone="SpeedrunNet")
        spec.check_stages(len(widths), "SpeedrunNet")
        self.whiten_bias_epochs = whiten_bias_epochs
        self.whiten_images = whiten_images
        self.norm_bias_lr_scale = norm_bias_lr_scale
        self.logit_scale = logit_scale
        self.whiten = PatchWhitening(in_channels)
        self.act = nn.GELU()
        blocks, channels = [], self.whiten.out_channels
        for stage, width in enumerate(widths, start=1):
            blocks.append(SpeedrunBlock(channels, width, spec, stage, bn_momentum))
            channels = width
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.num_features = channels
        self.head = nn.Linear(channels, num_classes, bias=False)

    # -- hooks the Classifier calls -------------------------------------------------------------
    def initialize_from_data(self, sample_images: Callable[[int], torch.Tensor]) -> None:
        """Compute the whitening filters from ``sample_images(count)`` (un-augmented, normalised)."""
        if bool(self.whiten.initialized):  # already set, e.g. from a checkpoint
            return
        self.whiten.initialize(sample_images(self.whiten_images))

    def set_epoch(self, epoch: int) -> None:
        """Freeze the whitening bias once ``whiten_bias_epochs`` epochs have been trained.

        ``requires_grad = False`` leaves its gradient ``None``, so the optimizer skips it: a zero
        gradient would still let momentum move it.
        """
        trains = epoch < self.whiten_bias_epochs
        self.whiten.bias.requires_grad_(trains)
        if not trains:
            self.whiten.bias.grad = None

    def parameter_groups(self) -> list[dict]:
        """Trainable parameters for the optimizer: BatchNorm biases with their learning rate
        multiplied by ``norm_bias_lr_scale`` (and weight decay divided by it, so the decay per step
        stays the same), the whitening bias without weight decay (it stops training early; decay
        would keep shrinking it), and the rest."""
        scale = self.norm_bias_lr_scale
        norm_biases, whiten_bias, rest = [], [], []
        for module in self.modules():
            for name, param in module.named_parameters(recurse=False):
                if module is self.whiten and name == "bias":
                    whiten_bias.append(param)  # whether or not it is frozen yet (resume)
                elif not param.requires_grad:
                    continue
                elif isinstance(module, nn.BatchNorm2d) and name == "bias":
                    norm_biases.append(param)
                else:
                    rest.append(param)
        return [
            {"params": rest},
            {
                "params": norm_biases,
                "lr_scale": scale,
                "weight_decay_scale": 1 / scale,
            },
            {"params": whiten_bias, "weight_decay_scale": 0.0},
        ]

    # -- forward --------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.act(self.whiten(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.forward_features(x)).flatten(1)
        return self.head(features) * self.logit_scale


@register_backbone
def speedrun_net(**kwargs) -> SpeedrunNet:
    """The airbench94-style network: whitening, blocks of 64/256/256 channels (1.97M parameters)."""
    return SpeedrunNet(**kwargs)
