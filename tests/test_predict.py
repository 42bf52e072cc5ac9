"""`lightning predict` writes a CSV row per image with the model's top-k classes."""

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from selab import Classifier
from selab.cli import run


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predict_a_folder_of_images_to_csv(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lightning"])
    folder = tmp_path / "my images"
    (folder / "nested").mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = []
    for i, (size, suffix) in enumerate([(32, ".png"), (50, ".jpg"), (20, ".PNG"), (64, ".png")]):
        path = folder / ("nested" if i % 2 else "") / f"img{i}{suffix}"
        Image.fromarray(rng.integers(0, 255, (size, size + 3, 3), dtype=np.uint8)).save(path)
        files.append(path)
    (folder / "notes.txt").write_text("not an image")

    cli = run(
        [
            "predict",
            *tiny_run.common,
            f"--ckpt_path={tiny_run.ckpt}",
            f"--data.predict_root={folder}",
        ]
    )
    written = tiny_run.log_dir / "predictions.csv"  # by default in the checkpoint's run folder
    assert cli.trainer.log_dir == str(tiny_run.log_dir)
    rows = read_csv(written)
    assert sorted(row["file"] for row in rows) == sorted(str(p) for p in files)
    assert list(rows[0]) == ["file", "prediction"] + [
        f"top{i}{s}" for i in range(1, 6) for s in ("", "_prob")
    ]

    model = Classifier.load_from_checkpoint(tiny_run.ckpt).eval()
    transform = v2.Compose([  # what the data module does: the training images' size, ImageNet stats
        v2.ToImage(), v2.Resize((32, 32), antialias=True), v2.ToDtype(torch.float32, scale=True),
        v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])  # fmt: skip
    for row in rows:
        probs = [float(row[f"top{i}_prob"]) for i in range(1, 6)]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-5
        assert row["prediction"] == row["top1"]
        image = transform(Image.open(row["file"]).convert("RGB"))
        with torch.no_grad():
            expected = model(image[None]).softmax(1)[0]
        assert row["top1"] == model.class_names[int(expected.argmax())]
        assert probs[0] == pytest.approx(float(expected.max()), abs=2e-6)
        assert len({row[f"top{i}"] for i in range(1, 6)}) == 5

    # Without predict_root: the test split, with its labels, each row naming its file.
    out = tmp_path / "test_split.csv"
    run(["predict", *tiny_run.common, f"--ckpt_path={tiny_run.ckpt}", f"--predictions.path={out}"])
    rows = read_csv(out)
    assert len(rows) == 20 and list(rows[0])[:3] == ["file", "target", "prediction"]
    test_files = sorted(str(p) for p in (tiny_run.images / "test").rglob("*.png"))
    assert sorted(r["file"] for r in rows) == test_files
    assert all(Path(r["file"]).parent.name == r["target"] for r in rows)
    accuracy = sum(r["target"] == r["prediction"] for r in rows) / 20
    assert accuracy == pytest.approx(float(tiny_run.test.trainer.callback_metrics["test/acc_top1"]))


def test_a_failed_predict_leaves_no_partial_csv(tiny_run, tmp_path, monkeypatch):
    from fakedata import write_truncated_jpeg
    from selab.data import DataError

    monkeypatch.setattr(sys, "argv", ["lightning"])
    folder = tmp_path / "images"
    write_truncated_jpeg(folder / "broken.jpg")
    out = tmp_path / "predictions.csv"
    with pytest.raises(
        DataError, match=r"^could not decode \S*broken\.jpg .*; delete or replace it$"
    ):
        run([
            "predict", *tiny_run.common, f"--ckpt_path={tiny_run.ckpt}",
            f"--data.predict_root={folder}", f"--predictions.path={out}",
        ])  # fmt: skip
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_predict_never_replaces_a_file(tiny_run, tmp_path, monkeypatch, capsys):
    from selab.cli import main

    monkeypatch.setattr(sys, "argv", ["lightning"])
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "mine.csv"
    out.write_text("earlier results\n")
    before = files_of(tiny_run.log_dir)
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "predict",
                *tiny_run.common,
                f"--ckpt_path={tiny_run.ckpt}",
                f"--predictions.path={out}",
            ]
        )
    assert exit_.value.code == 2
    assert "mine.csv exists; pass --predictions.path" in capsys.readouterr().err
    assert out.read_text() == "earlier results\n" and files_of(tiny_run.log_dir) == before
    # into the run folder (the default), twice: two new files beside the earlier ones
    for _ in range(2):
        run(["predict", *tiny_run.common, f"--ckpt_path={tiny_run.ckpt}"])
    after = files_of(tiny_run.log_dir)
    assert {k: v for k, v in after.items() if k in before and k.startswith("predictions")} == {
        k: v for k, v in before.items() if k.startswith("predictions")
    }
    new = sorted(k for k in after if k.startswith("predictions") and k not in before)
    assert len(new) == 2 and all(read_csv(tiny_run.log_dir / k) for k in new)


def test_predict_elsewhere_adds_nothing_to_the_run_folder(tiny_run, tmp_path, monkeypatch):
    """Predict logs nothing: with its CSV elsewhere no config, events or status go to the run."""
    monkeypatch.setattr(sys, "argv", ["lightning"])
    monkeypatch.chdir(tmp_path)
    before = files_of(tiny_run.base)
    out = tmp_path / "out/predictions.csv"
    run(["predict", *tiny_run.common, f"--ckpt_path={tiny_run.ckpt}", f"--predictions.path={out}"])
    assert len(read_csv(out)) == 20
    assert files_of(tiny_run.base) == before
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "out",
        "out/predictions.csv",
    ]
