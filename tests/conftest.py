import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from fakedata import (  # noqa: E402
    patch_cifar10_checksums,
    patch_stl10_checksums,
    write_cifar10,
    write_imagefolder,
    write_stl10,
)

REPO = Path(__file__).resolve().parents[1]
# Lightning 2.6 still calls jsonargparse APIs deprecated in 4.49; not ours to fix.
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
# The tests run tiny batches: one intra-op thread is faster than two fighting over 2 shared cores.
torch.set_num_threads(1)
# `make test` runs under make, whose MAKELEVEL changes selab's advice ("make train DATA=DIR");
# the tests that want make's wording set it themselves.
os.environ.pop("MAKELEVEL", None)


@pytest.fixture
def cifar10_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_cifar10(root)
    patch_cifar10_checksums(monkeypatch, root)
    return root


@pytest.fixture
def stl10_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_stl10(root)
    patch_stl10_checksums(monkeypatch, root)
    return root


@pytest.fixture
def imagefolder_root(tmp_path):
    root = tmp_path / "images"
    write_imagefolder(root)
    return root


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt fails at once, as on a machine with no network."""
    import urllib.error
    import urllib.request

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(urllib.request.OpenerDirector, "open", refuse)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in a scratch directory (logs/ is relative) with a clean argv."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning"])
    return tmp_path


QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
# SE-ResNet-20: the ResNet-20 recipe with the SE overlay; runs are named cifar10/resnet20+se.
SE_ARGS = [
    "--config", str(REPO / "configs/cifar10/resnet20.yaml"),
    "--config", str(REPO / "configs/attention/se.yaml"),
]  # fmt: skip
SE_RUN_NAME = "cifar10/resnet20+se"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One tiny SE-ResNet-20 run for the whole session, trained and tested through the CLI.

    2 epochs of 2 batches on 40 imagefolder images, then ``lightning test`` on its last.ckpt, which
    logs into the same run folder. Tests may read it; only test_predict adds files to it.
    """
    from types import SimpleNamespace

    from selab.cli import run

    base = tmp_path_factory.mktemp("tiny_run")
    images = base / "images"
    write_imagefolder(images)
    logs = base / "logs"
    common = [
        *SE_ARGS, "--data.dataset=imagefolder", f"--data.root={images}",
        "--data.num_workers=0", "--data.batch_size=20", f"--trainer.logger.init_args.save_dir={logs}",
        *QUIET,
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["lightning"])
        fit = run(
            [
                "fit",
                *common,
                "--trainer.max_epochs=2",
                "--trainer.limit_train_batches=2",
                "--trainer.log_every_n_steps=1",
                "--excitation.figure_every_n_epochs=1",
            ]  # fmt: skip
        )
        log_dir = Path(fit.trainer.log_dir)
        ckpt = log_dir / "checkpoints" / "last.ckpt"
        test = run(["test", *common, f"--ckpt_path={ckpt}"])
    return SimpleNamespace(
        base=base, images=images, logs=logs, log_dir=log_dir, ckpt=ckpt, fit=fit, test=test,
        common=common,
    )  # fmt: skip


@pytest.fixture
def kernel_env(monkeypatch):
    """Notebook kernels import the selab under test (they inherit this environment)."""
    import selab

    src = str(Path(selab.__file__).resolve().parents[1])
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
