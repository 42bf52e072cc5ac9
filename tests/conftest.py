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
