"""The augmentations of :mod:`selab.data.augment`, on whole uint8 batches on any device.

Every random choice comes from a per-image key (:func:`selab.data.sampling.sample_keys`), so
these are plain tensor ops: no RNG state, no per-image Python, no device-to-host reads, except
RandAugment / TrivialAugmentWide, which are torchvision's per-image transforms run in a loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2 import functional as TF

from .augment import (
    AUTO,
    CROP_COL,
    CROP_ROW,
    CUTMIX_COL,
    CUTMIX_ROW,
    CUTOUT_COL,
    CUTOUT_ROW,
    FLIP,
    MIX_KIND,
    AugmentSpec,
    alternating_flips,
)
from .sampling import key_field


def translate(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, padding: int, mode: str = "zeros"
) -> torch.Tensor:
    """Crop each image of a (B, C, H, W) batch at its own size from the image padded by
    ``padding`` pixels (``zeros`` or ``reflect``), at offsets ``top``, ``left`` in
    ``[0, 2 * padding]``: torchvision's ``crop(pad(image, padding), top, left, H, W)`` per image.

    One window per image is picked out of ``unfold`` views of the padded batch: two gathers of B
    indices rather than one index per pixel."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (padding,) * 4, mode="constant" if mode == "zeros" else "reflect")
    every = torch.arange(batch, device=images.device)
    rows = padded.unfold(2, height, 1)[every, :, top]  # (B, C, W + 2p, H)
    return rows.unfold(2, width, 1)[every, :, left]  # (B, C, H, W)


def flip_where(images: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
    """Mirror (horizontally) the images of a batch where ``flipped`` is true."""
    return torch.where(flipped[:, None, None, None], images.flip(3), images)


def geometry(
    images: torch.Tensor,
    keys: torch.Tensor,
    spec: AugmentSpec,
    seed: int,
    epoch: int,
    indices: torch.Tensor,
) -> torch.Tensor:
    """Random translation and flip of a uint8 batch, as the per-image RandomCrop + flip."""
    if spec.translate:
        span = 2 * spec.translate + 1
        top = key_field(keys, CROP_ROW) % span
        left = key_field(keys, CROP_COL) % span
        images = translate(images, top, left, spec.translate, spec.padding_mode)
    if spec.flip == "random":
        images = flip_where(images, (key_field(keys, FLIP) & 1).bool())
    elif spec.flip == "alternating":
        images = flip_where(images, alternating_flips(seed, epoch, indices))
    return images.contiguous()


def auto_augment(images: torch.Tensor, keys: list[int], transform: nn.Module) -> torch.Tensor:
    """torchvision's RandAugment / TrivialAugmentWide image by image (they draw one operation per
    call), each under torch's CPU RNG seeded from the image's key: ``keys`` are Python ints so that
    nothing is read back from the device. The cost is one transform call per image and epoch."""
    out = torch.empty_like(images)
    with torch.random.fork_rng(devices=[]):
        for i, key in enumerate(keys):
            torch.default_generator.manual_seed(key)
            out[i] = transform(images[i])
    return out


def auto_augment_keys(keys: torch.Tensor) -> list[int]:
    """Per-image seeds for :func:`auto_augment`, from keys computed on the CPU."""
    return key_field(keys.cpu(), AUTO).tolist()


def cutout_mask(keys: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    """(B, 1, H, W) bool: a ``size`` square centred uniformly in the image, clipped at its edges."""
    top = key_field(keys, CUTOUT_ROW) % height - size // 2
    left = key_field(keys, CUTOUT_COL) % width - size // 2
    return box_mask(top, left, top + size, left + size, height, width)


def box_mask(top, left, bottom, right, height: int, width: int) -> torch.Tensor:
    """(B, 1, H, W) bool: rows in [top, bottom) and columns in [left, right), per image."""
    ys = torch.arange(height, device=top.device)
    xs = torch.arange(width, device=top.device)
    rows = (ys >= top[:, None]) & (ys < bottom[:, None])
    cols = (xs >= left[:, None]) & (xs < right[:, None])
    return (rows[:, :, None] & cols[:, None, :])[:, None]


def mix(
    images: torch.Tensor,
    partners: torch.Tensor,
    targets: torch.Tensor,
    partner_targets: torch.Tensor,
    keys: torch.Tensor,
    spec: AugmentSpec,
    num_classes: int,
    lam_mixup: torch.Tensor | None = None,
    lam_cutmix: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp or CutMix of each image with its partner, with a λ per image; float (B, K) targets.

    Each image follows torchvision's v2.MixUp / v2.CutMix for its own λ: MixUp blends
    ``λ x + (1 - λ) partner``; CutMix pastes the partner into a box of half-sides
    ``int(0.5 sqrt(1 - λ) W)``, ``int(0.5 sqrt(1 - λ) H)`` around a uniform centre, clipped to
    the image, and sets λ to the area kept. With both on, a key bit picks one per image."""
    batch, _, height, width = images.shape
    device = images.device
    if spec.cutmix_alpha > 0 and spec.mixup_alpha > 0:
        use_cutmix = (key_field(keys, MIX_KIND) & 1).bool()
    else:
        use_cutmix = torch.full((batch,), spec.cutmix_alpha > 0, device=device)
    lam = torch.ones(batch, device=device)
    out = images
    if spec.cutmix_alpha > 0:
        r = 0.5 * torch.sqrt(1.0 - lam_cutmix.to(device, torch.float64))
        half_w, half_h = (r * width).long(), (r * height).long()
        centre_x = key_field(keys, CUTMIX_COL) % width
        centre_y = key_field(keys, CUTMIX_ROW) % height
        x1, x2 = (centre_x - half_w).clamp(min=0), (centre_x + half_w).clamp(max=width)
        y1, y2 = (centre_y - half_h).clamp(min=0), (centre_y + half_h).clamp(max=height)
        box = box_mask(y1, x1, y2, x2, height, width) & use_cutmix[:, None, None, None]
        out = torch.where(box, partners, images)
        kept = (1.0 - (x2 - x1) * (y2 - y1) / (width * height)).float()
        lam = torch.where(use_cutmix, kept, lam)
    if spec.mixup_alpha > 0:
        lam_mixup = lam_mixup.to(device, torch.float32)
        weight = lam_mixup[:, None, None, None]
        blended = partners * (1.0 - weight) + images * weight
        out = torch.where(use_cutmix[:, None, None, None], out, blended)
        lam = torch.where(use_cutmix, lam, lam_mixup)
    one_hot = F.one_hot(targets, num_classes).float()
    partner_one_hot = F.one_hot(partner_targets, num_classes).float()
    soft = partner_one_hot * (1.0 - lam[:, None]) + one_hot * lam[:, None]
    return out, soft


def beta_draws(alpha: float, count: int, seed: int) -> torch.Tensor:
    """``count`` draws of Beta(α, α) on the CPU from a seeded generator (torch's own sampler)."""
    if alpha <= 0:
        return torch.ones(count)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        beta = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))
        return beta.sample((count,))


def resize_uint8(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize like the per-image path's ``v2.Resize((size, size), antialias=True)``, image by image
    (the batched kernel can round differently), so both loaders see the same pixels."""
    if not size or images.shape[-2:] == (size, size):
        return images
    return torch.stack([TF.resize(image, [size, size], antialias=True) for image in images])
