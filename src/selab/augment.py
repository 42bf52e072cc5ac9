"""Augmentations, batched on tensors (the memory loader) and per image (the torchvision loader).

The batched path reproduces the per-image torchvision pipeline ``RandomCrop(size, padding=p)`` →
``RandomHorizontalFlip()`` → ``ToDtype(float32, scale=True)`` → ``Normalize`` → ``Cutout``: crop
offsets uniform in ``[0, 2p]`` on both axes, flips with probability 1/2, and the same float
conversion and normalisation functions, so given the same offsets both paths give the same pixels.
Its random draws come from :func:`selab.sampling.sample_keys`, one key per ``(epoch, index)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2 import functional as TF

from .sampling import key_field

# Fields of a sample key (see ``key_field``): one independent draw each.
CROP_ROW, CROP_COL, FLIP, CUTOUT_ROW, CUTOUT_COL = range(5)


@dataclass(frozen=True)
class BatchAugment:
    """What to do to a training batch: ``padding`` > 0 crops at the image size from a zero-padded
    image, ``flip`` mirrors half of the images, ``cutout`` > 0 blanks a square of that side."""

    padding: int = 0
    flip: bool = False
    cutout: int = 0


def crop_and_flip(images: torch.Tensor, keys: torch.Tensor, padding: int, flip: bool):
    """Random crop (from a ``padding``-px zero border) + horizontal flip of a uint8 (B, C, H, W)
    batch. Returns the batch and the (top, left, flipped) draws.

    The crop picks one window per image out of ``unfold`` views of the padded batch: two gathers
    of B indices rather than one index per pixel."""
    batch, channels, height, width = images.shape
    if padding:
        top = key_field(keys, CROP_ROW) % (2 * padding + 1)
        left = key_field(keys, CROP_COL) % (2 * padding + 1)
        padded = F.pad(images, (padding, padding, padding, padding))
        every = torch.arange(batch, device=images.device)
        rows = padded.unfold(2, height, 1)[every, :, top]  # (B, C, W + 2p, H)
        images = rows.unfold(2, width, 1)[every, :, left]  # (B, C, H, W)
    else:
        top = left = torch.zeros_like(keys)
    flipped = (key_field(keys, FLIP) & 1).bool() if flip else torch.zeros_like(keys, dtype=bool)
    if flip:
        images = torch.where(flipped[:, None, None, None], images.flip(3), images)
    return images.contiguous(), (top, left, flipped)


def cutout_mask(keys: torch.Tensor, size: int, height: int, width: int) -> torch.Tensor:
    """(B, 1, H, W) bool: a ``size`` square centred uniformly in the image, clipped at its edges."""
    device = keys.device
    top = key_field(keys, CUTOUT_ROW) % height - size // 2
    left = key_field(keys, CUTOUT_COL) % width - size // 2
    ys = torch.arange(height, device=device)
    xs = torch.arange(width, device=device)
    rows = (ys >= top[:, None]) & (ys < top[:, None] + size)
    cols = (xs >= left[:, None]) & (xs < left[:, None] + size)
    return (rows[:, :, None] & cols[:, None, :])[:, None]


def to_float(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 -> float32 in [0, 1] -> normalised: the very functions the per-image path uses."""
    images = TF.to_dtype(images, torch.float32, scale=True)  # a new tensor: normalise in place
    return TF.normalize(images, list(mean), list(std), inplace=True)


def augment_batch(
    images: torch.Tensor, keys: torch.Tensor, spec: BatchAugment | None, mean, std
) -> torch.Tensor:
    """uint8 (B, C, H, W) on any device -> augmented, normalised float32 (B, C, H, W)."""
    if spec is not None and (spec.padding or spec.flip):
        images, _ = crop_and_flip(images, keys, spec.padding, spec.flip)
    out = to_float(images, mean, std)
    if spec is not None and spec.cutout:
        out.masked_fill_(cutout_mask(keys, spec.cutout, *out.shape[-2:]), 0.0)
    return out


class Cutout(nn.Module):
    """Per-image Cutout (DeVries & Taylor 2017) for the torchvision path, on a normalised tensor:
    zero (the dataset mean) a ``size`` square whose centre is uniform over the image, clipped at the
    edges. Same distribution as :func:`cutout_mask`."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        top = int(torch.randint(height, ())) - self.size // 2
        left = int(torch.randint(width, ())) - self.size // 2
        image = image.clone()
        image[
            ..., max(top, 0) : max(top + self.size, 0), max(left, 0) : max(left + self.size, 0)
        ] = 0
        return image
