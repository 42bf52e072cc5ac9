"""The one LightningModule every experiment uses: a thin "system" around an injected backbone."""

from __future__ import annotations

import warnings
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from .optim import (
    RUN_LENGTH_SCHEDULES,
    multi_tensor_kwargs,
    parameter_groups,
    scale_param_groups,
)

TTA = ("none", "flip", "flip_translate")


# Target of the images that complete a padded evaluation batch (data.eval_padding): the loss's
# ignore_index, left out of every evaluation metric.
PADDING_TARGET = -100


class TopKAccuracy(Metric):
    """Top-k accuracies (micro: the fraction of images whose label is among the k highest logits)
    for several k from one ``topk``, summed on the device and synced across processes at
    ``compute()``; images labelled ``ignore_index`` are left out.

    torchmetrics' ``MulticlassAccuracy`` gives the same numbers (a test checks it) with about ten
    times the work per update: one instance per k, each formatting and validating its inputs.
    """

    full_state_update = False

    def __init__(
        self, num_classes: int, ks: tuple[int, ...] = (1, 5), ignore_index: int | None = None
    ) -> None:
        super().__init__()
        self.ks = tuple(dict.fromkeys(min(k, num_classes) for k in ks))
        self.names = [f"acc_top{k}" for k in ks]
        self.ignore_index = ignore_index
        self.register_buffer("_columns", torch.tensor([k - 1 for k in self.ks]), persistent=False)
        self.add_state("correct", torch.zeros(len(self.ks)), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(()), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        top = logits.topk(max(self.ks), dim=1).indices
        # At most one hit per row, so the running sum says "within the first j" for every j.
        within = (top == labels[:, None]).cumsum(1)
        self.correct += within.index_select(1, self._columns).sum(0)
        if self.ignore_index is None:
            self.total += labels.shape[0]
        else:
            self.total += (labels != self.ignore_index).sum()

    def compute(self) -> dict[str, torch.Tensor]:
        values = self.correct / self.total
        return {name: values[min(i, len(self.ks) - 1)] for i, name in enumerate(self.names)}


class MeanLoss(Metric):
    """The mean loss per image over an epoch, from per-batch sums and image counts kept on the
    device (synced across processes at ``compute()``).

    ``torchmetrics.MeanMetric`` either checks every update for NaNs (a device read per batch) or,
    with ``nan_strategy="disable"``, ignores the weights (torchmetrics 1.9).
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("loss_sum", torch.zeros(()), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(()), dist_reduce_fx="sum")

    def update(self, loss_sum: torch.Tensor, count: torch.Tensor) -> None:
        self.loss_sum += loss_sum.detach().float()
        self.count += count

    def compute(self) -> torch.Tensor:
        return self.loss_sum / self.count


def hard_labels(targets: torch.Tensor) -> torch.Tensor:
    """Class indices from int labels (N,) or class probabilities (N, K) (MixUp, CutMix)."""
    return targets.argmax(1) if targets.ndim == 2 else targets


class Classifier(L.LightningModule):
    """Image classification with any backbone that maps images to logits.

    Args:
        backbone: the network, e.g. ``selab.models.resnet20(attention="se")`` or, in YAML,
            ``{class_path: selab.models.resnet20, init_args: {attention: se}}``.
        num_classes: linked from ``data.num_classes`` by the CLI.
        class_names: linked from ``data.class_names``; names the per-class test metrics.
        optimizer: called with the parameters, e.g. ``torch.optim.SGD`` with its ``init_args``.
            Backbones with a ``parameter_groups()`` method give some parameters their own learning
            rate. Unless the config sets ``fused`` or ``foreach``, optimizers that have them run
            fused on CUDA and multi-tensor (foreach) elsewhere.
        lr_scheduler: called with the optimizer. Stepped per epoch, except schedules with
            ``interval = "step"`` such as :class:`selab.optim.WarmupCosineLR`, whose
            ``total_steps`` defaults to ``trainer.estimated_stepping_batches``.
        label_smoothing: passed to the cross-entropy loss.
        channels_last: keep the backbone's weights and the input images in NHWC memory format,
            which the tensor cores of recent GPUs (and mixed precision) want; None (the default)
            turns it on when training on CUDA.
        compile: ``torch.compile`` the backbone (in place, so checkpoints keep their keys); a dict
            passes options, e.g. ``{mode: max-autotune}``. The first steps are slow (compiling).
        tta: test-time augmentation for validation, test and predict: ``flip`` averages the logits
            of the image and its mirror image, ``flip_translate`` also those of the image shifted
            by one pixel up-left and down-right (reflect padding), weighted 1/2 untranslated and
            1/4 per shift, as in the airbench recipe.
        loss_reduction: the training loss is the ``mean`` over the batch's images (the default)
            or their ``sum`` (some reference training loops; the gradient then grows with the
            batch size). ``val/loss`` and ``test/loss`` are per-image means either way.
        lr_scheduler_monitor: the logged metric a ``ReduceLROnPlateau`` schedule follows (set its
            ``mode`` to match: ``max`` for accuracies, ``min`` for losses).

    Training reads nothing back to the host: accuracies accumulate on the device and are computed
    at the end of the epoch; ``train/loss`` is logged, as a device tensor, at the steps Lightning
    writes logs (``trainer.log_every_n_steps``), where Lightning converts it for the loggers.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        class_names: list[str] | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        label_smoothing: float = 0.0,
        channels_last: bool | None = None,
        compile: bool | dict = False,
        tta: Literal["none", "flip", "flip_translate"] = "none",
        loss_reduction: Literal["mean", "sum"] = "mean",
        lr_scheduler_monitor: str = "val/acc_top1",
    ) -> None:
        super().__init__()
        # Under LightningCLI this stores the parsed config (backbone included), which is what lets
        # ``Classifier.load_from_checkpoint(path)`` rebuild the network with no config at hand.
        with warnings.catch_warnings():  # a module built in Python is dropped just below
            warnings.filterwarnings("ignore", "Attribute 'backbone' is an instance of `nn.Module`")
            self.save_hyperparameters()
        if isinstance(self.hparams.get("backbone"), nn.Module):  # built in Python: weights suffice
            self.remove_ignored_hparams(["backbone"])
            self._hparams_initial.pop("backbone", None)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names given for {num_classes} classes")
        if tta not in TTA:
            raise ValueError(f"unknown tta {tta!r}; choose one of {', '.join(TTA)}")
        if loss_reduction not in ("mean", "sum"):
            raise ValueError(f"unknown loss_reduction {loss_reduction!r}; choose 'mean' or 'sum'")
        self.backbone = backbone
        self.num_classes = num_classes
        self.class_names = (
            list(class_names) if class_names else [str(i) for i in range(num_classes)]
        )
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.label_smoothing = label_smoothing
        self.channels_last = channels_last
        self.tta = tta
        self.loss_reduction = loss_reduction
        self.lr_scheduler_monitor = lr_scheduler_monitor
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        if compile:
            self.backbone.compile(**(compile if isinstance(compile, dict) else {}))

        self.train_accuracy = TopKAccuracy(num_classes)
        self.val_accuracy = TopKAccuracy(num_classes, ignore_index=PADDING_TARGET)
        self.test_accuracy = TopKAccuracy(num_classes, ignore_index=PADDING_TARGET)
        self.val_loss = MeanLoss()
        self.test_loss = MeanLoss()
        options = {"validate_args": False, "ignore_index": PADDING_TARGET}
        self.test_per_class = MulticlassAccuracy(num_classes, average=None, **options)
        self.test_confusion = MulticlassConfusionMatrix(num_classes, **options)

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets this before and after every hook, some 40 times a training step;
        # nn.Module's __setattr__ (parameter, buffer and module checks) is most of that cost.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # -- set-up ---------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device
        if self.channels_last is None:
            self.channels_last = device.type == "cuda"
            if self.channels_last:
                self.backbone.to(memory_format=torch.channels_last)
        if device.type == "cuda" and not torch.are_deterministic_algorithms_enabled():
            torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
        initialize = getattr(self.backbone, "initialize_from_data", None)
        if stage == "fit" and callable(initialize):
            # A checkpoint being resumed is loaded after this and overwrites what it computes.
            sample_images = getattr(self.trainer.datamodule, "sample_images", None)
            if sample_images is None:
                raise ValueError(
                    f"{type(self.backbone).__name__} initialises itself from training images and "
                    "needs a datamodule with sample_images(count), such as selab.VisionDataModule"
                )
            initialize(sample_images)

    def on_train_epoch_start(self) -> None:
        set_epoch = getattr(self.backbone, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.current_epoch)

    # -- forward --------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.backbone(images)

    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for evaluation, with the configured test-time augmentation."""
        if self.tta == "none":
            return self(images)

        def with_mirror(x: torch.Tensor) -> torch.Tensor:
            return 0.5 * (self(x) + self(x.flip(-1)))

        logits = with_mirror(images)
        if self.tta == "flip":
            return logits
        padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
        up_left, down_right = padded[..., :-2, :-2], padded[..., 2:, 2:]
        return 0.5 * logits + 0.25 * (with_mirror(up_left) + with_mirror(down_right))

    def _check_logits(self, logits: torch.Tensor) -> None:
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the backbone returned logits of shape {tuple(logits.shape)}, expected "
                f"(batch, {self.num_classes}); set the backbone's num_classes to the dataset's"
            )

    def loss(
        self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        """Cross-entropy with int labels or with class probabilities (MixUp/CutMix); padding
        images (target ``PADDING_TARGET``) are left out."""
        return F.cross_entropy(
            logits,
            targets,
            label_smoothing=self.label_smoothing,
            ignore_index=PADDING_TARGET,
            reduction=reduction,
        )

    # -- steps ----------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        logits = self(images)
        if batch_idx == 0:  # the shape is the same on every step
            self._check_logits(logits)
        loss = self.loss(logits, targets, self.loss_reduction)
        self.train_accuracy.update(logits.detach(), hard_labels(targets))
        # Lightning hands step values to the loggers only at logging steps (log_every_n_steps):
        # logging on the others would cost host time for nothing. The epoch's last step is logged
        # too, so callback_metrics (early stopping, tests) always holds a recent loss.
        trainer = self._trainer
        if (
            trainer is None
            or trainer.fast_dev_run
            or trainer._logger_connector.should_update_logs
            or batch_idx == trainer.num_training_batches - 1
        ):
            self.log("train/loss", loss.detach())
        return loss

    def _log_accuracy(self, metric: TopKAccuracy, prefix: str, prog_bar: bool = False) -> None:
        """Log ``<prefix>acc_top<k>`` (already global: ``compute`` syncs) and reset."""
        if metric.update_count:
            for name, value in metric.compute().items():
                self.log(f"{prefix}{name}", value, prog_bar=prog_bar)
        metric.reset()

    def on_train_epoch_end(self) -> None:
        self._log_accuracy(self.train_accuracy, "train/")

    def _evaluate(self, batch, accuracy: TopKAccuracy, mean_loss: MeanLoss):
        images, targets = batch
        logits = self.predict_logits(images)
        self._check_logits(logits)
        labels = hard_labels(targets)
        # Summed over the batch's real images and counted on the device: nothing read back.
        mean_loss.update(self.loss(logits, targets, "sum"), (labels != PADDING_TARGET).sum())
        accuracy.update(logits, labels)
        return logits, labels

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_accuracy, self.val_loss)
        self.log("val/loss", self.val_loss)

    def on_validation_epoch_end(self) -> None:
        self._log_accuracy(self.val_accuracy, "val/", prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        logits, labels = self._evaluate(batch, self.test_accuracy, self.test_loss)
        self.test_per_class.update(logits, labels)
        self.test_confusion.update(logits, labels)
        self.log("test/loss", self.test_loss)

    def on_test_epoch_end(self) -> None:
        self._log_accuracy(self.test_accuracy, "test/")
        # compute() syncs across processes, so every rank logs the same global values.
        per_class = self.test_per_class.compute()
        for name, value in zip(self.class_names, per_class, strict=True):
            self.log(f"test/acc_class/{name}", value)
        self.confusion_matrix = self.test_confusion.compute().cpu()
        self.test_per_class.reset()
        self.test_confusion.reset()

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self.predict_logits(images).softmax(dim=1)

    # -- optimization ---------------------------------------------------------------------------
    def configure_optimizers(self):
        device = self.trainer.strategy.root_device if self._trainer is not None else self.device
        kwargs = multi_tensor_kwargs(self.optimizer, device)
        optimizer = scale_param_groups(self.optimizer(parameter_groups(self.backbone), **kwargs))
        if self.lr_scheduler is None:
            return optimizer
        scheduler = self.lr_scheduler(optimizer)
        if isinstance(scheduler, RUN_LENGTH_SCHEDULES) and scheduler.total_steps is None:
            scheduler.total_steps = int(self.trainer.estimated_stepping_batches)
        config = {"scheduler": scheduler, "interval": getattr(scheduler, "interval", "epoch")}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = self.lr_scheduler_monitor
        return {"optimizer": optimizer, "lr_scheduler": config}
