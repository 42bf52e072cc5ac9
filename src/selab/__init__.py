"""selab: channel-attention (Squeeze-and-Excitation) experiments with PyTorch Lightning."""

from .classifier import Classifier
from .data import VisionDataModule

__all__ = ["Classifier", "VisionDataModule"]
__version__ = "0.1.0"
