"""The fast path: no device->host read in a training step, no recompile after the first epoch,
the speedrun network and recipe parts, soft targets and test-time augmentation."""

import functools
import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics.classification import MulticlassAccuracy

from conftest import QUIET
from selab import Classifier, models
from selab.callbacks import EMAWeightAveraging, Lookahead
from selab.classifier import TopKAccuracy, hard_labels
from selab.cli import run
from selab.optim import (
    TriangularLR,
    multi_tensor_kwargs,
    parameter_groups,
    scale_param_groups,
)
from selab.testing import CompileCounter, HostReadCounter

# A small SE network through the whole CLI, written here so the test does not follow a recipe.
TINY_CONFIG = """
seed_everything: 0
trainer:
  max_epochs: 1
  logger:
    class_path: lightning.pytorch.loggers.TensorBoardLogger
    init_args: {save_dir: logs, name: speed}
model:
  backbone:
    class_path: selab.models.resnet20
    init_args: {attention: se}
  optimizer:
    class_path: torch.optim.SGD
    init_args: {lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 5.0e-4}
  lr_scheduler:
    class_path: selab.optim.WarmupCosineLR
    init_args: {warmup_steps: 2}
  label_smoothing: 0.1
data:
  dataset: imagefolder
  batch_size: 4
  num_workers: 0
"""


# Six convolutions and one SE block: quick to trace.
SMALL_SE_NET = (
    "--model.backbone.class_path=selab.models.vgg_small",
    "--model.backbone.init_args.attention=se",
    "--model.backbone.init_args.batch_norm=true",
)


def fit(tmp_path: Path, images: Path, *args: str, callbacks=()):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    cli = run(["--config", str(config), f"--data.root={images}", *args], run=False)
    cli.trainer.callbacks.extend(callbacks)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli


# -- no host sync in a training step -------------------------------------------------------------
def test_counter_sees_a_read_in_a_step():
    """The instrument itself: one ``.item()`` per step is counted in every counted step."""

    class Reads(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            outputs["loss"].item()

    # SGD: Adam reads its step count, a CPU tensor (no device read on a GPU), at every step.
    sgd = functools.partial(torch.optim.SGD, lr=0.1)
    model = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), num_classes=3, optimizer=sgd)
    data = torch.utils.data.TensorDataset(torch.randn(24, 3, 2, 2), torch.randint(3, (24,)))
    counter = HostReadCounter(skip=2)
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[counter, Reads()], log_every_n_steps=100,
    )  # fmt: skip
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=4))
    assert counter.counted_steps == [2, 3, 4, 5]
    assert counter.per_step() == dict.fromkeys([2, 3, 4, 5], 1), counter.describe()
    assert all(name == "item" for name, _ in counter.reads[2])


def test_training_steps_read_nothing_back(in_tmp, imagefolder_root):
    """A full ``lightning fit`` with every default callback, the progress bar, EMA and Lookahead:
    steady-state steps read no value back; the progress bar's loss is read only on its refresh
    steps, once, from a copy made on an earlier refresh."""
    counter = HostReadCounter(skip=2)
    fit(
        in_tmp, imagefolder_root,
        "--trainer.enable_progress_bar=true", "--trainer.limit_val_batches=2",
        "--trainer.log_every_n_steps=100", "--progress.every_n_steps=4",
        callbacks=[counter, EMAWeightAveraging(decay=0.9), Lookahead(every_n_steps=3)],
    )  # fmt: skip
    steps = counter.per_step()
    assert sorted(steps) == list(range(2, 2 + len(steps))) and len(steps) >= 6
    refresh = [s for s in steps if s % 4 == 0]  # the bar's loss refreshes after steps 1, 5, 9
    quiet = {s: n for s, n in steps.items() if s not in refresh}
    assert quiet == dict.fromkeys(quiet, 0), counter.describe(quiet)
    for step in refresh:
        assert [name for name, _ in counter.reads[step]] == ["item"], counter.describe([step])
        assert "progress.py" in counter.reads[step][0][1]


# -- compile: no recompile after the first epoch ----------------------------------------------
def test_compiled_run_recompiles_nothing_after_the_first_epoch(in_tmp, imagefolder_root):
    """Training with a partial last batch and validation (eval mode is its own graph), three
    epochs: every graph is compiled in epoch 1. Dynamo's guards do not depend on the backend, so
    the test compiles with the quick ``eager`` one."""
    torch._dynamo.reset()
    compiled = CompileCounter()
    fit(
        in_tmp, imagefolder_root,
        "--trainer.max_epochs=3", "--data.batch_size=16", "--trainer.limit_val_batches=2",
        '--model.compile={"backend": "eager"}', *QUIET, *SMALL_SE_NET,
        callbacks=[compiled],
    )  # fmt: skip
    assert compiled.after_epoch[0] > 0  # it did compile
    assert compiled.compiled_after(0) == 0, compiled.after_epoch


# -- classifier: soft targets and test-time augmentation ----------------------------------------
def linear_classifier(**kwargs) -> Classifier:
    torch.manual_seed(0)
    return Classifier(nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)), num_classes=5, **kwargs)


def test_soft_targets_loss_and_accuracy():
    model = linear_classifier(label_smoothing=0.1)
    images = torch.randn(6, 3, 4, 4)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    probabilities = F.one_hot(labels, 5).float() * 0.7 + 0.3 * F.one_hot((labels + 1) % 5, 5)
    logits = model(images)
    # Cross-entropy against probabilities, by hand, with smoothing spread over the 5 classes.
    smoothed = probabilities * 0.9 + 0.1 / 5
    expected = -(smoothed * logits.log_softmax(1)).sum(1).mean()
    assert model.loss(logits, probabilities).item() == pytest.approx(expected.item(), rel=1e-6)
    # One-hot probabilities give the same loss as the labels themselves.
    one_hot = F.one_hot(labels, 5).float()
    assert model.loss(logits, one_hot).item() == pytest.approx(model.loss(logits, labels).item())
    model.train_accuracy.update(logits, hard_labels(probabilities))  # what training_step does
    accuracy = model.train_accuracy.compute()["acc_top1"]
    assert accuracy.item() == pytest.approx((logits.argmax(1) == labels).float().mean().item())


def test_evaluation_loss_is_the_mean_over_images_whatever_the_batches():
    """val/test loss: the per-image mean over the epoch, padding images left out, the same for
    any batching (reference: one cross-entropy over all real images)."""
    model = linear_classifier().eval()
    images, labels = torch.randn(21, 3, 4, 4), torch.randint(5, (21,))
    expected = F.cross_entropy(model(images), labels).item()
    for batch in (4, 11, 21):
        model.val_loss.reset()
        for i in range(0, 21, batch):
            x, y = images[i : i + batch], labels[i : i + batch]
            if len(y) < batch:  # padded as data.eval_padding does
                pad = batch - len(y)
                x = torch.cat([x, torch.zeros(pad, *x.shape[1:])])
                y = torch.cat([y, torch.full((pad,), -100)])
            model._evaluate((x, y), model.val_accuracy, model.val_loss)
        assert model.val_loss.compute().item() == pytest.approx(expected, rel=1e-6), batch


def test_sum_reduction_and_plateau_monitor():
    images, labels = torch.randn(6, 3, 4, 4), torch.tensor([0, 1, 2, 3, 4, 0])
    mean, total = linear_classifier(), linear_classifier(loss_reduction="sum")
    logits = mean(images)
    assert total.loss(logits, labels, total.loss_reduction).item() == pytest.approx(
        6 * mean.loss(logits, labels).item(), rel=1e-6
    )
    plateau = functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, mode="min")
    model = linear_classifier(lr_scheduler=plateau, lr_scheduler_monitor="val/loss")
    assert model.configure_optimizers()["lr_scheduler"]["monitor"] == "val/loss"
    with pytest.raises(ValueError, match="loss_reduction"):
        linear_classifier(loss_reduction="none")


def test_topk_accuracy_equals_torchmetrics():
    """The one-topk accuracy against torchmetrics' MulticlassAccuracy (micro), over batches, with
    padding targets left out of both."""
    generator = torch.Generator().manual_seed(0)
    ours = TopKAccuracy(7, ks=(1, 3, 5), ignore_index=-100)
    reference = {
        k: MulticlassAccuracy(7, top_k=k, average="micro", ignore_index=-100) for k in (1, 3, 5)
    }
    for n in (16, 9, 30):
        logits = torch.randn(n, 7, generator=generator)
        labels = torch.randint(7, (n,), generator=generator)
        labels[:2] = -100  # evaluation padding
        ours.update(logits, labels)
        for metric in reference.values():
            metric.update(logits, labels)
    got = ours.compute()
    for k, metric in reference.items():
        assert got[f"acc_top{k}"].item() == pytest.approx(metric.compute().item()), k
    assert TopKAccuracy(3, ks=(1, 5)).ks == (1, 3)  # top-5 of 3 classes is top-3


def test_test_time_augmentation_by_hand():
    """With a linear backbone the TTA logits are the backbone applied to the weighted average of
    the views: the image and its mirror (1/2), each one-pixel shift with its mirror (1/4)."""
    model = linear_classifier().eval()
    images = torch.randn(2, 3, 4, 4)
    linear = model.backbone

    def reflect(k: int, n: int = 4) -> int:  # F.pad's "reflect": the edge pixel is not repeated
        return -k if k < 0 else 2 * (n - 1) - k if k > n - 1 else k

    def shift(x, d):  # pixel (i, j) comes from (i - d, j - d), reflected at the borders
        index = torch.tensor([reflect(i - d) for i in range(4)])
        return x[..., index, :][..., index]

    assert torch.equal(shift(images, 1)[..., 1:, 1:], images[..., :-1, :-1])
    assert torch.equal(shift(images, -1)[..., 3, 3], images[..., 2, 2])
    mirror = lambda x: 0.5 * (x + x.flip(-1))  # noqa: E731
    views = {
        "none": images,
        "flip": mirror(images),
        "flip_translate": 0.5 * mirror(images)
        + 0.25 * mirror(shift(images, 1))
        + 0.25 * mirror(shift(images, -1)),
    }
    for tta, view in views.items():
        model.tta = tta
        torch.testing.assert_close(model.predict_logits(images), linear(view))
    with pytest.raises(ValueError, match="unknown tta"):
        linear_classifier(tta="flip_rotate")


# -- optimizer plumbing --------------------------------------------------------------------------
def test_triangular_schedule_by_hand():
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=2.0)
    schedule = TriangularLR(optimizer, peak=0.25, start_factor=0.2, end_factor=0.1, total_steps=8)
    factors = [schedule.factor(step) for step in range(9)]
    # 0.2 -> 1 over steps 0..2, then 1 -> 0.1 over steps 2..8.
    expected = [0.2, 0.6, 1.0, 0.85, 0.7, 0.55, 0.4, 0.25, 0.1]
    assert factors == pytest.approx(expected)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.4)  # step 0 applied at creation


def test_parameter_groups_scale_learning_rate_and_decay():
    net = models.speedrun_net(widths=(8, 16, 16))
    groups = parameter_groups(net)
    optimizer = scale_param_groups(torch.optim.SGD(groups, lr=0.5, weight_decay=0.01))
    rest, norm_biases, whiten_bias = optimizer.param_groups
    assert (rest["lr"], rest["weight_decay"]) == (0.5, 0.01)
    assert norm_biases["lr"] == 32.0 and norm_biases["weight_decay"] == pytest.approx(0.01 / 64)
    assert whiten_bias["weight_decay"] == 0.0 and whiten_bias["params"] == [net.whiten.bias]
    assert len(norm_biases["params"]) == 6  # two BN per block
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(trainable)  # each trainable parameter once, no frozen one
    plain = nn.Linear(2, 2)
    assert parameter_groups(plain) == list(plain.parameters())


def test_multi_tensor_kwargs_keep_explicit_choices():
    from jsonargparse import ArgumentParser
    from lightning.pytorch.cli import OptimizerCallable

    parser = ArgumentParser()
    parser.add_argument("--opt", type=OptimizerCallable)

    def factory(init_args):
        value = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1, **init_args}}
        return parser.instantiate_classes(parser.parse_object({"opt": value})).opt

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert multi_tensor_kwargs(factory({}), cpu) == {"foreach": True}
    assert multi_tensor_kwargs(factory({}), cuda) == {"fused": True}
    assert multi_tensor_kwargs(factory({"foreach": False}), cuda) == {}
    assert multi_tensor_kwargs(factory({"fused": True}), cpu) == {}
    assert multi_tensor_kwargs(torch.optim.Adam, cuda) == {"fused": True}
    assert multi_tensor_kwargs(functools.partial(torch.optim.LBFGS, lr=1), cpu) == {}


# -- weight averaging ----------------------------------------------------------------------------
class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.backbone(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def tiny_loader():
    generator = torch.Generator().manual_seed(1)
    data = torch.utils.data.TensorDataset(
        torch.randn(40, 4, generator=generator), torch.randint(2, (40,), generator=generator)
    )
    return torch.utils.data.DataLoader(data, batch_size=8)


def train_tiny(callback, epochs: int = 2) -> Tiny:
    model = Tiny()
    trainer = L.Trainer(
        max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[callback], accelerator="cpu",
    )  # fmt: skip
    trainer.fit(model, tiny_loader())
    return model


def test_ema_matches_torch_averaged_model():
    """The sync-free EMA ends on the same weights as torch's own ``AveragedModel`` with the EMA
    rule, updated after every step of an identical run."""

    class Reference(L.Callback):
        def on_fit_start(self, trainer, pl_module):
            self.average = AveragedModel(
                pl_module, multi_avg_fn=get_ema_multi_avg_fn(0.8), use_buffers=True
            )

        def on_train_batch_end(self, trainer, pl_module, *args):
            self.average.update_parameters(pl_module)

    reference = Reference()
    train_tiny(reference)
    ours = train_tiny(EMAWeightAveraging(decay=0.8))  # the model ends on the averaged weights
    expected = reference.average.module.state_dict()
    for name, value in ours.state_dict().items():
        if value.is_floating_point():  # torch blends BatchNorm's integer batch count; we copy it
            torch.testing.assert_close(value, expected[name], msg=name)


def test_lookahead_by_hand():
    """Every k steps: slow <- decay * slow + (1 - decay) * fast, fast <- slow; the decay grows
    as decay * (step / total) ** power; the run ends on the slow weights."""

    class Record(L.Callback):
        def __init__(self):
            self.before, self.after = [], []

        def on_train_batch_end(self, trainer, pl_module, *args):  # runs before Lookahead's
            self.before.append([t.clone() for t in Lookahead._fast(pl_module)])

    record = Record()
    lookahead = Lookahead(every_n_steps=2, decay=0.5, power=1.0)
    model = Tiny()
    trainer = L.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[record, lookahead], accelerator="cpu",
    )  # fmt: skip
    initial = [t.clone() for t in Lookahead._fast(model)]
    trainer.fit(model, tiny_loader())
    total = 10  # 2 epochs of 5 batches
    slow = initial
    for step in range(1, total + 1):
        if step % 2 == 0:
            decay = 0.5 * step / total
            fast = record.before[step - 1]
            slow = [decay * s + (1 - decay) * f for s, f in zip(slow, fast, strict=True)]
    for got, want in zip(Lookahead._fast(model), slow, strict=True):
        torch.testing.assert_close(got, want)
    assert lookahead.decay_at(5) == pytest.approx(0.25)


# -- the speedrun network ------------------------------------------------------------------------
def test_speedrun_net_parameters_and_shapes():
    net = models.build_backbone("speedrun_net")
    # airbench94's network: 1.97M parameters (Jordan 2024); counted by hand below.
    convs = 24 * 64 * 9 + 64 * 64 * 9 + 64 * 256 * 9 + 256 * 256 * 9 * 3
    whiten = 24 * 3 * 2 * 2 + 24
    norms = 2 * (64 + 64 + 256 * 4)
    assert sum(p.numel() for p in net.parameters()) == convs + whiten + norms + 256 * 10
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 2) == 1.97
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert not net.whiten.weight.requires_grad
    assert all(not m.weight.requires_grad for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    se = models.speedrun_net(attention="se")
    assert [type(block.attention).__name__ for block in se.stages] == ["SqueezeExcite"] * 3
    assert [block.attention.stage for block in se.stages] == [1, 2, 3]
    with pytest.raises(ValueError, match="stages"):
        models.speedrun_net(attention={"name": "se", "stages": [4]})


def test_patch_whitening_whitens_training_patches():
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(200, 3, 16, 16, generator=generator)
    images = base + 0.8 * base.roll(1, dims=-1)  # correlated neighbouring pixels
    net = models.speedrun_net()
    net.initialize_from_data(lambda count: images[:count])
    out = F.conv2d(images, net.whiten.weight)
    features = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = torch.cov(features.T)
    eps = net.whiten.eps  # eigenvalue e becomes e / (e + eps)
    torch.testing.assert_close(covariance, torch.eye(12), atol=0.02, rtol=0)
    torch.testing.assert_close(out[:, 12:], -out[:, :12])  # the negated copies
    assert eps > 0 and bool(net.whiten.initialized)


def test_identity_initialised_convs_pass_their_input():
    block = models.speedrun.SpeedrunBlock(8, 16)
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(block.conv1(x)[:, :8], x)
    y = torch.randn(2, 16, 6, 6)
    torch.testing.assert_close(block.conv2(y), y)  # square: fully the identity


def test_whitening_bias_trains_for_its_epochs_only():
    """Frozen means unmoved: momentum built up while it trained must not carry it further."""
    torch.manual_seed(0)
    net = models.speedrun_net(widths=(8, 8, 8), whiten_bias_epochs=2)
    optimizer = torch.optim.SGD(parameter_groups(net), lr=0.1, momentum=0.9, nesterov=True)
    x = torch.randn(2, 3, 32, 32)
    for epoch, trains in ((0, True), (1, True), (2, False), (3, False)):
        net.set_epoch(epoch)
        before = net.whiten.bias.detach().clone()
        optimizer.zero_grad()
        net(x).sum().backward()
        optimizer.step()
        assert (net.whiten.bias.grad is not None) is trains, epoch
        assert bool((net.whiten.bias != before).any()) is trains, epoch
    assert any(p is net.whiten.bias for g in parameter_groups(net) for p in g["params"])  # resume


def test_patch_whitening_runs_in_float32_under_autocast():
    torch.manual_seed(0)
    net = models.speedrun_net(widths=(8, 8, 8))
    images = torch.randn(64, 3, 8, 8)
    net.initialize_from_data(lambda count: images[:count])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net.whiten(images)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.conv2d(images, net.whiten.weight, net.whiten.bias))


def test_speedrun_needs_sample_images(in_tmp):
    class NoSamples(L.LightningDataModule):
        def train_dataloader(self):
            return torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(torch.randn(4, 3, 32, 32), torch.zeros(4).long())
            )

    model = Classifier(models.speedrun_net(widths=(8, 8, 8)), num_classes=10)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False)
    with pytest.raises(ValueError, match="sample_images"):
        trainer.fit(model, datamodule=NoSamples())


def test_speedrun_net_fits_one_batch():
    """The network and its parameter groups train: one batch of random labels is memorised."""
    torch.manual_seed(0)
    images, labels = torch.randn(32, 3, 16, 16), torch.randint(10, (32,))
    net = models.speedrun_net(widths=(16, 32, 32))
    net.initialize_from_data(lambda count: images[:count])
    optimizer = scale_param_groups(
        torch.optim.SGD(parameter_groups(net), lr=0.2, momentum=0.85, nesterov=True)
    )
    for _ in range(60):
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert math.isfinite(loss.item()) and loss.item() < 0.5
