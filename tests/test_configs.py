"""Every shipped config trains one step and validates one step on fabricated data in its format.

``fast_dev_run`` runs one training and one validation batch with the config's own backbone,
optimizer, scheduler and image size; only the data (fake files in the real on-disk format, two
images a batch), the workers and the validation split size are overridden. A config whose
attention is not registered yet is skipped, naming it; nothing else may be skipped.
"""

from __future__ import annotations

import pytest
import torch
import yaml

from conftest import REPO
from fakedata import patch_cifar10_checksums, patch_stl10_checksums, write_cifar10, write_stl10
from selab.cli import run
from selab.models import list_attention

CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
WRITERS = {
    "cifar10": (write_cifar10, patch_cifar10_checksums),
    "stl10": (write_stl10, patch_stl10_checksums),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Batches of two images run fastest on one thread (and far faster on a busy machine, where
    OpenMP threads of tiny ops wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_roots(tmp_path_factory):
    """One fake copy of each dataset for the whole module (writing them is the slow part)."""
    roots = {}
    for name, (write, _) in WRITERS.items():
        root = tmp_path_factory.mktemp(name)
        write(root)
        roots[name] = root
    return roots


def test_every_config_is_covered():
    assert len(CONFIGS) >= 20
    for config in CONFIGS:
        data = yaml.safe_load(config.read_text())["data"]
        assert data.get("dataset", "cifar10") in WRITERS, f"{config}: no fake data for it"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_config_runs_one_step(config, data_roots, in_tmp, monkeypatch):
    spec = yaml.safe_load(config.read_text())
    attention = spec["model"]["backbone"].get("init_args", {}).get("attention", "none")
    if attention not in list_attention():
        pytest.skip(f"attention {attention!r} is not registered yet")
    dataset = spec["data"].get("dataset", "cifar10")
    root = data_roots[dataset]
    WRITERS[dataset][1](monkeypatch, root)
    args = [
        "fit", "--config", str(config),
        f"--data.root={root}", "--data.num_workers=0", "--data.batch_size=2",
        "--data.download=false", "--trainer.fast_dev_run=true",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    ]  # fmt: skip
    if spec["data"].get("val_size", 0):
        args.append("--data.val_size=10")  # the fake training splits are small
    cli = run(args)
    assert cli.trainer.global_step == 1
    assert cli.model.num_classes == 10
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss"])
    size = spec["data"].get("image_size") or {"cifar10": 32, "stl10": 96}[dataset]
    batch = next(iter(cli.datamodule.train_dataloader()))[0]
    assert batch.shape[-2:] == (size, size)  # the model ran at the config's input size
