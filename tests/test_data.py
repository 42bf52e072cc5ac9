"""The data module against the files it reads: formats, splits, order, options and errors."""

import os

import numpy as np
import pytest
import torch

from fakedata import (
    CLASSES,
    STL10_CLASSES,
    write_cifar10,
    write_image,
    write_imagefolder,
    write_stl10,
    write_truncated_jpeg,
)
from selab.data import (
    DataError,
    DatasetNotFoundError,
    VisionDataModule,
    class_mixed_order,
    stratified_split,
)
from selab.data.splits import default_val_size

RAW = {"augment": "none", "normalize": False, "num_workers": 0}
LOADERS = pytest.mark.parametrize("loader", ["memory", "torchvision"])


def as_uint8(images: torch.Tensor) -> np.ndarray:
    """Undo the [0, 1] scaling: (N, C, H, W) float -> NHWC uint8."""
    return (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def batches(loader):
    images, labels = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(labels)


# -- every source, read exactly -----------------------------------------------------------------
@LOADERS
def test_cifar10_reads_the_pickles_exactly(cifar10_root, loader):
    written = write_cifar10(cifar10_root)  # same seed: the same content as the fixture's
    dm = VisionDataModule(
        "cifar10", root=str(cifar10_root), download=False, batch_size=50, loader=loader,
        val_size=0, **RAW,
    )  # fmt: skip
    assert dm.num_classes == 10 and dm.class_names == CLASSES and dm.image_size == 32
    dm.prepare_data()
    dm.setup("fit")
    assert dm.active_loader == loader
    assert len(dm.train_set) == 100 and len(dm.val_set) == 50  # val_size=0: the test split
    images, labels = batches(dm.test_dataloader())
    original = [int(name) for name in dm.test_set.names]  # index in test_batch
    assert sorted(original) == list(range(50))
    test_labels, test_images = written["test_batch"]
    assert labels.tolist() == test_labels[original].tolist()
    np.testing.assert_array_equal(as_uint8(images), test_images[original])


@LOADERS
def test_stl10_reads_the_binary_files_exactly(stl10_root, loader):
    written = write_stl10(stl10_root)
    dm = VisionDataModule(
        "stl10", root=str(stl10_root), download=False, batch_size=20, loader=loader, **RAW
    )
    assert dm.class_names == STL10_CLASSES and dm.image_size == 96
    dm.setup("test")
    images, labels = batches(dm.test_dataloader())
    assert images.shape == (20, 3, 96, 96)
    original = [int(name) for name in dm.test_set.names]
    test_labels, test_images = written["test"]
    assert labels.tolist() == test_labels[original].tolist()
    np.testing.assert_array_equal(as_uint8(images), test_images[original])


@LOADERS
def test_stl10_resizes_to_image_size(stl10_root, loader):
    dm = VisionDataModule(
        "stl10", root=str(stl10_root), download=False, image_size=64, batch_size=8,
        num_workers=0, loader=loader,
    )  # fmt: skip
    dm.setup("fit")
    assert dm.image_size == 64
    images, _ = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 3, 64, 64)


@LOADERS
def test_imagefolder_classes_pixels_and_names(imagefolder_root, loader):
    written = write_imagefolder(imagefolder_root)
    dm = VisionDataModule("imagefolder", root=str(imagefolder_root), batch_size=100, loader=loader, **RAW)  # fmt: skip
    assert dm.class_names == sorted(CLASSES)
    dm.setup("test")
    images, labels = batches(dm.test_dataloader())
    test_labels, test_images = written["test"]
    for image, label, name in zip(
        as_uint8(images), labels.tolist(), dm.test_set.names, strict=True
    ):
        i = int(os.path.basename(name).split(".")[0])  # write_imagefolder names files <i>.png
        assert dm.class_names[label] == CLASSES[test_labels[i]]
        assert os.path.basename(os.path.dirname(name)) == CLASSES[test_labels[i]]
        np.testing.assert_array_equal(image, test_images[i])


@LOADERS
def test_normalisation_is_the_dataset_statistics(cifar10_root, loader):
    written = write_cifar10(cifar10_root)
    dm = VisionDataModule(
        "cifar10", root=str(cifar10_root), download=False, augment="none", loader=loader,
        num_workers=0, val_size=0,
    )  # fmt: skip
    assert dm.mean == (0.4914, 0.4822, 0.4465) and dm.std == (0.2470, 0.2435, 0.2616)
    dm.setup("test")
    images, _ = batches(dm.test_dataloader())
    raw = torch.from_numpy(written["test_batch"][1]).permute(0, 3, 1, 2).double() / 255
    raw = raw[[int(n) for n in dm.test_set.names]]
    mean, std = torch.tensor(dm.mean).view(3, 1, 1), torch.tensor(dm.std).view(3, 1, 1)
    torch.testing.assert_close(images.double(), (raw - mean) / std, rtol=0, atol=2e-6)


# -- splits and evaluation order ----------------------------------------------------------------
def test_validation_split_is_stratified_disjoint_and_seeded(cifar10_root):
    def split(seed=0):
        dm = VisionDataModule(
            "cifar10", root=str(cifar10_root), download=False, val_size=20, seed=seed,
            loader="torchvision", **RAW,
        )  # fmt: skip
        dm.setup("fit")
        return dm.train_set.dataset.indices, dm.val_set.dataset.indices, dm

    train_idx, val_idx, dm = split()
    assert len(val_idx) == 20 and len(train_idx) == 80
    assert not set(train_idx) & set(val_idx)
    targets = np.array(dm.val_set.dataset.dataset.targets)
    assert np.bincount(targets[val_idx], minlength=10).tolist() == [2] * 10
    assert split()[1] == val_idx
    assert sorted(split(seed=1)[1]) != sorted(val_idx)


def test_default_validation_split_is_a_tenth_of_the_training_images(cifar10_root):
    assert default_val_size(50_000) == 5_000  # CIFAR-10
    assert default_val_size(5_000) == 500  # STL10
    dm = VisionDataModule("cifar10", root=str(cifar10_root), download=False, loader="memory", **RAW)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (90, 10, 50)
    assert not set(dm.train_set.names) & set(dm.val_set.names)


def test_stratified_split_quotas_follow_class_frequencies():
    targets = [0] * 50 + [1] * 30 + [2] * 20
    train, val = stratified_split(targets, 10, seed=0)
    assert np.bincount(np.array(targets)[val]).tolist() == [5, 3, 2]
    assert sorted(train + val) == list(range(100))
    with pytest.raises(DataError, match="val_size 100 does not fit the 100 training images"):
        stratified_split(targets, 100, seed=0)


def test_class_mixed_order_balances_every_prefix():
    targets = [0] * 500 + [1] * 300 + [2] * 150 + [3] * 50  # class order, unequal classes
    order = class_mixed_order(targets, seed=3)
    assert sorted(order) == list(range(1000))
    labels = torch.tensor(targets)[order]
    share = torch.tensor([500, 300, 150, 50]) / 1000
    for m in range(1, 1001):
        counts = torch.bincount(labels[:m], minlength=4)
        assert ((counts - m * share).abs() <= 1 + 1e-9).all(), (m, counts)
    assert class_mixed_order(targets, seed=3) == order
    assert class_mixed_order(targets, seed=4) != order


@LOADERS
def test_partial_evaluation_of_an_imagefolder_sees_every_class(tmp_path, loader):
    """Files are listed class by class; the first batches must still mix all classes."""
    root = tmp_path / "images"
    write_imagefolder(root, n_train=100, n_test=200)
    dm = VisionDataModule("imagefolder", root=str(root), batch_size=20, loader=loader, val_size=50, **RAW)  # fmt: skip
    dm.setup("fit")
    for loader_ in (dm.val_dataloader(), dm.test_dataloader()):
        _, labels = next(iter(loader_))
        assert len(labels.unique()) == 10, labels  # class order would give 1 or 2 classes
    files = [name for name in dm.test_set.names]
    assert files != sorted(files)


# -- options ------------------------------------------------------------------------------------
def test_validating_on_the_test_split_warns_once(cifar10_root):
    dm = VisionDataModule("cifar10", root=str(cifar10_root), download=False, val_size=0, **RAW)
    with pytest.warns(UserWarning, match="val_size is 0: validation runs on the TEST split"):
        dm.setup("fit")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dm.setup("validate")  # once per module
        held_out = VisionDataModule("cifar10", root=str(cifar10_root), download=False, **RAW)
        held_out.setup("fit")


def test_num_workers_auto_uses_the_cores_available(monkeypatch):
    from lightning.fabric.utilities import data as fabric_data

    monkeypatch.setattr(fabric_data.os, "sched_getaffinity", lambda pid: set(range(5)))
    assert VisionDataModule().workers() == 4  # 5 cores, one left for the main process
    monkeypatch.setattr(fabric_data.os, "sched_getaffinity", lambda pid: set(range(64)))
    assert VisionDataModule().workers() == 8  # capped
    assert VisionDataModule(num_workers=3).workers() == 3


def test_sample_images_are_normalised_unaugmented_training_images(imagefolder_root):
    for loader in ("memory", "torchvision"):
        dm = VisionDataModule(
            "imagefolder", root=str(imagefolder_root), loader=loader, num_workers=0
        )
        images = dm.sample_images(12)
        assert images.shape == (12, 3, 32, 32) and images.dtype == torch.float32
        plain = VisionDataModule(
            "imagefolder", root=str(imagefolder_root), loader="memory", augment="none",
            num_workers=0,
        )  # fmt: skip
        plain.setup("fit")
        stored = plain.train_set.normalize(plain.train_set.images)
        # Every sample is one of the training images exactly (no crop, no flip).
        matches = (images[:, None] == stored[None]).flatten(2).all(2).sum(1)
        assert (matches == 1).all()
    assert len(dm.sample_images(10_000)) == len(dm.train_set)


def test_imagefolder_image_size_is_the_images_own(tmp_path):
    root = tmp_path / "images"
    write_imagefolder(root, n_train=10, n_test=10, size=24)
    assert VisionDataModule("imagefolder", root=str(root)).image_size == 24
    assert VisionDataModule("imagefolder", root=str(root), image_size=16).image_size == 16


def test_bad_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        VisionDataModule("mnist")
    with pytest.raises(ValueError, match="augment"):
        VisionDataModule(augment="autoaugment")
    with pytest.raises(ValueError, match="unknown flip 'sometimes'"):
        VisionDataModule(flip="sometimes")
    with pytest.raises(ValueError, match="cutout must be >= 0"):
        VisionDataModule(cutout=-1)
    with pytest.raises(ValueError, match="num_workers"):
        VisionDataModule(num_workers="many")


# -- errors: one line, what to do, before anything is written ----------------------------------
@pytest.mark.parametrize(
    "dataset, folder", [("cifar10", "cifar-10-batches-py"), ("stl10", "stl10_binary")]
)
def test_offline_and_missing_gives_advice_not_a_urllib_traceback(
    tmp_path, no_network, dataset, folder
):
    dm = VisionDataModule(dataset, root=str(tmp_path / "nowhere/data"), download=True)
    with pytest.raises(DatasetNotFoundError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert folder in message and "--data.root" in message and "imagefolder" in message
    assert "download failed" in message and "URLError" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []  # the folders the attempt created are gone again


def test_missing_without_download_lists_the_expected_files(tmp_path):
    dm = VisionDataModule("cifar10", root=str(tmp_path), download=False)
    with pytest.raises(DatasetNotFoundError, match="data_batch_1.*test_batch"):
        dm.prepare_data()


def test_corrupt_dataset_file_is_reported(cifar10_root):
    folder = cifar10_root / "cifar-10-batches-py"
    (folder / "test_batch").write_bytes((folder / "data_batch_1").read_bytes())  # wrong md5
    with pytest.raises(DatasetNotFoundError, match="corrupted"):
        VisionDataModule("cifar10", root=str(cifar10_root), download=False).setup("test")
    (folder / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DatasetNotFoundError, match="test_batch is unreadable"):
        VisionDataModule("cifar10", root=str(cifar10_root), download=False).setup("test")


def test_imagefolder_without_a_split_folder_says_what_layout_is_expected(tmp_path):
    dm = VisionDataModule("imagefolder", root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"train/<class>"):
        _ = dm.num_classes
    write_imagefolder(tmp_path, n_train=10, n_test=10)
    for path in (tmp_path / "test").rglob("*.png"):
        path.unlink()
    for folder in (tmp_path / "test").iterdir():
        folder.rmdir()
    with pytest.raises(DatasetNotFoundError, match=r"no class folders in .*test"):
        VisionDataModule("imagefolder", root=str(tmp_path)).prepare_data()


def test_empty_class_folder_is_named(imagefolder_root):
    (imagefolder_root / "train" / "zebra").mkdir()
    dm = VisionDataModule("imagefolder", root=str(imagefolder_root), num_workers=0)
    with pytest.raises(DataError, match=r"class folder .*train/zebra has no images"):
        dm.prepare_data()


def test_test_split_uses_the_training_classes(imagefolder_root):
    for path in (imagefolder_root / "test" / "airplane").iterdir():  # test lacks a class: fine
        path.unlink()
    (imagefolder_root / "test" / "airplane").rmdir()
    dm = VisionDataModule("imagefolder", root=str(imagefolder_root), loader="memory", **RAW)
    dm.setup("test")
    for label, name in zip(dm.test_set.targets.tolist(), dm.test_set.names, strict=True):
        assert dm.class_names[label] == os.path.basename(os.path.dirname(name))
    write_image(imagefolder_root / "test" / "zebra" / "0.png", 32, 32)  # a class train lacks
    with pytest.raises(DataError, match="class folders the training split lacks"):
        VisionDataModule("imagefolder", root=str(imagefolder_root)).prepare_data()


def test_val_size_larger_than_the_training_split_fails_in_prepare_data(cifar10_root):
    dm = VisionDataModule("cifar10", root=str(cifar10_root), download=False, val_size=100)
    with pytest.raises(DataError, match="val_size 100 is not smaller than the 100 training"):
        dm.prepare_data()


@LOADERS
def test_a_truncated_jpeg_is_named_or_skipped_with_a_count(imagefolder_root, loader):
    bad = write_truncated_jpeg(imagefolder_root / "train" / "cat" / "broken.jpg")
    options = {"root": str(imagefolder_root), "loader": loader, "batch_size": 6, **RAW}
    dm = VisionDataModule("imagefolder", **options)
    with pytest.raises(DataError) as info:
        dm.prepare_data()
        dm.setup("fit")
        batches(dm.train_dataloader())
    message = str(info.value)
    assert str(bad) in message and "skip_bad_files" in message and "\n" not in message

    skipping = VisionDataModule("imagefolder", skip_bad_files=True, **options)
    with pytest.warns(UserWarning, match=r"skipped 1 undecodable file\(s\).*broken.jpg"):
        skipping.prepare_data()
        skipping.setup("fit")
    assert len(skipping.train_set) + len(skipping.val_set) == 40  # the 40 good images
    images, labels = batches(skipping.train_dataloader())
    assert len(labels) == 36 and torch.isfinite(images).all()


def test_the_decode_cache_remembers_skipped_files(imagefolder_root):
    write_truncated_jpeg(imagefolder_root / "train" / "cat" / "broken.jpg")
    options = {"root": str(imagefolder_root), "loader": "memory", **RAW}
    with pytest.warns(UserWarning, match="skipped 1"):
        VisionDataModule("imagefolder", skip_bad_files=True, **options).prepare_data()
    with pytest.warns(UserWarning, match="skipped 1"):  # from the cache, counted again
        VisionDataModule("imagefolder", skip_bad_files=True, **options).setup("fit")
    with pytest.raises(DataError, match="broken.jpg.*skip_bad_files"):
        VisionDataModule("imagefolder", **options).prepare_data()


@LOADERS
def test_images_of_mixed_sizes_ask_for_image_size(imagefolder_root, loader):
    write_image(imagefolder_root / "train" / "cat" / "wide.png", 32, 48)
    options = {"root": str(imagefolder_root), "loader": loader, "batch_size": 8, **RAW}
    with pytest.raises(DataError, match=r"differ in size .*wide.png is 32x48.*--data.image_size N"):
        VisionDataModule("imagefolder", **options).prepare_data()
    resized = VisionDataModule("imagefolder", image_size=16, **options)
    resized.prepare_data()
    resized.setup("fit")
    images, _ = next(iter(resized.train_dataloader()))
    assert images.shape[-2:] == (16, 16)


def test_predict_root_errors_are_one_line(tmp_path):
    from selab.data import ImageFiles

    with pytest.raises(DataError, match="is not a folder of images"):
        ImageFiles(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        ImageFiles(tmp_path / "empty")
