"""Training at scale through the CLI: exact resume, DDP metric sync, speed switches."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO
from fakedata import write_imagefolder
from selab import Classifier
from selab.cli import run

# The recipe of the CIFAR ResNets (written here so that the test follows no shipped config).
RECIPE = """
seed_everything: 0
trainer:
  logger:
    class_path: lightning.pytorch.loggers.TensorBoardLogger
    init_args: {save_dir: logs, name: scale}
model:
  backbone:
    class_path: selab.models.resnet20
  optimizer:
    class_path: torch.optim.SGD
    init_args: {lr: 0.1, momentum: 0.9, weight_decay: 1.0e-4}
  lr_scheduler:
    class_path: torch.optim.lr_scheduler.MultiStepLR
    init_args: {milestones: [1], gamma: 0.1}
data:
  dataset: imagefolder
  batch_size: 8
  num_workers: 0
"""
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def args(subcommand, root, name, *extra):
    config = Path(root).parent / "recipe.yaml"
    config.write_text(RECIPE)
    return [
        subcommand, "--config", str(config), f"--data.root={root}",
        f"--trainer.logger.init_args.name={name}", *QUIET, *extra,
    ]  # fmt: skip


def last_scalar(log_dir, tag):
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return events.Scalars(tag)[-1].value


def test_resume_at_an_epoch_boundary_is_bit_exact(in_tmp, imagefolder_root):
    """2 epochs straight == 1 epoch, stop, resume with --ckpt_path last to epoch 2.

    Bit-exact on CPU: the order and the augmentation of epoch 2 depend only on (seed, epoch,
    index), and the checkpoint holds weights, BN statistics, optimizer and scheduler state. The
    epoch uses every random augmentation the memory loader has (alternating flip, translation,
    cutout, MixUp and CutMix)."""
    common = [
        "--trainer.deterministic=true", "--model.optimizer.lr=0.05", "--data.val_size=4",
        "--data.flip=alternating", "--data.cutout=8", "--data.mixup_alpha=0.2",
        "--data.cutmix_alpha=1.0", "--trainer.log_every_n_steps=1",
    ]  # fmt: skip
    straight = run(args("fit", imagefolder_root, "straight", "--trainer.max_epochs=2", *common))
    stopped = run(args("fit", imagefolder_root, "stopped", "--trainer.max_epochs=1", *common))
    first_epoch = {k: v.clone() for k, v in stopped.model.state_dict().items()}
    resumed = run(
        args(
            "fit", imagefolder_root, "stopped", "--trainer.max_epochs=2", "--ckpt_path=last",
            *common,
        )
    )  # fmt: skip
    assert resumed.trainer.global_step == straight.trainer.global_step == 8  # 2 x 36 // 8
    assert Path(resumed.trainer.log_dir).resolve() == in_tmp / "logs/stopped/version_0"
    expected, got = straight.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    # The epoch-2 update really moved the weights (so the comparison above means something).
    assert not torch.equal(first_epoch["backbone.fc.weight"], got["backbone.fc.weight"])
    momentum = [s["momentum_buffer"] for s in straight.trainer.optimizers[0].state.values()]
    momentum_resumed = [s["momentum_buffer"] for s in resumed.trainer.optimizers[0].state.values()]
    assert all(map(torch.equal, momentum, momentum_resumed))
    for tag in ("val/acc_top1", "val/loss", "train/loss"):
        assert torch.equal(
            straight.trainer.callback_metrics[tag], resumed.trainer.callback_metrics[tag]
        ), tag


# speedrun94 validates only after its last epoch; small widths, and a whitening bias that freezes
# after epoch 1, so that the resume crosses the freeze with Lookahead's slow weights restored.
SPEEDRUN = [
    "--config", str(REPO / "configs/cifar10/speedrun94.yaml"), "--data.dataset=imagefolder",
    "--data.batch_size=8", "--data.eval_batch_size=8",
    "--model.backbone.init_args.widths=[8, 16, 16]",
    "--model.backbone.init_args.whiten_bias_epochs=1", "--trainer.benchmark=false", *QUIET,
]  # fmt: skip


def speedrun_args(root, name, *extra):
    return [
        "fit", *SPEEDRUN, f"--data.root={root}", f"--trainer.logger.init_args.name={name}",
        "--trainer.logger.init_args.save_dir=logs", *extra,
    ]  # fmt: skip


def test_a_run_that_validates_only_at_the_end_can_resume_after_any_epoch(in_tmp, imagefolder_root):
    """speedrun94 validates only after its last epoch; last.ckpt is still written at every epoch
    end, so a run killed during epoch 2 resumes from epoch 1's end, bit-exact."""
    common = [
        "--trainer.deterministic=true", "--data.val_size=4", "--trainer.max_epochs=3",
        "--trainer.check_val_every_n_epoch=3",
    ]  # fmt: skip

    def fit_args(name, *extra):
        return speedrun_args(imagefolder_root, name, *common, *extra)

    straight = run(fit_args("straight"))
    snapshot = in_tmp / "after_epoch_1.ckpt"

    class KilledDuringEpoch2(Callback):
        """Copies what a kill during epoch 2 would leave behind."""

        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                shutil.copy(Path(trainer.log_dir) / "checkpoints/last.ckpt", snapshot)

    killed = run(fit_args("killed")[1:], run=False)
    killed.trainer.callbacks.append(KilledDuringEpoch2())
    killed.trainer.fit(killed.model, datamodule=killed.datamodule)
    resumed = run(fit_args("resumed", f"--ckpt_path={snapshot}"))
    assert resumed.trainer.global_step == straight.trainer.global_step == 12  # 3 x 36 // 8
    expected, got = straight.model.state_dict(), resumed.model.state_dict()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_logs_the_single_process_metrics(in_tmp, tmp_path):
    """fit under DDP (gloo, 2 processes) through the console command, then validate the same
    checkpoint in one process: the val/acc_top1 DDP logged must be the single-process value.

    21 validation images on 2 ranks (11 + 10): a rank-0-only value, or Lightning's default
    padded DistributedSampler (22 images, one twice), would differ."""
    root = tmp_path / "images"
    write_imagefolder(root, n_train=40, n_test=21)
    ddp = [
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--data.val_size=0",
        "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
    ]  # fmt: skip
    path = [str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    result = subprocess.run(
        [sys.executable, "-m", "selab", *args("fit", root, "ddp", *ddp)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting with 2 processes" in result.stderr + result.stdout
    assert "sync_dist" not in result.stderr  # the accuracies are synced by their compute()
    log_dir = in_tmp / "logs/ddp/version_0"
    ddp_acc = last_scalar(log_dir, "val/acc_top1")
    ddp_loss = last_scalar(log_dir, "val/loss")

    last = log_dir / "checkpoints/last.ckpt"
    one_process = ["--trainer.strategy=auto", "--trainer.devices=1"]  # the run's config has DDP
    single = run(
        args("validate", root, "single", f"--ckpt_path={last}", "--data.val_size=0", *one_process)
    )
    metrics = single.trainer.callback_metrics
    assert ddp_acc == float(metrics["val/acc_top1"])  # counts are summed: exact
    assert abs(ddp_loss - float(metrics["val/loss"])) < 1e-5  # float sums in another order

    # The check can fail: rank 0's shard alone (images 0, 2, ..., 20) scores differently.
    model = Classifier.load_from_checkpoint(last).eval()
    dm = single.datamodule
    images, labels, _ = dm.val_set.batch(list(range(0, 21, 2)))
    with torch.no_grad():
        shard_acc = (model(images).argmax(1) == labels).float().mean().item()
    assert abs(shard_acc - ddp_acc) > 1e-3


def test_speed_switches_from_the_command_line(in_tmp, imagefolder_root):
    """bf16 autocast, channels_last, torch.compile (eager backend: no compiler in tests),
    gradient accumulation and the EMA callback, all from flags; checkpoints stay plain."""
    cli = run(
        args(
            "fit", imagefolder_root, "fast", "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=4", "--trainer.limit_val_batches=1",
            "--trainer.precision=bf16-mixed", "--cpu_bf16=always",  # on any CPU
            "--trainer.accumulate_grad_batches=2",
            "--model.channels_last=true", "--model.compile={backend: eager}",
            "--trainer.callbacks+=lightning.pytorch.callbacks.EMAWeightAveraging",
            "--trainer.callbacks.decay=0.9",
        )
    )  # fmt: skip
    model = cli.model
    assert cli.trainer.global_step == 2  # 4 batches, 2 per optimizer step
    assert cli.trainer.precision == "bf16-mixed"
    conv = model.backbone.stem[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert model.backbone._compiled_call_impl is not None
    ema = next(c for c in cli.trainer.callbacks if type(c).__name__ == "EMAWeightAveraging")
    assert ema._average_model is not None
    last = Path(cli.trainer.log_dir) / "checkpoints/last.ckpt"
    state = torch.load(last, weights_only=True)["state_dict"]
    assert "backbone.stem.0.weight" in state and not any("_orig_mod" in k for k in state)
    reloaded = Classifier.load_from_checkpoint(last, compile=False, channels_last=False)
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(reloaded.eval()(images), model.eval().float()(images))
