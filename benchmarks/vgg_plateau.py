"""Is the small VGG's plateau at chance the note's or selab's? (``configs/studies/vgg_small``)

With its faithful recipe (PyTorch's default initialisation, SGD lr 0.1 without momentum, pixels in
[0, 1]) the channel-attention network of the course study "small VGG on CIFAR-10" sometimes stays
at 10% test accuracy for many epochs. This trains, for each seed, for a few epochs:

- ``note``: the note's own network (``VGG_CA``, transcribed in ``tests/seed_reference.py``) with
  the note's loop: ``torch.manual_seed(seed)``, the network, ``SGD(lr=0.1)``, a shuffled
  ``DataLoader`` of batch 100 over ``ToTensor()`` images, cross-entropy; test accuracy on the whole
  test split after every epoch;
- ``selab``: ``selab fit --config configs/studies/vgg_small/recipe.yaml --config
  configs/studies/vgg_small/ca.yaml --seed_everything SEED --trainer.max_epochs EPOCHS`` on the
  same image folder (its per-epoch ``val/acc_top1`` is test accuracy: the recipe's ``val_size: 0``);

and writes the per-epoch test accuracies and the number of seeds still at chance level
(accuracy <= 1/10 + 1 point) after the last epoch, as JSON.

    python benchmarks/vgg_plateau.py --data-root DIR --seeds 0 1 2 3 4 5 --epochs 3 \\
        --which note --out plateau_note.json

``DIR`` holds ``train/<class>/*`` and ``test/<class>/*`` (CIFAR-10 as image folders). One torch
thread per process; run ``--which note`` and ``--which selab`` as two processes to use two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
CHANCE = 0.1 + 0.01


def load_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """An image folder split as ``ToTensor()`` would give it: float (N, 3, H, W) in [0, 1]."""
    from torchvision import datasets
    from torchvision.io import ImageReadMode, decode_image, read_file

    folder = datasets.ImageFolder(str(root / split))
    images = torch.stack(
        [decode_image(read_file(path), mode=ImageReadMode.RGB) for path, _ in folder.samples]
    )
    return images.float() / 255.0, torch.tensor(folder.targets)


def train_note(seed: int, epochs: int, train, test) -> list[float]:
    """The note's loop for ``VGG_CA``; test accuracy after every epoch."""
    sys.path.insert(0, str(REPO / "tests"))
    from seed_reference import VGG_CA

    torch.manual_seed(seed)
    network = VGG_CA()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*train), batch_size=100, shuffle=True
    )
    accuracies = []
    for _ in range(epochs):
        network.train()
        for images, labels in loader:
            loss = F.cross_entropy(network(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        network.eval()
        with torch.no_grad():
            predictions = torch.cat([network(chunk).argmax(1) for chunk in test[0].split(1000)])
        accuracies.append(float((predictions == test[1]).float().mean()))
    return accuracies


def train_selab(seed: int, epochs: int, data_root: Path) -> list[float]:
    """``selab fit`` of the study's ``ca`` arm; its per-epoch val/acc_top1 (test split)."""
    sys.path.insert(0, str(REPO / "src"))
    from selab import runs

    with tempfile.TemporaryDirectory() as logs:
        logger = {"class_path": "selab.loggers.CSVLogger",
                  "init_args": {"save_dir": logs, "name": "ca", "version": 0}}  # fmt: skip
        command = [
            sys.executable, "-m", "selab", "fit",
            "--config", str(REPO / "configs/studies/vgg_small/recipe.yaml"),
            "--config", str(REPO / "configs/studies/vgg_small/ca.yaml"),
            f"--seed_everything={seed}", f"--trainer.max_epochs={epochs}",
            "--data.dataset=imagefolder", f"--data.root={data_root}",
            "--trainer.enable_progress_bar=false",
            "--trainer.logger=" + json.dumps(logger),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"selab fit failed (seed {seed}):\n{done.stderr[-3000:]}")
        metrics = runs.read_metrics(Path(logs, "ca", "version_0"))
        return [float(v) for v in runs.epoch_values(metrics, "val/acc_top1")]


def machine() -> str:
    """The processor's model name and core count (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    return f"{platform.machine()}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--which", choices=["note", "selab"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.which == "note":
        train, test = load_split(args.data_root, "train"), load_split(args.data_root, "test")
    result = {
        "which": args.which,
        "epochs": args.epochs,
        "chance_threshold": CHANCE,
        "machine": machine(),
        "threads": 1,
        "torch": torch.__version__,
        "seeds": {},
    }
    for seed in args.seeds:
        start = time.time()
        if args.which == "note":
            accuracies = train_note(seed, args.epochs, train, test)
        else:
            accuracies = train_selab(seed, args.epochs, args.data_root)
        result["seeds"][str(seed)] = {"test_acc": accuracies, "seconds": round(time.time() - start)}
        print(f"{args.which} seed {seed}: {[round(a, 4) for a in accuracies]}", flush=True)
        at_chance = [s for s, r in result["seeds"].items() if r["test_acc"][-1] <= CHANCE]
        result["at_chance_after_last_epoch"] = at_chance
        temporary = args.out.with_name(args.out.name + ".tmp")
        temporary.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(temporary, args.out)


if __name__ == "__main__":
    main()
