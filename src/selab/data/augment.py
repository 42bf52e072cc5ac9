"""The augmentation spec, the normalisation, and the per-image pipeline of the torchvision loader.

One :class:`AugmentSpec` drives both loaders. The per-image pipeline (DataLoader workers) is
torchvision's v2 transforms, in this order::

    Resize -> RandomCrop(size, padding=translate, padding_mode) -> flip -> RandAugment or
    TrivialAugmentWide -> Normalize -> Cutout          then, per batch: MixUp or CutMix

and :mod:`selab.data.batched` reproduces each step on whole uint8 tensors on the device for
the memory loader (same distributions; same pixels for the same offsets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .sampling import combine, key_field, sample_keys

FlipMode = Literal["random", "alternating", "none"]
PaddingMode = Literal["zeros", "reflect"]
AutoAugment = Literal["none", "randaugment", "trivialaugment"]

# Fields of a sample key (see ``key_field``): one independent draw per random choice.
CROP_ROW, CROP_COL, FLIP, CUTOUT_ROW, CUTOUT_COL, MIX_KIND, CUTMIX_ROW, CUTMIX_COL, AUTO = range(9)
# The epoch whose flip draw starts the alternating flip (no real epoch is negative).
FLIP_START_EPOCH = -1


@dataclass(frozen=True)
class AugmentSpec:
    """What to do to a training image, in this order.

    Args:
        translate: random crop at the image's size from the image padded by this many pixels
            on each side, i.e. a random shift of up to ``translate`` pixels along each axis
            (offsets uniform in ``[0, 2 * translate]``); 0 = none.
        padding_mode: ``zeros`` (RandomCrop's usual black border) or ``reflect``.
        flip: ``random`` (horizontal, probability 1/2), ``alternating`` (each image flipped on
            every other epoch, starting from a random per-image choice; Keller Jordan's airbench)
            or ``none``.
        auto_augment: ``randaugment`` (Cubuk et al. 2020) or ``trivialaugment`` (TrivialAugment
            Wide, Müller & Hutter 2021), torchvision's v2 defaults, on uint8 images.
        cutout: side of a square zeroed at a uniformly random centre after normalisation,
            clipped at the edges (DeVries & Taylor 2017); 0 = none.
        mixup_alpha, cutmix_alpha: Beta(α, α) parameters of MixUp (Zhang et al. 2018) and
            CutMix (Yun et al. 2019); 0 = off; both > 0 picks one of the two per image (memory
            loader) or per batch (torchvision loader) with probability 1/2. Targets become class
            probabilities (N, K).
    """

    translate: int = 0
    padding_mode: PaddingMode = "zeros"
    flip: FlipMode = "none"
    auto_augment: AutoAugment = "none"
    cutout: int = 0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "translate": self.translate >= 0,
            "cutout": self.cutout >= 0,
            "mixup_alpha": self.mixup_alpha >= 0,
            "cutmix_alpha": self.cutmix_alpha >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        choices = {
            "padding_mode": ("zeros", "reflect"),
            "flip": ("random", "alternating", "none"),
            "auto_augment": ("none", "randaugment", "trivialaugment"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}"
                )

    @property
    def mixes(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def auto_augment_transform(self) -> nn.Module | None:
        if self.auto_augment == "randaugment":
            return v2.RandAugment()
        if self.auto_augment == "trivialaugment":
            return v2.TrivialAugmentWide()
        return None


def alternating_flips(seed: int, epoch: int, indices: torch.Tensor) -> torch.Tensor:
    """Bool per image: flipped in ``epoch`` under the alternating flip.

    A seeded coin per image decides epoch 0; every later epoch flips the image iff the previous
    one did not, so each image is seen both ways in every pair of consecutive epochs."""
    start = key_field(sample_keys(seed, FLIP_START_EPOCH, indices), FLIP) & 1
    return (start ^ (epoch & 1)).bool()


class Normalize(nn.Module):
    """uint8 images -> float32 ``(x / 255 - mean) / std``, folded into ``x * scale + shift`` with
    one precomputed scale and shift per channel. Both loaders use this very module, so their
    evaluation batches are bit-identical on the same device."""

    def __init__(self, mean, std) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float64).view(-1, 1, 1)
        std = torch.as_tensor(std, dtype=torch.float64).view(-1, 1, 1)
        self.register_buffer("scale", (1 / (255 * std)).float(), persistent=False)
        self.register_buffer("shift", (-mean / std).float(), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(torch.float32).mul_(self.scale).add_(self.shift)


class Cutout(nn.Module):
    """Per-image Cutout (DeVries & Taylor 2017) for the torchvision loader, on a normalised
    tensor: zero (the dataset mean) a ``size`` square whose centre is uniform over the image,
    clipped at the edges. Same distribution as :func:`selab.data.batched.cutout_mask`."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        top = int(torch.randint(height, ())) - self.size // 2
        left = int(torch.randint(width, ())) - self.size // 2
        image = image.clone()
        rows = slice(max(top, 0), max(top + self.size, 0))
        cols = slice(max(left, 0), max(left + self.size, 0))
        image[..., rows, cols] = 0
        return image


class ImagePipeline:
    """One image (PIL or uint8 tensor) -> normalised float32 (C, H, W), for the torchvision loader.

    Called with the sampler's ``(epoch, index)``: the random draws then run under torch's CPU RNG
    seeded from ``(seed, epoch, index)``, so an image's augmentation in an epoch is the same
    whatever the workers, ranks or resumptions. ``epoch < 0`` (plain indexing) draws afresh.
    """

    def __init__(
        self,
        spec: AugmentSpec | None,
        normalize: Normalize,
        size: tuple[int, int] | None,
        resize: int | tuple[int, int] | None = None,
        seed: int = 0,
    ) -> None:
        spec = spec or AugmentSpec()
        self.seed = seed
        self.flip = spec.flip
        self.random = bool(
            spec.translate or spec.flip != "none" or spec.auto_augment != "none" or spec.cutout
        )
        before: list[nn.Module] = [v2.ToImage()]
        if resize:
            before.append(
                v2.Resize(resize if isinstance(resize, tuple) else (resize,) * 2, antialias=True)
            )
        if spec.translate:
            if size is None:
                raise ValueError("a random crop needs the image size")
            mode = "constant" if spec.padding_mode == "zeros" else "reflect"
            before.append(v2.RandomCrop(size, padding=spec.translate, padding_mode=mode))
        after: list[nn.Module] = []
        if (auto := spec.auto_augment_transform()) is not None:
            after.append(auto)
        after.append(normalize)
        if spec.cutout:
            after.append(Cutout(spec.cutout))
        self.before, self.after = v2.Compose(before), v2.Compose(after)

    def __call__(self, image, epoch: int = -1, index: int = 0) -> torch.Tensor:
        if epoch < 0 or not self.random:
            return self._apply(image, epoch, index)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(combine(self.seed, epoch, index))
            return self._apply(image, epoch, index)

    def _apply(self, image, epoch: int, index: int) -> torch.Tensor:
        image = self.before(image)
        if self.flip == "random" or (self.flip == "alternating" and epoch < 0):
            flipped = bool(torch.rand(()) < 0.5)
        elif self.flip == "alternating":
            flipped = bool(alternating_flips(self.seed, epoch, torch.tensor([index]))[0])
        else:
            flipped = False
        if flipped:
            image = TF.horizontal_flip(image)
        return self.after(image)


class BatchMix:
    """MixUp / CutMix on a collated batch for the torchvision loader (torchvision's v2 transforms:
    a partner is the previous image of the batch, one λ per batch), seeded by the batch's first
    ``(epoch, index)`` key so resumed runs mix alike."""

    def __init__(self, spec: AugmentSpec, num_classes: int, seed: int) -> None:
        options = []
        if spec.mixup_alpha > 0:
            options.append(v2.MixUp(alpha=spec.mixup_alpha, num_classes=num_classes))
        if spec.cutmix_alpha > 0:
            options.append(v2.CutMix(alpha=spec.cutmix_alpha, num_classes=num_classes))
        self.transform = options[0] if len(options) == 1 else v2.RandomChoice(options)
        self.seed = seed

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, epoch: int, index: int):
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(combine(self.seed, epoch, index, 0x6D6978))
            return self.transform(images, targets)
