"""End to end through the CLI, in-process (the console script is checked once in a subprocess)."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import SE_ARGS, SE_RUN_NAME
from fakedata import write_imagefolder
from selab import Classifier, runs
from selab.cli import CheckpointError, main, run

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def fit_args(root, *extra):
    return [
        "fit", *SE_ARGS,
        "--data.dataset=imagefolder", f"--data.root={root}",
        "--data.num_workers=0", "--data.batch_size=10",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        "--trainer.log_every_n_steps=1",
        *QUIET, *extra,
    ]  # fmt: skip


def scalar_tags(log_dir: Path) -> set[str]:
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return set(events.Tags()["scalars"])


def test_fit_test_and_load_from_checkpoint(in_tmp, imagefolder_root):
    cli = run(fit_args(imagefolder_root))
    log_dir = Path(cli.trainer.log_dir).resolve()
    assert log_dir == in_tmp / f"logs/{SE_RUN_NAME}/version_0"
    assert {
        "train/loss",
        "train/acc_top1",
        "val/loss",
        "val/acc_top1",
        "val/acc_top5",
    } <= scalar_tags(log_dir)
    assert any(tag.startswith("lr-") for tag in scalar_tags(log_dir))  # LearningRateMonitor
    last = log_dir / "checkpoints/last.ckpt"
    assert last.is_file() and len(list(last.parent.glob("epoch*.ckpt"))) == 1

    test_cli = run(
        [
            "test",
            *SE_ARGS,
            "--data.dataset=imagefolder",
            f"--data.root={imagefolder_root}",
            "--data.num_workers=0",
            f"--ckpt_path={last}",
            *QUIET,
        ]
    )
    metrics = test_cli.trainer.callback_metrics
    assert {"test/acc_top1", "test/acc_top5", "test/loss", "test/acc_class/airplane"} <= set(
        metrics
    )
    assert 0.0 <= float(metrics["test/acc_top1"]) <= float(metrics["test/acc_top5"]) <= 1.0
    assert test_cli.model.confusion_matrix.sum() == 20  # every test image counted once

    # No config at hand: the checkpoint rebuilds SE-ResNet-20 with the dataset's 10 classes.
    model = Classifier.load_from_checkpoint(last).eval()
    assert model.backbone.fc.out_features == 10
    assert type(model.backbone.stages[0][0].attention).__name__ == "SqueezeExcite"
    images = torch.randn(4, 3, 32, 32)
    reference = cli.model.eval()
    torch.testing.assert_close(model(images), reference(images))


def test_short_training_really_learns(in_tmp, tmp_path):
    root = tmp_path / "learnable"
    write_imagefolder(root, n_train=400, n_test=100, size=16)
    cli = run([
        "fit", *SE_ARGS, "--data.dataset=imagefolder", f"--data.root={root}",
        "--data.num_workers=0", "--data.batch_size=50",
        "--model.optimizer.lr=0.05", "--model.lr_scheduler=selab.optim.WarmupCosineLR",
        "--trainer.max_epochs=6", "--trainer.log_every_n_steps=1", *QUIET,
    ])  # fmt: skip
    events = EventAccumulator(cli.trainer.log_dir)
    events.Reload()
    losses = [e.value for e in events.Scalars("train/loss")]
    val_acc = [e.value for e in events.Scalars("val/acc_top1")]
    # 10% of the 400 training images held out; 360 // 50 full batches a step each, logged each.
    assert len(losses) == 6 * (360 // 50) and len(val_acc) == 6
    assert sum(losses[-8:]) / 8 < 0.5 * sum(losses[:4]) / 4  # loss clearly down
    assert val_acc[-1] > 0.6, val_acc  # chance is 0.1


def test_resume_last_continues_the_same_run(in_tmp, imagefolder_root):
    first = run(fit_args(imagefolder_root))
    log_dir = Path(first.trainer.log_dir)
    config = (log_dir / "config.yaml").read_text()
    resumed = run(fit_args(imagefolder_root, "--trainer.max_epochs=2", "--ckpt_path=last"))
    assert Path(resumed.trainer.log_dir) == log_dir  # same version folder, curves continue
    assert resumed.trainer.current_epoch == 2 and resumed.trainer.global_step == 4
    assert (log_dir / "config.yaml").read_text() == config  # the original config is kept
    assert len(list(log_dir.glob("config.resumed-*.yaml"))) == 1
    fresh = run(fit_args(imagefolder_root))
    assert Path(fresh.trainer.log_dir).name == "version_1"  # a new run never overwrites


def test_resume_last_with_no_previous_run_starts_fresh(in_tmp, imagefolder_root):
    cli = run(fit_args(imagefolder_root, "--ckpt_path=last"))
    assert cli.trainer.global_step == 2


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04truncated"])
def test_corrupt_checkpoint_gets_a_clear_error(in_tmp, imagefolder_root, content):
    bad = in_tmp / "bad.ckpt"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.ckpt.*(corrupt|truncated)"):
        run(fit_args(imagefolder_root, f"--ckpt_path={bad}"))
    with pytest.raises(CheckpointError, match="does not exist"):
        run(fit_args(imagefolder_root, f"--ckpt_path={in_tmp / 'missing.ckpt'}"))


def test_wrong_config_key_is_rejected_by_name(in_tmp, imagefolder_root):
    import argparse

    with pytest.raises(argparse.ArgumentError, match="attenton"):
        run(fit_args(imagefolder_root, "--model.backbone.init_args.attenton=se"))
    with pytest.raises(ValueError, match="unknown attention 'sse'; choose one of none, .*se"):
        run(fit_args(imagefolder_root, "--model.backbone.init_args.attention=sse"))


def test_console_scripts(tmp_path):
    bin_dir = Path(sys.executable).parent
    for command in (
        [str(bin_dir / "lightning"), "--help"],
        [sys.executable, "-m", "selab", "fit", "--help"],
    ):
        result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "fit" in result.stdout


def test_console_reports_missing_data_in_one_line(tmp_path):
    lightning = str(Path(sys.executable).parent / "lightning")
    command = [lightning, "fit", *SE_ARGS, "--data.download=false", *QUIET]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: cifar10 was not found")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "logs").exists()  # nothing half-written


class SigtermAfterFirstStep(Callback):
    """What ``kill PID`` does to a training run: SIGTERM to this process after one step."""

    def on_train_batch_end(self, *args) -> None:
        os.kill(os.getpid(), signal.SIGTERM)


def test_a_run_stopped_by_sigterm_exits_with_its_status(in_tmp, imagefolder_root, capsys):
    callback = "--trainer.callbacks+=test_cli.SigtermAfterFirstStep"
    with pytest.raises(SystemExit) as stopped:
        main(fit_args(imagefolder_root, callback))
    assert stopped.value.code == 128 + signal.SIGTERM  # Lightning alone exits with 0
    assert capsys.readouterr().err.strip().splitlines()[-1] == "fit: stopped by SIGTERM"
    status = runs.read_status(in_tmp / f"logs/{SE_RUN_NAME}/version_0")
    assert status["fit"]["state"] == runs.INTERRUPTED


def test_make_train_takes_an_image_folder_and_extra_options():
    """``make train DATA=DIR ARGS=...``, the offline route the missing-data error points to."""
    result = subprocess.run(
        ["make", "-n", "train", "DATA=/somewhere/images", "ARGS=--trainer.max_epochs 1"],
        capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=60,
    )  # fmt: skip
    command = [line for line in result.stdout.splitlines() if "lightning fit" in line]
    assert command == [
        ".venv/bin/lightning fit --config configs/cifar10/resnet20.yaml --config "
        "configs/attention/se.yaml --data.dataset=imagefolder --data.root=/somewhere/images "
        "--trainer.max_epochs 1"
    ]


def test_missing_data_under_make_names_the_make_form(tmp_path, monkeypatch, capsys):
    from selab.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAKELEVEL", "1")  # as make sets it for `make train`
    with pytest.raises(SystemExit):
        main(["fit", *SE_ARGS, f"--data.root={tmp_path}/data", "--data.download=false", *QUIET])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: cifar10 was not found") and "make train DATA=DIR" in error
    assert sorted(tmp_path.iterdir()) == []


NOISE = (
    "args parameter is intended",  # LightningCLI, when given sys.argv twice
    "litlogger",  # Lightning's advertisement
    "Trainer already configured with model summary",
    "exists and is not empty",  # the checkpoint folder, on a resume
    "rank_zero_warn(",  # the source line of a warning
    "UserWarning",
    "dirpath has changed",  # the checkpoint callback, when evaluating into a new run folder
)


def test_console_output_is_free_of_noise_and_ends_with_the_run(tmp_path, imagefolder_root):
    """A fit and its resume print what matters: no Lightning chatter, selab's warnings on one
    line, and last the run folder with its best metric."""
    lightning = str(Path(sys.executable).parent / "lightning")
    base = [
        lightning, "fit", *SE_ARGS, "--data.dataset=imagefolder", f"--data.root={imagefolder_root}",
        "--data.num_workers=0", "--data.batch_size=10", "--data.val_size=0",
        "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", *QUIET,
    ]  # fmt: skip
    for extra in (["--trainer.max_epochs=1"], ["--trainer.max_epochs=2", "--ckpt_path=last"]):
        result = subprocess.run(
            base + extra, capture_output=True, text=True, cwd=tmp_path, timeout=300
        )
        assert result.returncode == 0, result.stderr
        output = result.stdout + result.stderr
        noise = NOISE if torch.cuda.is_available() else (*NOISE, "GPU available", "TPU available")
        assert [text for text in noise if text in output] == []
        assert "warning: val_size is 0: validation runs on the TEST split" in result.stderr
        run_dir = f"logs/{SE_RUN_NAME}/version_0"
        assert (
            result.stdout.strip()
            .splitlines()[-1]
            .startswith(f"fit: run folder {run_dir}; best val/acc_top1 ")
        )


def test_validating_a_checkpoint_is_free_of_lightnings_checkpoint_note(tiny_run, tmp_path):
    """Evaluating writes to a new run folder: Lightning's note that the checkpoint callback's
    best-k record is not carried over is noise there."""
    import warnings

    versions = sorted(tiny_run.log_dir.parent.iterdir())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(
            ["validate", f"--ckpt_path={tiny_run.ckpt}", "--trainer.logger=false",
             f"--trainer.default_root_dir={tmp_path}", *QUIET]
        )  # fmt: skip
    assert sorted(tiny_run.log_dir.parent.iterdir()) == versions  # the shared run untouched
    assert [str(w.message) for w in caught if "dirpath has changed" in str(w.message)] == []


def test_mixed_precision_model_summary_is_quiet():
    """Under a mixed precision the weights stay float32, so Lightning's 32-bit size estimate in
    the model summary is right and its warning that it is not is noise."""
    import warnings

    from lightning.pytorch import Trainer
    from lightning.pytorch.demos.boring_classes import BoringModel
    from lightning.pytorch.utilities.model_summary import ModelSummary

    from selab.cli.quiet import quiet_warnings

    model = BoringModel()
    model.trainer = Trainer(accelerator="cpu", precision="bf16-mixed", logger=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_warnings()
        summary = ModelSummary(model)
    assert [str(w.message) for w in caught] == []
    assert summary.model_size == pytest.approx(66 * 4 / 1e6)  # BoringModel: Linear(32, 2)


def test_help_is_selabs_own(capsys):
    from selab.cli import main

    result = subprocess.run(
        [sys.executable, "-m", "selab", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: selab <command>")
    commands = re.findall(r"^  (\w+) {2,}\S", result.stdout, re.MULTILINE)
    assert commands == ["fit", "validate", "test", "predict", "study", "runs"]
    assert "README.md" in result.stdout
    for subcommand in ("fit", "validate", "test", "predict"):
        with pytest.raises(SystemExit) as exit_:
            main([subcommand, "--help"])
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        assert "never run on your" not in text and "Useful to" not in text  # whole sentences
        assert f"\n{subcommand} options:\n" in text


def test_fit_without_checkpointing(in_tmp, imagefolder_root):
    """``--trainer.enable_checkpointing false`` drops selab's checkpoint callback (Lightning
    refuses one in the callbacks then) and trains without writing checkpoints."""
    cli = run(fit_args(imagefolder_root, "--trainer.enable_checkpointing=false"))
    assert cli.trainer.global_step == 2 and cli.trainer.checkpoint_callback is None
    assert list(in_tmp.rglob("*.ckpt")) == []


def test_test_of_a_run_checkpoint_uses_the_runs_data(in_tmp, imagefolder_root, no_network, capsys):
    """``lightning test --config <recipe> --ckpt_path <run>/checkpoints/last.ckpt`` tests on the
    data the run trained on (an image folder here), not the recipe's CIFAR-10 download."""
    fit = run(fit_args(imagefolder_root))
    last = Path(fit.trainer.log_dir) / "checkpoints/last.ckpt"
    capsys.readouterr()
    test = run(["test", *SE_ARGS, f"--ckpt_path={last}", "--trainer.limit_test_batches=1", *QUIET])
    assert test.datamodule.dataset == "imagefolder"
    assert str(test.datamodule.root) == str(imagefolder_root)
    assert test.config.test.trainer.limit_test_batches == 1  # the command line still wins
    assert "test/acc_top1" in test.trainer.callback_metrics
    assert Path(test.trainer.log_dir) == Path(fit.trainer.log_dir)  # logged into the run
    err = capsys.readouterr().err
    assert "test: settings of the checkpoint's run from " in err and "(data: imagefolder in " in err


def test_a_run_shorter_than_the_logging_interval_logs_its_steps(in_tmp, imagefolder_root):
    """3 batches per epoch, Lightning's default interval of 50 steps: the interval becomes the
    epoch, so train/loss and throughput are logged at step 3 and 6 (and compare_runs plots them)."""
    import pandas as pd

    args = [a for a in fit_args(imagefolder_root) if not a.startswith("--trainer.log_every")]
    args = [a.replace("limit_train_batches=2", "limit_train_batches=3") for a in args]
    cli = run([*args, "--trainer.max_epochs=2"])
    assert cli.trainer.log_every_n_steps == 3
    metrics = pd.read_csv(Path(cli.trainer.log_dir) / "metrics.csv")
    logged = metrics.dropna(subset=["train/loss"])["step"].tolist()
    assert logged == [2, 5]  # Lightning's steps count from 0: the 3rd and the 6th
    assert metrics["throughput/train_images_per_s"].notna().sum() >= 1
    assert {"train/loss", "throughput/train_images_per_s"} <= scalar_tags(Path(cli.trainer.log_dir))


@pytest.mark.parametrize("logger", ["tensorboard", "csv"])
def test_progress_bar_shows_no_version_number(in_tmp, imagefolder_root, logger):
    args = [a for a in fit_args(imagefolder_root) if a != "--trainer.enable_progress_bar=false"]
    cli = run([*args, "--config", str(Path(__file__).parents[1] / f"configs/logger/{logger}.yaml")])
    bar = cli.trainer.progress_bar_callback
    assert bar is not None
    metrics = bar.get_metrics(cli.trainer, cli.model)
    assert "v_num" not in metrics and "val/acc_top1" in metrics


def test_package_metadata_installs_without_deprecations():
    """setuptools >= 77 prints a deprecation box for a ``project.license`` table."""
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
