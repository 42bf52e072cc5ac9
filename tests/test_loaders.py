"""The memory loader against torchvision's functional ops and the per-image loader: augmentation,
determinism, sharding, static shapes, host syncs, loader choice and the decode cache."""

import math
import os
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DistributedSampler
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from fakedata import write_image, write_imagefolder
from selab.data import IGNORE_INDEX, AugmentSpec, DataError, VisionDataModule, cache
from selab.data.augment import ImagePipeline, Normalize, alternating_flips
from selab.data.batched import beta_draws, mix, translate
from selab.data.memory import DeviceSplit, EvalBatches, TrainEpochs
from selab.data.sampling import EpochSampler, combine, sample_keys, shard_indices

IDENTITY = {"normalize": False, "num_workers": 0}
UNIT = Normalize((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def batches(loader):
    images, labels = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(labels)


def attach(dm, world_size, rank):
    """What the datamodule reads from a Trainer: its device, world size and rank."""
    dm.trainer = SimpleNamespace(
        world_size=world_size,
        global_rank=rank,
        num_devices=world_size,
        predicting=False,
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
    )
    return dm


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images * 255).round().to(torch.uint8)


# -- same data, either loader -------------------------------------------------------------------
@pytest.mark.parametrize("val_size", [0, 20])
def test_memory_loader_serves_the_same_eval_images_as_torchvision(cifar10_root, val_size):
    def eval_data(loader):
        dm = VisionDataModule(
            "cifar10", root=str(cifar10_root), download=False, batch_size=16, loader=loader,
            val_size=val_size, num_workers=0,
        )  # fmt: skip
        dm.setup("test")
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


# -- batched augmentation == torchvision's functional ops ---------------------------------------
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_translate_equals_torchvision_crop_of_the_padded_image(mode):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 12, 10), dtype=torch.uint8, generator=generator)
    padding = 3
    top = torch.randint(0, 2 * padding + 1, (64,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (64,), generator=generator)
    got = translate(images, top, left, padding, mode)
    torch_mode = "constant" if mode == "zeros" else "reflect"
    for image, row, col, out in zip(images, top.tolist(), left.tolist(), got, strict=True):
        padded = TF.pad(image, [padding], padding_mode=torch_mode)
        torch.testing.assert_close(out, TF.crop(padded, row, col, 12, 10), rtol=0, atol=0)


def coordinate_image(size: int = 32) -> torch.Tensor:
    """uint8 (3, H, W): channel 0 encodes the row, channel 1 the column, never 0 (the padding)."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return torch.stack([rows * 7 + 1, cols * 7 + 1, torch.full_like(rows, 200)]).to(torch.uint8)


def recover_draws(views: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """(top, left, flipped) of uint8 views of ``coordinate_image``.

    The 2x2 pixels at the centre always come from the image itself, whatever the crop."""
    values = views[:, :2, 16:18, 16:18].long()
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


def memory_views(image, spec, count, seed=7):
    """``count`` copies of an image as the memory loader augments them in one epoch: each copy
    has its own index, hence its own draws."""
    split = DeviceSplit(
        image[None].repeat(count, 1, 1, 1), torch.zeros(count, dtype=torch.long), UNIT
    )
    return TrainEpochs(split, 1, spec, seed, num_classes=1).build(0)[0]


def test_crop_and_flip_statistics_match_torchvision():
    image = coordinate_image()
    spec = VisionDataModule("cifar10").augment_spec
    assert (spec.translate, spec.flip, spec.padding_mode) == (4, "random", "zeros")
    batched = to_uint8(memory_views(image, spec, 4000))
    # The torchvision loader's pipeline (v2.RandomCrop + flip), seeded per (epoch, index).
    pipeline = ImagePipeline(spec, UNIT, (32, 32), seed=7)
    per_image = to_uint8(torch.stack([pipeline(TF.to_pil_image(image), e, 0) for e in range(2000)]))
    for views in (batched, per_image):
        draws = recover_draws(views)
        top, left, flipped = draws.T
        cells = (top * 9 + left) * 2 + flipped  # 162 equally likely (top, left, flip) cells
        for values, bins in ((top, 9), (left, 9), (flipped, 2), (cells, 162)):
            assert chi_square_uniform(values, bins) < chi_square_critical(bins - 1)
        # Same pixels as torchvision's functional crop + flip for the drawn offsets.
        for view, (row, col, f) in zip(views[:50], draws[:50].tolist(), strict=True):
            expected = TF.crop(TF.pad(image, [4]), row, col, 32, 32)
            expected = TF.horizontal_flip(expected) if f else expected
            torch.testing.assert_close(view, expected, rtol=0, atol=0)
    # And the two paths' histograms agree with each other (two-sample chi-square on top x flip).
    a, b = recover_draws(batched), recover_draws(per_image)
    ca = torch.bincount(a[:, 0] * 2 + a[:, 2], minlength=18).double()
    cb = torch.bincount(b[:, 0] * 2 + b[:, 2], minlength=18).double()
    k1, k2 = math.sqrt(cb.sum() / ca.sum()), math.sqrt(ca.sum() / cb.sum())
    statistic = float(((k1 * ca - k2 * cb) ** 2 / (ca + cb)).sum())
    assert statistic < chi_square_critical(17)


def test_reflect_translation_by_two_pixels():
    image = coordinate_image()
    spec = AugmentSpec(translate=2, padding_mode="reflect")
    views = to_uint8(memory_views(image, spec, 600))
    reflected = TF.pad(image, [2], padding_mode="reflect")
    seen = set()
    for view in views:
        matches = [
            (row, col) for row in range(5) for col in range(5)
            if torch.equal(view, TF.crop(reflected, row, col, 32, 32))
        ]  # fmt: skip
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 25  # every offset in [0, 4]^2 occurs


def test_alternating_flip_flips_each_image_on_every_other_epoch():
    n, epochs = 400, 6
    images = coordinate_image()[None].repeat(n, 1, 1, 1)
    split = DeviceSplit(images, torch.zeros(n, dtype=torch.long), UNIT)
    loader = TrainEpochs(split, 50, AugmentSpec(flip="alternating"), seed=3, num_classes=1)
    flips = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        order = shard_indices(n, 3, epoch)
        views, _ = batches(loader)
        flipped = torch.empty(n, dtype=torch.bool)
        flipped[order] = to_uint8(views)[:, 1, 0, 0] != 1  # column 0 shows source column 0
        flips.append(flipped)
    flips = torch.stack(flips)
    assert (flips[1:] != flips[:-1]).all()  # every image, every epoch: the other way
    assert abs(int(flips[0].sum()) - n / 2) < 3.3 * math.sqrt(n / 4)  # a fair start
    # The per-image loader flips the same images (the choice is hashed, not drawn).
    pipeline = ImagePipeline(AugmentSpec(flip="alternating"), UNIT, (32, 32), seed=3)
    for index in range(20):
        view = to_uint8(pipeline(TF.to_pil_image(coordinate_image()), 1, index))
        assert bool(view[1, 0, 0] != 1) == bool(flips[1, index])
    assert torch.equal(alternating_flips(3, 1, torch.arange(n)), flips[1])


def test_cutout_statistics_match_torchvision():
    image = torch.full((3, 32, 32), 200, dtype=torch.uint8)
    spec = VisionDataModule("cifar10", augment="none", cutout=16).augment_spec
    batched = memory_views(image, spec, 3000, seed=3)
    pipeline = ImagePipeline(spec, UNIT, (32, 32), seed=3)
    per_image = torch.stack([pipeline(TF.to_pil_image(image), e, 0) for e in range(1500)])
    for views in (batched, per_image):
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


def test_mixup_and_cutmix_equal_torchvision_for_the_same_draws(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 16, 20, generator=generator)
    partner = torch.rand(1, 3, 16, 20, generator=generator)
    y, y_partner = torch.tensor([2]), torch.tensor([5])
    keys = sample_keys(0, 0, torch.tensor([11]))
    lam = 0.3

    class Fixed:  # stands in for torchvision's Beta(alpha, alpha)
        def sample(self, shape=()):
            return torch.tensor(lam)

    # torchvision pairs image i with image i - 1: in the batch [partner, x], x's partner is partner.
    reference = v2.MixUp(alpha=1.0, num_classes=8)
    reference._dist = Fixed()
    images, soft = reference(torch.cat([partner, x]), torch.cat([y_partner, y]))
    spec = AugmentSpec(mixup_alpha=1.0)
    got, got_soft = mix(x, partner, y, y_partner, keys, spec, 8, lam_mixup=torch.tensor([lam]))
    torch.testing.assert_close(got, images[1:])
    torch.testing.assert_close(got_soft, soft[1:])
    assert got_soft[0, 2] == pytest.approx(0.3) and got_soft[0, 5] == pytest.approx(0.7)

    # CutMix: our box centre comes from the key; make torchvision draw the same centre.
    from selab.data.augment import CUTMIX_COL, CUTMIX_ROW
    from selab.data.sampling import key_field

    centre = {20: int(key_field(keys, CUTMIX_COL) % 20), 16: int(key_field(keys, CUTMIX_ROW) % 16)}
    monkeypatch.setattr(torch, "randint", lambda high, size: torch.tensor([centre[high]]))
    reference = v2.CutMix(alpha=1.0, num_classes=8)
    reference._dist = Fixed()
    images, soft = reference(torch.cat([partner, x]), torch.cat([y_partner, y]))
    monkeypatch.undo()
    spec = AugmentSpec(cutmix_alpha=1.0)
    got, got_soft = mix(x, partner, y, y_partner, keys, spec, 8, lam_cutmix=torch.tensor([lam]))
    torch.testing.assert_close(got, images[1:], rtol=0, atol=0)
    torch.testing.assert_close(got_soft, soft[1:])
    assert 0 < got_soft[0, 5] < 1  # part of the partner was pasted


def test_mixing_in_the_memory_loader_gives_class_probabilities(imagefolder_root):
    dm = VisionDataModule(
        "imagefolder", root=str(imagefolder_root), loader="memory", batch_size=6,
        mixup_alpha=0.4, cutmix_alpha=1.0, **IDENTITY,
    )  # fmt: skip
    dm.setup("fit")
    loader = dm.train_dataloader()
    images, targets = batches(loader)
    assert targets.shape == (36, 10) and targets.dtype == torch.float32
    torch.testing.assert_close(targets.sum(1), torch.ones(36))
    assert (targets.max(1).values < 1).float().mean() > 0.8  # almost every image is mixed
    # The partner is the previous image of the epoch's permutation, whatever the batch size.
    order = shard_indices(36, dm.stream_seed, 0)[:36]
    labels = dm.train_set.targets[order]
    partner_labels = dm.train_set.targets[
        shard_indices(36, dm.stream_seed, 0)[(torch.arange(36) - 1) % 36]
    ]
    different = labels != partner_labels
    assert (targets[different, labels[different]] > 0).all()
    assert (targets[different, partner_labels[different]] > 0).all()


def test_a_mixing_partner_is_its_predecessor_as_augmented_in_the_epoch(imagefolder_root):
    """The partner is taken from the augmented epoch, not augmented a second time: the epoch
    equals mixing each image with its predecessor augmented on its own."""
    dm = VisionDataModule(
        "imagefolder", root=str(imagefolder_root), loader="memory", batch_size=5,
        mixup_alpha=0.4, cutmix_alpha=1.0, cutout=8, auto_augment="randaugment", **IDENTITY,
    )  # fmt: skip
    dm.setup("fit")
    loader = dm.train_dataloader()
    images, soft = loader.build(2)
    n, count = len(dm.train_set), len(images)
    permutation = shard_indices(n, dm.stream_seed, 2)
    order, partners = permutation[:count], permutation[(torch.arange(count) - 1) % n]
    own, keys = loader.augment(order, order, 2)
    theirs, _ = loader.augment(partners, partners, 2)
    lam_mixup = beta_draws(0.4, n, combine(dm.stream_seed, 2, 1))[order]
    lam_cutmix = beta_draws(1.0, n, combine(dm.stream_seed, 2, 2))[order]
    targets = dm.train_set.targets
    expected = mix(
        own, theirs, targets[order], targets[partners], keys, loader.spec, 10, lam_mixup, lam_cutmix
    )
    torch.testing.assert_close(images, expected[0], rtol=0, atol=0)
    torch.testing.assert_close(soft, expected[1], rtol=0, atol=0)

    # On each of two ranks, the partner is the previous image of that rank's share.
    for rank in range(2):
        sharded = VisionDataModule(
            "imagefolder", root=str(imagefolder_root), loader="memory", batch_size=5,
            mixup_alpha=0.4, **IDENTITY,
        )  # fmt: skip
        attach(sharded, 2, rank).setup("fit")
        _, soft = sharded.train_dataloader().build(0)
        order = shard_indices(n, sharded.stream_seed, 0, 2, rank)[: len(soft)]
        labels = targets[order]
        different = labels[1:] != labels[:-1]
        assert (soft[1:][different, labels[:-1][different]] > 0).all()
        assert (soft[1:][different, labels[1:][different]] > 0).all()


def test_torchvision_loader_mixes_with_torchvision_transforms(imagefolder_root):
    dm = VisionDataModule(
        "imagefolder", root=str(imagefolder_root), loader="torchvision", batch_size=6,
        cutmix_alpha=1.0, **IDENTITY,
    )  # fmt: skip
    dm.setup("fit")
    first, again = batches(dm.train_dataloader()), batches(dm.train_dataloader())
    assert first[1].shape == (36, 10)
    torch.testing.assert_close(first[1].sum(1), torch.ones(36))
    assert torch.equal(first[0], again[0])  # seeded by the batch's keys


@pytest.mark.parametrize("kind", ["randaugment", "trivialaugment"])
def test_auto_augment_on_the_device_is_torchvisions_transform_per_image(imagefolder_root, kind):
    dm = VisionDataModule(
        "imagefolder", root=str(imagefolder_root), loader="memory", augment="none",
        auto_augment=kind, batch_size=4, **IDENTITY,
    )  # fmt: skip
    dm.setup("fit")
    loader = dm.train_dataloader()
    views, _ = batches(loader)
    transform = {"randaugment": v2.RandAugment(), "trivialaugment": v2.TrivialAugmentWide()}[kind]
    order = shard_indices(len(dm.train_set), dm.stream_seed, 0)[: len(views)]
    from selab.data.augment import AUTO
    from selab.data.sampling import key_field

    seeds = key_field(sample_keys(dm.stream_seed, 0, order), AUTO).tolist()
    changed = 0
    for view, index, seed in zip(views, order.tolist(), seeds, strict=True):
        torch.manual_seed(seed)
        expected = transform(dm.train_set.images[index])
        torch.testing.assert_close(to_uint8(view), expected, rtol=0, atol=0)
        changed += not torch.equal(expected, dm.train_set.images[index])
    assert changed > len(views) // 2


# -- determinism --------------------------------------------------------------------------------
def test_augmentation_is_seeded_different_every_epoch_and_independent_of_the_batch_size(
    imagefolder_root,
):
    def epoch_views(epoch, seed=0, batch_size=8, world=1, rank=0, drop_last=False):
        dm = VisionDataModule(
            "imagefolder", root=str(imagefolder_root), loader="memory", seed=seed,
            batch_size=batch_size, drop_last=drop_last, cutout=8, **IDENTITY,
        )  # fmt: skip
        attach(dm, world, rank).setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        order = shard_indices(len(dm.train_set), dm.stream_seed, epoch, world, rank)
        images, _ = batches(loader)
        return dict(zip(order.tolist(), images, strict=False)), order.tolist()

    first, order = epoch_views(0)
    again, order_again = epoch_views(0, batch_size=5)
    assert order == order_again and all(torch.equal(first[i], again[i]) for i in first)
    for rank in range(3):  # the same image in the same epoch, on any rank of 3
        shard, _ = epoch_views(0, world=3, rank=rank)
        assert all(torch.equal(first[i], view) for i, view in shard.items())
    second, order_second = epoch_views(1)
    assert order_second != order
    changed = sum(not torch.equal(first[i], second[i]) for i in first) / len(first)
    assert changed > 0.9
    other_seed, order_other = epoch_views(0, seed=1)
    assert order_other != order and any(not torch.equal(first[i], other_seed[i]) for i in first)


def test_both_loaders_use_distributed_samplers_order():
    data = list(range(23))
    for rank in range(4):
        theirs = DistributedSampler(data, 4, rank, shuffle=True, seed=5)
        ours = EpochSampler(data, 4, rank, seed=5)
        for epoch in (0, 3):
            theirs.set_epoch(epoch), ours.set_epoch(epoch)
            assert shard_indices(23, 5, epoch, 4, rank).tolist() == list(theirs)
            assert list(ours) == [(epoch, index) for index in theirs]


def test_global_seed_changes_the_data_stream(monkeypatch):
    dm = VisionDataModule()
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")
    seed0 = dm.stream_seed
    monkeypatch.setenv("PL_GLOBAL_SEED", "1")
    assert dm.stream_seed != seed0


def test_sample_keys_are_well_spread():
    keys = sample_keys(0, 0, torch.arange(100_000))
    assert keys.min() >= 0 and keys.max() < 2**32
    assert len(keys.unique()) > 99_990
    bits = torch.stack([(keys >> b) & 1 for b in range(32)]).double().mean(1)
    assert (bits - 0.5).abs().max() < 0.01


# -- sharding and static shapes -----------------------------------------------------------------
@pytest.mark.parametrize("loader", ["memory", "torchvision"])
def test_each_rank_gets_its_own_shard_every_epoch(cifar10_root, loader):
    def shard(rank, world, epoch, split, **options):
        dm = VisionDataModule(
            "cifar10", root=str(cifar10_root), download=False, batch_size=8, loader=loader,
            val_size=15, drop_last=False, **IDENTITY, **options,
        )  # fmt: skip
        attach(dm, world, rank).setup("fit")
        if split == "train":
            loader_ = dm.train_dataloader()
            loader_.sampler.set_epoch(epoch)
        else:
            loader_ = dm.val_dataloader()
        images, labels = batches(loader_)
        if split == "train":
            return shard_indices(85, dm.stream_seed, epoch, world, rank).tolist(), images
        return [dm.val_set.names[i] for i in range(rank, 15, world)], labels

    for epoch in (0, 1):
        single, single_images = shard(0, 1, epoch, "train")
        ranks = [shard(rank, 3, epoch, "train") for rank in range(3)]
        indices = [r[0] for r in ranks]
        assert all(len(i) == len(set(i)) == 29 for i in indices)  # 85 images padded to 3 x 29
        assert set().union(*indices) == set(range(85))  # together: every image, 2 of them twice
        assert sorted(single) == list(range(85))
        position = {index: k for k, index in enumerate(single)}
        for index_list, images in ranks:
            assert len(images) == 29
            for k, index in enumerate(index_list):
                torch.testing.assert_close(images[k], single_images[position[index]])
    assert shard(0, 3, 0, "train")[0] != shard(0, 3, 1, "train")[0]  # reshuffled each epoch
    # Validation: 15 images on 2 ranks -> 8 + 7, no image twice (DistributedSampler pads to 16).
    val = [shard(rank, 2, 0, "val") for rank in range(2)]
    assert sorted(val[0][0] + val[1][0]) == sorted(set(val[0][0] + val[1][0]))
    assert [len(v[1]) for v in val] == [8, 7]
    # Padded: every rank has the same number of full batches; padding targets are ignored.
    padded = [shard(rank, 2, 0, "val", eval_padding=True, eval_batch_size=5) for rank in range(2)]
    for (_, labels), real in zip(padded, (8, 7), strict=True):
        assert len(labels) == 10 and (labels != IGNORE_INDEX).sum() == real
        assert (labels[real:] == IGNORE_INDEX).all()


@pytest.mark.parametrize("loader", ["memory", "torchvision"])
def test_training_batches_have_one_shape(imagefolder_root, loader):
    dm = VisionDataModule("imagefolder", root=str(imagefolder_root), loader=loader, batch_size=10, **IDENTITY)  # fmt: skip
    dm.setup("fit")
    shapes = {tuple(images.shape) for images, _ in dm.train_dataloader()}
    assert shapes == {(10, 3, 32, 32)} and len(dm.train_dataloader()) == 3  # 36 // 10
    dm = VisionDataModule(
        "imagefolder", root=str(imagefolder_root), loader=loader, batch_size=10, drop_last=False,
        **IDENTITY,
    )  # fmt: skip
    dm.setup("fit")
    assert [len(labels) for _, labels in dm.train_dataloader()] == [10, 10, 10, 6]
    too_big = VisionDataModule("imagefolder", root=str(imagefolder_root), loader=loader, batch_size=64, **IDENTITY)  # fmt: skip
    too_big.setup("fit")
    with pytest.raises(DataError, match="fewer than batch_size 64.*drop_last false"):
        too_big.train_dataloader()


def test_padded_evaluation_has_full_batches_only():
    split = DeviceSplit(torch.zeros(23, 3, 4, 4, dtype=torch.uint8), torch.arange(23), UNIT)
    loader = EvalBatches(split, 8, pad=True)
    shapes = [tuple(images.shape) for images, _ in loader]
    assert shapes == [(8, 3, 4, 4)] * 3
    _, targets = batches(loader)
    assert targets[:23].tolist() == list(range(23)) and (targets[23:] == IGNORE_INDEX).all()
    # cross_entropy leaves the padding out: the mean loss over the real images.
    logits = torch.randn(24, 23)
    torch.testing.assert_close(
        torch.nn.functional.cross_entropy(logits, targets),
        torch.nn.functional.cross_entropy(logits[:23], targets[:23]),
    )


def test_a_training_step_reads_nothing_back_from_the_device(imagefolder_root, monkeypatch):
    """After the epoch is built, fetching a batch calls no .item()/.tolist()/bool()/int()/float()."""
    dm = VisionDataModule(
        "imagefolder", root=str(imagefolder_root), loader="memory", batch_size=4, cutout=8,
        mixup_alpha=0.2, cutmix_alpha=1.0, flip="alternating", eval_batch_size=1,
        eval_padding=True, **IDENTITY,
    )  # fmt: skip
    dm.setup("fit")
    calls = []
    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        iterator = iter(loader)
        next(iterator)  # the training epoch is built here
        calls.clear()
        steps = sum(1 for _ in iterator)
        assert steps > 0 and calls == [], calls


# -- loader choice and the decode cache ---------------------------------------------------------
def test_auto_falls_back_to_torchvision_when_the_data_does_not_fit(imagefolder_root, monkeypatch):
    dm = VisionDataModule("imagefolder", root=str(imagefolder_root), **IDENTITY)
    dm.setup("fit")
    assert dm.active_loader == "memory"
    monkeypatch.setattr("selab.data.loaders.memory_budget", lambda device: 100_000)
    auto = VisionDataModule("imagefolder", root=str(imagefolder_root), **IDENTITY)
    with pytest.warns(UserWarning, match=r"using the torchvision loader: the memory loader needs"):
        auto.setup("fit")
    assert auto.active_loader == "torchvision"
    forced = VisionDataModule("imagefolder", root=str(imagefolder_root), loader="memory", **IDENTITY)  # fmt: skip
    with pytest.raises(DataError, match="more than its budget.*--data.loader torchvision"):
        forced.prepare_data()


def test_decode_cache_is_used_and_invalidated_when_the_source_changes(tmp_path, monkeypatch):
    root = tmp_path / "images"
    write_imagefolder(root, n_train=10, n_test=10)

    def train_images():
        dm = VisionDataModule("imagefolder", root=str(root), augment="none", val_size=0, **IDENTITY)
        dm.prepare_data()
        dm.setup("test")
        return dm.train_set.images.clone()

    first = train_images()
    cached = sorted((root / ".selab-cache").glob("train-native-*.npz"))
    assert len(cached) == 1
    decode = cache.decode_folder
    calls = []
    monkeypatch.setattr(cache, "decode_folder", lambda *a, **k: calls.append(1) or decode(*a, **k))
    assert torch.equal(train_images(), first) and calls == []  # read from the cache

    path = sorted((root / "train").rglob("*.png"))[0]
    write_image(path, 32, 32, seed=5)  # same name, new content
    changed = train_images()
    assert calls == [1] and not torch.equal(changed, first)
    assert ((changed != first).flatten(1).any(1)).sum() == 1
    now = sorted((root / ".selab-cache").glob("train-native-*.npz"))
    assert len(now) == 1 and now != cached  # the stale cache is gone
    assert not list((root / ".selab-cache").glob(".*.tmp"))  # written through a renamed file
    write_image(path.parent / "added.png", 32, 32, seed=6)  # a new file: a new listing, too
    assert len(train_images()) == len(first) + 1


@pytest.mark.parametrize(
    "loader, cached, expected",
    [
        ("memory", True, ["decode_folder"] * 2),
        ("memory", False, ["decode_folder"] * 2),
        ("torchvision", True, ["scan"] * 2),
        ("torchvision", False, ["scan"] * 2),
    ],
)
def test_prepare_data_then_setup_read_each_split_once(
    tmp_path, monkeypatch, loader, cached, expected
):
    """Lightning calls prepare_data, then setup, in one process: each split is decoded (or
    scanned) once, and setup reads back no cache file that prepare_data has just written."""
    root = tmp_path / "images"
    write_imagefolder(root, n_train=10, n_test=10)
    reads = []
    for name in ("decode_folder", "scan"):
        original = getattr(cache, name)
        monkeypatch.setattr(cache, name, lambda *a, _f=original, _n=name, **k: reads.append(_n) or _f(*a, **k))  # fmt: skip
    load = cache.np.load
    monkeypatch.setattr(
        cache.np, "load", lambda *a, **k: reads.append("cache file") or load(*a, **k)
    )
    dm = VisionDataModule(
        "imagefolder", root=str(root), loader=loader, cache=cached, skip_bad_files=True, **IDENTITY
    )
    dm.prepare_data()
    dm.setup("fit")
    assert reads == expected
    assert len(dm.train_set) + len(dm.val_set) == 10 and len(dm.test_set) == 10


def test_unwritable_cache_only_warns(tmp_path):
    root = tmp_path / "images"
    write_imagefolder(root, n_train=10, n_test=10)
    (root / ".selab-cache").write_text("a file where the cache folder should be")
    dm = VisionDataModule("imagefolder", root=str(root), **IDENTITY)
    with pytest.warns(UserWarning, match="could not cache"):
        dm.prepare_data()
        dm.setup("fit")
    assert dm.active_loader == "memory" and len(dm.train_set) == 9


def test_a_data_error_in_a_worker_process_stays_one_line(tmp_path):
    """DataLoader workers send exceptions back through torch's ExceptionWrapper, which re-raises
    ``DataError(text with the worker traceback)``: the message must still be our one line."""
    from torch._utils import ExceptionWrapper

    from fakedata import write_truncated_jpeg

    root = tmp_path / "images"
    write_imagefolder(root, n_train=10, n_test=10)
    bad = write_truncated_jpeg(root / "train" / "cat" / "broken.jpg")
    dm = VisionDataModule("imagefolder", root=str(root), loader="torchvision", val_size=1, **IDENTITY)  # fmt: skip
    dm.setup("fit")
    position = [name for name in dm.train_set.names].index(str(bad))
    try:
        dm.train_set[(0, position)]
    except DataError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(DataError) as info:
        wrapped.reraise()
    assert str(info.value).startswith(f"could not decode image {bad} (OSError: ")
    assert "\n" not in str(info.value) and "skip_bad_files" in str(info.value)


def test_memory_module_keeps_splits_on_one_device(imagefolder_root):
    dm = VisionDataModule("imagefolder", root=str(imagefolder_root), loader="memory", **IDENTITY)
    dm.setup("fit")
    for split in (dm.train_set, dm.val_set, dm.test_set):
        assert split.images.dtype == torch.uint8 and split.device.type == "cpu"
    assert os.path.isfile(dm.test_set.names[0])
    torch.testing.assert_close(dm.test_set[0][0], dm.test_set.images[0] / 255, rtol=0, atol=1e-7)


@pytest.mark.filterwarnings("error:.*does not have many workers")
@pytest.mark.filterwarnings("error:.*Couldn't infer the batch indices")
def test_lightning_runs_the_memory_loader_without_worker_warnings(
    imagefolder_root, tmp_path, monkeypatch
):
    """On a machine with cores to spare, Lightning warns about DataLoaders with fewer than two
    workers; the memory loader has none to add (its batches are slices on the device)."""
    import functools

    import lightning as L
    from lightning.fabric.utilities import data as fabric_data

    from selab import Classifier
    from selab.predict import PredictionWriter

    monkeypatch.setattr(fabric_data.os, "sched_getaffinity", lambda pid: set(range(8)))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    sgd = functools.partial(torch.optim.SGD, lr=0.1)
    model = Classifier(net, num_classes=10, optimizer=sgd)
    dm = VisionDataModule("imagefolder", root=str(imagefolder_root), batch_size=6)
    writer = PredictionWriter(path=str(tmp_path / "predictions.csv"))
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[writer], default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, dm)
    assert dm.active_loader == "memory" and trainer.global_step == 6  # 36 // 6
    trainer.predict(model, dm)
    assert len((tmp_path / "predictions.csv").read_text().splitlines()) == 21  # header + 20


def test_a_cached_scan_without_the_size_check_does_not_skip_it(tmp_path):
    """A scan cached by a run that resized (no size check) must not let a later run without
    image_size through with images of mixed sizes."""
    from torchvision.datasets import ImageFolder

    write_imagefolder(tmp_path, n_train=10, n_test=0, classes=2)
    write_image(tmp_path / "train" / "class_0" / "large.png", 40, 48)
    folder = ImageFolder(str(tmp_path / "train"))
    assert cache.scan(folder, decode=True, same_size=False) == []  # cached, sizes not compared
    with pytest.raises(DataError, match="differ in size"):
        cache.scan(folder, decode=True, same_size=True)
