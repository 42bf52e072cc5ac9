"""A tiny CNN for measuring host overhead: so little arithmetic per step that the time left is
what the training loop itself costs (Python, kernel launches, metrics, callbacks)."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """conv 3->16, BN, ReLU, max-pool, conv 16->32, BN, ReLU, global average pool, linear."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
