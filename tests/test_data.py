import numpy as np
import pytest
import torch

from fakedata import CLASSES, STL10_CLASSES
from selab.data import DatasetNotFoundError, VisionDataModule, stratified_split

RAW = {"augment": "none", "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "num_workers": 0}


def as_uint8(images: torch.Tensor) -> np.ndarray:
    """Undo ToDtype(scale=True) with identity normalisation: (N, C, H, W) float -> NHWC uint8."""
    return (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


LOADERS = pytest.mark.parametrize("loader", ["memory", "torchvision"])


@LOADERS
def test_cifar10_reads_the_pickles_exactly(cifar10_root, loader):
    from fakedata import write_cifar10

    written = write_cifar10(cifar10_root)  # same seed: same content as the fixture wrote
    dm = VisionDataModule(
        "cifar10", root=str(cifar10_root), download=False, batch_size=50, loader=loader, **RAW
    )
    assert dm.num_classes == 10 and dm.class_names == CLASSES
    dm.setup("fit")
    assert len(dm.train_set) == 100 and len(dm.val_set) == 50  # val_size=0: the test split
    images, labels = next(iter(dm.test_dataloader()))
    test_labels, test_images = written["test_batch"]
    assert labels.tolist() == test_labels.tolist()
    np.testing.assert_array_equal(as_uint8(images), test_images)


@LOADERS
def test_stl10_reads_the_binary_files_exactly(stl10_root, loader):
    from fakedata import write_stl10

    written = write_stl10(stl10_root)
    dm = VisionDataModule(
        "stl10", root=str(stl10_root), download=False, batch_size=20, loader=loader, **RAW
    )
    assert dm.class_names == STL10_CLASSES
    dm.setup("fit")
    images, labels = next(iter(dm.test_dataloader()))
    assert images.shape == (20, 3, 96, 96)
    test_labels, test_images = written["test"]
    assert labels.tolist() == test_labels.tolist()
    np.testing.assert_array_equal(as_uint8(images), test_images)


def test_stl10_resizes_to_image_size(stl10_root):
    dm = VisionDataModule(
        "stl10", root=str(stl10_root), download=False, image_size=64, batch_size=8
    )
    dm.num_workers = 0
    dm.setup("fit")
    images, _ = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 3, 64, 64)


@LOADERS
def test_imagefolder_classes_and_pixels(imagefolder_root, loader):
    from fakedata import write_imagefolder

    written = write_imagefolder(imagefolder_root)
    dm = VisionDataModule(
        "imagefolder", root=str(imagefolder_root), batch_size=100, loader=loader, **RAW
    )
    assert dm.class_names == sorted(CLASSES)
    dm.setup("test")
    images, labels = next(iter(dm.test_dataloader()))
    # ImageFolder orders by class folder, then file name; map back to what was written.
    test_labels, test_images = written["test"]
    order = sorted(range(len(test_labels)), key=lambda i: (CLASSES[test_labels[i]], i))
    assert [dm.class_names[k] for k in labels] == [CLASSES[test_labels[i]] for i in order]
    np.testing.assert_array_equal(as_uint8(images), test_images[order])


def test_normalisation_uses_the_dataset_statistics(cifar10_root):
    dm = VisionDataModule(
        "cifar10", root=str(cifar10_root), download=False, augment="none", loader="torchvision"
    )
    dm.num_workers = 0
    dm.setup("test")
    image, _ = dm.test_set[0]
    raw = torch.from_numpy(np.array(dm.test_set.dataset[0][0])).permute(2, 0, 1) / 255
    mean = torch.tensor(dm.mean).view(3, 1, 1)
    std = torch.tensor(dm.std).view(3, 1, 1)
    torch.testing.assert_close(image, (raw - mean) / std)
    assert dm.mean == (0.4914, 0.4822, 0.4465)


def test_standard_augmentation_pads_crops_and_flips(cifar10_root):
    dm = VisionDataModule(
        "cifar10", root=str(cifar10_root), download=False, **{**RAW, "augment": "standard"}
    )
    dm.setup("fit")
    torch.manual_seed(0)
    views = torch.stack([dm.train_set[0][0] for _ in range(64)])
    assert views.shape == (64, 3, 32, 32)
    # Crops come from a 4-px zero-padded image: some views show black borders, not all the same.
    assert (views == 0).all(dim=1).any(dim=(1, 2)).float().mean() > 0.5
    assert len({v.numpy().tobytes() for v in views}) > 10


def test_validation_split_is_stratified_disjoint_and_seeded(cifar10_root):
    # The split's indices as the torchvision loader exposes them; test_loaders.py checks that the
    # memory loader serves the very same images.
    dm = VisionDataModule(
        "cifar10", root=str(cifar10_root), download=False, val_size=20, loader="torchvision", **RAW
    )
    dm.setup("fit")
    train_idx, val_idx = dm.train_set.dataset.indices, dm.val_set.dataset.indices
    assert len(val_idx) == 20 and len(train_idx) == 80
    assert not set(train_idx) & set(val_idx)
    targets = np.array(dm.val_set.dataset.dataset.targets)
    assert np.bincount(targets[val_idx], minlength=10).tolist() == [2] * 10
    again = VisionDataModule(
        "cifar10", root=str(cifar10_root), download=False, val_size=20, loader="torchvision", **RAW
    )
    again.setup("fit")
    assert again.val_set.dataset.indices == val_idx
    other_seed = VisionDataModule(
        "cifar10", root=str(cifar10_root), download=False, val_size=20, seed=1, loader="torchvision"
    )
    other_seed.setup("fit")
    assert other_seed.val_set.dataset.indices != val_idx


def test_stratified_split_quotas_follow_class_frequencies():
    targets = [0] * 50 + [1] * 30 + [2] * 20
    train, val = stratified_split(targets, 10, seed=0)
    assert np.bincount(np.array(targets)[val]).tolist() == [5, 3, 2]
    assert sorted(train + val) == list(range(100))
    with pytest.raises(ValueError, match="val_size"):
        stratified_split(targets, 100, seed=0)


@pytest.mark.parametrize(
    "dataset, folder", [("cifar10", "cifar-10-batches-py"), ("stl10", "stl10_binary")]
)
def test_offline_and_missing_gives_advice_not_a_urllib_traceback(
    tmp_path, no_network, dataset, folder
):
    dm = VisionDataModule(dataset, root=str(tmp_path / "nowhere"), download=True)
    with pytest.raises(DatasetNotFoundError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert folder in message and "--data.root" in message and "imagefolder" in message
    assert "download failed" in message and "URLError" in message


def test_missing_without_download_lists_the_expected_files(tmp_path):
    dm = VisionDataModule("cifar10", root=str(tmp_path), download=False)
    with pytest.raises(DatasetNotFoundError, match="data_batch_1.*test_batch"):
        dm.setup("fit")


def test_corrupt_dataset_file_is_reported(cifar10_root):
    (cifar10_root / "cifar-10-batches-py" / "test_batch").write_bytes(b"garbage")
    dm = VisionDataModule("cifar10", root=str(cifar10_root), download=False)
    with pytest.raises(DatasetNotFoundError, match="corrupted"):
        dm.setup("test")


def test_imagefolder_without_folders_says_what_layout_is_expected(tmp_path):
    dm = VisionDataModule("imagefolder", root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"train/<class>"):
        _ = dm.num_classes


def test_bad_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="unknown dataset"):
        VisionDataModule("mnist")
    with pytest.raises(ValueError, match="augment"):
        VisionDataModule(augment="autoaugment")


def test_imagefolder_augments_at_the_images_own_size(imagefolder_root):
    dm = VisionDataModule("imagefolder", root=str(imagefolder_root), num_workers=0)
    dm.setup("fit")
    torch.manual_seed(0)
    views = torch.stack([dm.train_set[0][0] for _ in range(32)])
    assert views.shape == (32, 3, 32, 32)
    assert len({v.numpy().tobytes() for v in views}) > 10  # random crops/flips, 4 px padding
