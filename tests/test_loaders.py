"""The memory loader against the per-image torchvision loader, sharding, seeding and the cache."""

import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from fakedata import write_imagefolder
from selab import memory
from selab.data import Transformed, VisionDataModule
from selab.memory import MemoryLoaderUnsupported, TensorImageDataset
from selab.sampling import EpochSampler, sample_keys

IDENTITY = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "num_workers": 0}


def batches(loader):
    images, labels = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(labels)


def attach(dm, world_size, rank):
    """What the datamodule reads from a Trainer: its device, world size and rank."""
    dm.trainer = SimpleNamespace(
        world_size=world_size,
        global_rank=rank,
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
    )
    return dm


# -- same data, either loader -------------------------------------------------------------------
@pytest.mark.parametrize("val_size", [0, 20])
def test_memory_loader_serves_the_same_eval_images_as_torchvision(cifar10_root, val_size):
    def eval_data(loader):
        dm = VisionDataModule(
            "cifar10", root=str(cifar10_root), download=False, batch_size=16, loader=loader,
            val_size=val_size, num_workers=0,
        )  # fmt: skip
        dm.setup("fit")
        assert dm.active_loader == loader
        return batches(dm.val_dataloader()), batches(dm.test_dataloader())

    for expected, got in zip(eval_data("torchvision"), eval_data("memory"), strict=True):
        torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)  # bit-identical
        assert got[1].tolist() == expected[1].tolist()


def test_memory_loader_resizes_like_torchvision(imagefolder_root):
    def test_data(loader):
        dm = VisionDataModule(
            "imagefolder", root=str(imagefolder_root), image_size=24, loader=loader, **IDENTITY
        )
        dm.setup("test")
        return batches(dm.test_dataloader())

    (expected, labels), (got, got_labels) = test_data("torchvision"), test_data("memory")
    assert got.shape[-2:] == (24, 24)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert got_labels.tolist() == labels.tolist()


# -- augmentation: same distribution as torchvision's per-image transforms --------------------------
def coordinate_image(size: int = 32) -> torch.Tensor:
    """uint8 (3, H, W): channel 0 encodes the row, channel 1 the column, never 0 (the padding)."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return torch.stack([rows * 7 + 1, cols * 7 + 1, torch.full_like(rows, 200)]).to(torch.uint8)


def recover_draws(views: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """(top, left, flipped) of each view of ``coordinate_image`` (identity normalisation).

    The 2x2 pixels at the centre always come from the image itself, whatever the crop."""
    values = (views[:, :2, 16:18, 16:18] * 255).round().long()
    source_row = (values[:, 0, 0, 0] - 1) // 7
    col_a, col_b = (values[:, 1, 0, 0] - 1) // 7, (values[:, 1, 0, 1] - 1) // 7
    flipped = col_b < col_a
    top = source_row - 16 + padding
    # Not flipped: output column c shows source column left + c - p; flipped: left + (W-1-c) - p.
    left = torch.where(flipped, col_a - (31 - 16) + padding, col_a - 16 + padding)
    return torch.stack([top, left, flipped.long()], dim=1)


def chi_square_uniform(values: torch.Tensor, bins: int) -> float:
    counts = torch.bincount(values, minlength=bins).double()
    assert len(counts) == bins, f"values outside 0..{bins - 1}"
    expected = len(values) / bins
    return float(((counts - expected) ** 2 / expected).sum())


def chi_square_critical(dof: int) -> float:
    """About the 0.1% tail of chi-square(dof) (Wilson-Hilferty), so a correct test fails 1 in 1000."""
    z = 3.09
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def test_crop_and_flip_statistics_match_torchvision():
    image = coordinate_image()
    spec = VisionDataModule("cifar10", augment="standard").batch_augment(32, 32)
    n = 4000
    # Memory loader: image 0 in epochs 0..n-1, as the sampler would key it.
    batched = TensorImageDataset(image[None], torch.zeros(1), (0,) * 3, (1,) * 3, spec, seed=7)
    memory_views = batched.__getitems__([(epoch, 0) for epoch in range(n)])[0]
    # torchvision loader: the very transform VisionDataModule builds, seeded per (epoch, index).
    dm = VisionDataModule("cifar10", augment="standard", **IDENTITY)
    per_image = Transformed([(TF.to_pil_image(image), 0)], dm.transform(train=True), seed=7)
    torch_views = torch.stack([per_image[(epoch, 0)][0] for epoch in range(n // 2)])

    for views in (memory_views, torch_views):
        draws = recover_draws(views)
        top, left, flipped = draws.T
        cells = (top * 9 + left) * 2 + flipped  # 162 equally likely (top, left, flip) cells
        for values, bins in ((top, 9), (left, 9), (flipped, 2), (cells, 162)):
            assert chi_square_uniform(values, bins) < chi_square_critical(bins - 1)
        # Same pixels as torchvision's functional crop + flip for the drawn offsets.
        for view, (top, left, f) in zip(views[:50], draws[:50].tolist(), strict=True):
            expected = TF.crop(TF.pad(image, [4]), top, left, 32, 32)
            expected = TF.horizontal_flip(expected) if f else expected
            torch.testing.assert_close((view * 255).round().to(torch.uint8), expected)
    # And the two paths' histograms agree with each other (two-sample chi-square on top x flip).
    a, b = recover_draws(memory_views), recover_draws(torch_views)
    ca = torch.bincount(a[:, 0] * 2 + a[:, 2], minlength=18).double()
    cb = torch.bincount(b[:, 0] * 2 + b[:, 2], minlength=18).double()
    k1, k2 = math.sqrt(cb.sum() / ca.sum()), math.sqrt(ca.sum() / cb.sum())
    statistic = float(((k1 * ca - k2 * cb) ** 2 / (ca + cb)).sum())
    assert statistic < chi_square_critical(17)


def test_cutout_statistics_match_torchvision():
    image = torch.full((3, 32, 32), 200, dtype=torch.uint8)
    dm = VisionDataModule("cifar10", augment="none", cutout=16, **IDENTITY)
    batched = TensorImageDataset(
        image[None], torch.zeros(1), (0,) * 3, (1,) * 3, dm.batch_augment(32, 32), seed=3
    )
    memory_views = batched.__getitems__([(epoch, 0) for epoch in range(3000)])[0]
    per_image = Transformed([(TF.to_pil_image(image), 0)], dm.transform(train=True), seed=3)
    torch_views = torch.stack([per_image[(epoch, 0)][0] for epoch in range(1500)])
    for views in (memory_views, torch_views):
        blank = views[:, 0] == 0
        assert (blank == views.eq(0).all(1)).all()  # all channels blanked together
        for axis in (2, 1):  # rows, then columns
            covered = blank.any(axis)
            first = covered.double().argmax(1)
            last = 32 - covered.flip(1).double().argmax(1)  # exclusive
            assert ((last - first) == covered.sum(1)).all()  # one contiguous band
            # The square spans [centre - 8, centre + 8) clipped to [0, 32): recover the centre.
            centre = torch.where(first > 0, first + 8, last - 8)
            assert chi_square_uniform(centre, 32) < chi_square_critical(31)
        heights, widths = blank.any(2).sum(1), blank.any(1).sum(1)
        assert (blank.sum((1, 2)) == heights * widths).all()  # rectangles
        assert heights.min() == 8 and heights.max() == 16


def test_augmentation_is_seeded_different_every_epoch_and_independent_of_the_batch_size(
    imagefolder_root,
):
    def epoch_views(epoch, seed=0, batch_size=8):
        dm = VisionDataModule(
            "imagefolder", root=str(imagefolder_root), loader="memory", seed=seed,
            batch_size=batch_size, **IDENTITY,
        )  # fmt: skip
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        order = [index for _, index in loader.sampler]
        images, labels = batches(loader)
        return images[torch.argsort(torch.tensor(order))], order  # by image index

    first, order = epoch_views(0)
    again, order_again = epoch_views(0, batch_size=5)
    assert order == order_again and torch.equal(first, again)
    second, order_second = epoch_views(1)
    assert order_second != order
    changed = (first != second).flatten(1).any(1).double().mean()
    assert changed > 0.9  # 1/162 of the images may draw the same crop and flip again
    other_seed, order_other = epoch_views(0, seed=1)
    assert order_other != order and not torch.equal(other_seed, first)


def test_global_seed_changes_the_data_stream(imagefolder_root, monkeypatch):
    dm = VisionDataModule("imagefolder", root=str(imagefolder_root), **IDENTITY)
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")
    seed0 = dm.stream_seed
    monkeypatch.setenv("PL_GLOBAL_SEED", "1")
    assert dm.stream_seed != seed0


# -- DDP sharding -------------------------------------------------------------------------------
@pytest.mark.parametrize("loader", ["memory", "torchvision"])
def test_each_rank_gets_its_own_shard_every_epoch(cifar10_root, loader):
    def shard(rank, world, epoch, split):
        dm = VisionDataModule(
            "cifar10", root=str(cifar10_root), download=False, batch_size=8, loader=loader,
            val_size=15, **IDENTITY,
        )  # fmt: skip
        attach(dm, world, rank).setup("fit")
        loader_ = dm.train_dataloader() if split == "train" else dm.val_dataloader()
        loader_.sampler.set_epoch(epoch)
        keys = list(loader_.sampler)
        images, labels = batches(loader_)
        return [index for _, index in keys], images

    for epoch in (0, 1):
        single, single_images = shard(0, 1, epoch, "train")
        ranks = [shard(rank, 3, epoch, "train") for rank in range(3)]
        indices = [r[0] for r in ranks]
        assert all(len(i) == len(set(i)) == 29 for i in indices)  # 85 images padded to 3 x 29
        assert set().union(*indices) == set(range(85))  # together: every image, 2 of them twice
        assert sorted(single) == list(range(85))
        # The same image in the same epoch is augmented the same way on any number of ranks.
        position = {index: k for k, index in enumerate(single)}
        for index_list, images in ranks:
            for k, index in enumerate(index_list):
                torch.testing.assert_close(images[k], single_images[position[index]])
    assert shard(0, 3, 0, "train")[0] != shard(0, 3, 1, "train")[0]  # reshuffled each epoch
    # Validation: 15 images on 2 ranks -> 8 + 7, no image twice (DistributedSampler pads to 16).
    val = [shard(rank, 2, 0, "val")[0] for rank in range(2)]
    assert sorted(val[0] + val[1]) == list(range(15)) and [len(v) for v in val] == [8, 7]


def test_epoch_sampler_is_distributed_sampler_when_even():
    from torch.utils.data import DistributedSampler

    data = list(range(23))
    for rank in range(4):
        ours = EpochSampler(data, 4, rank, shuffle=True, seed=5)
        theirs = DistributedSampler(data, 4, rank, shuffle=True, seed=5)
        for epoch in (0, 3):
            ours.set_epoch(epoch), theirs.set_epoch(epoch)
            assert [index for _, index in ours] == list(theirs)
            assert {e for e, _ in ours} == {epoch}


def test_sample_keys_are_well_spread():
    keys = sample_keys(0, torch.zeros(100_000, dtype=torch.long), torch.arange(100_000))
    assert keys.min() >= 0 and keys.max() < 2**32
    assert len(keys.unique()) > 99_990
    bits = torch.stack([(keys >> b) & 1 for b in range(32)]).double().mean(1)
    assert (bits - 0.5).abs().max() < 0.01


# -- loader choice and the decode cache ---------------------------------------------------------
def test_auto_picks_memory_and_falls_back_for_mixed_sizes(tmp_path):
    root = tmp_path / "images"
    write_imagefolder(root, n_train=10, n_test=10)
    dm = VisionDataModule("imagefolder", root=str(root), **IDENTITY)
    dm.setup("fit")
    assert dm.active_loader == "memory"
    write_imagefolder(tmp_path / "other", n_train=1, n_test=0, size=24)
    odd = next((tmp_path / "other/train").rglob("*.png"))
    os.replace(odd, next((root / "train").iterdir()) / "zz_odd.png")
    auto = VisionDataModule("imagefolder", root=str(root), **IDENTITY)
    with pytest.warns(UserWarning, match="differ in size"):
        auto.setup("fit")
    assert auto.active_loader == "torchvision"
    with pytest.raises(MemoryLoaderUnsupported, match="zz_odd.png.*image_size"):
        VisionDataModule("imagefolder", root=str(root), loader="memory", **IDENTITY).setup("fit")
    resized = VisionDataModule("imagefolder", root=str(root), image_size=16, **IDENTITY)
    resized.setup("fit")
    assert resized.active_loader == "memory"


def test_decode_cache_is_used_and_invalidated_when_the_source_changes(tmp_path, monkeypatch):
    from PIL import Image

    root = tmp_path / "images"
    write_imagefolder(root, n_train=10, n_test=10)

    def train_images():
        dm = VisionDataModule("imagefolder", root=str(root), augment="none", **IDENTITY)
        dm.prepare_data()
        dm.setup("fit")
        return dm.train_set.images.clone()

    first = train_images()
    cached = sorted((root / ".selab-cache").glob("train-native-*.npz"))
    assert len(cached) == 1
    decode = memory.decode_folder
    calls = []
    monkeypatch.setattr(memory, "decode_folder", lambda *a, **k: calls.append(1) or decode(*a, **k))
    assert torch.equal(train_images(), first) and calls == []  # read from the cache

    path = sorted((root / "train").rglob("*.png"))[0]
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)  # same name, new content
    changed = train_images()
    assert calls == [1] and changed.sum() < first.sum()
    assert (changed == 0).all(dim=(1, 2, 3)).sum() == 1
    now = sorted((root / ".selab-cache").glob("train-native-*.npz"))
    assert len(now) == 1 and now != cached  # the stale cache is gone


def test_unwritable_cache_only_warns(tmp_path, monkeypatch):
    root = tmp_path / "images"
    write_imagefolder(root, n_train=10, n_test=10)
    (root / ".selab-cache").write_text("a file where the cache folder should be")
    dm = VisionDataModule("imagefolder", root=str(root), **IDENTITY)
    with pytest.warns(UserWarning, match="could not cache"):
        dm.setup("fit")
    assert dm.active_loader == "memory" and len(dm.train_set) == 10
