"""Loading a checkpoint and the data it was trained on."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch


def resolve_checkpoint(path: str | Path) -> Path:
    """A ``.ckpt`` file, or for a run folder (``logs/<experiment>/version_N``) its best checkpoint.

    The best is the one ModelCheckpoint recorded in ``last.ckpt``; failing that ``last.ckpt``,
    failing that the newest ``.ckpt`` of the run.
    """
    from .. import runs

    path = Path(path)
    if path.is_file():
        return path
    folder = runs.checkpoint_dir(path) if runs.checkpoint_dir(path).is_dir() else path
    if not folder.is_dir():
        raise FileNotFoundError(f"{path} is neither a checkpoint file nor a run folder")
    last = folder / runs.LAST_CHECKPOINT
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False)
        for key, value in state.get("callbacks", {}).items():
            best = value.get("best_model_path") if key.startswith("ModelCheckpoint") else None
            if best and (folder / Path(best).name).is_file():
                return folder / Path(best).name
        return last
    found = sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no .ckpt file in {folder}")
    return found[-1]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"):
    """``Classifier.load_from_checkpoint`` for a checkpoint or run folder, in eval mode."""
    from ..classifier import Classifier

    return Classifier.load_from_checkpoint(
        resolve_checkpoint(path), map_location=map_location
    ).eval()


def datamodule_for(checkpoint: str | Path, **overrides):
    """The run's ``VisionDataModule``, rebuilt from the hyper-parameters saved in its checkpoint.

    ``overrides`` replace saved arguments, e.g. ``root=`` for data that moved, ``num_workers=``,
    ``batch_size=``. Downloads are off unless ``download=True`` is passed. The module is set up.
    """
    from ..data import VisionDataModule

    state = torch.load(resolve_checkpoint(checkpoint), map_location="cpu", weights_only=False)
    accepted = inspect.signature(VisionDataModule.__init__).parameters
    saved = {
        k: v for k, v in (state.get("datamodule_hyper_parameters") or {}).items() if k in accepted
    }  # LightningCLI adds entries of its own (``_instantiator``)
    if not saved:
        raise ValueError(f"{checkpoint} holds no datamodule hyper-parameters; build one yourself")
    args = {**saved, "download": False, **{k: v for k, v in overrides.items() if v is not None}}
    datamodule = VisionDataModule(**args)
    datamodule.setup("test")
    return datamodule


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def example_input(dataset_or_loader, n: int = 1) -> torch.Tensor:
    """``n`` images from a dataset (indexable, ``[i] -> (image, target)``) or from anything that
    yields batches (a ``DataLoader``, the memory loader's batches), as a batch."""
    if not hasattr(dataset_or_loader, "__getitem__"):
        batch = next(iter(dataset_or_loader))
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return images[:n]
    return torch.stack([dataset_or_loader[i][0] for i in range(n)])
