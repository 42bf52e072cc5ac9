"""The one LightningModule every experiment uses: a thin "system" around an injected backbone."""

from __future__ import annotations

import warnings

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from .optim import WarmupCosineLR


def accuracy_metrics(num_classes: int) -> MetricCollection:
    # micro = the fraction of images classified correctly; torchmetrics defaults to macro.
    return MetricCollection(
        {
            "acc_top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "acc_top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
        }
    )


class Classifier(L.LightningModule):
    """Image classification with any backbone that maps images to logits.

    Args:
        backbone: the network, e.g. ``selab.models.resnet20(attention="se")`` or, in YAML,
            ``{class_path: selab.models.resnet20, init_args: {attention: se}}``.
        num_classes: linked from ``data.num_classes`` by the CLI.
        class_names: linked from ``data.class_names``; names the per-class test metrics.
        optimizer: called with the parameters, e.g. ``torch.optim.SGD`` with its ``init_args``.
        lr_scheduler: called with the optimizer. Stepped per epoch, except schedules with
            ``interval = "step"`` such as :class:`selab.optim.WarmupCosineLR`, whose
            ``total_steps`` defaults to ``trainer.estimated_stepping_batches``.
        label_smoothing: passed to the cross-entropy loss.
        channels_last: keep the backbone's weights and the input images in NHWC memory format,
            which the tensor cores of recent GPUs (and mixed precision) want.
        compile: ``torch.compile`` the backbone (in place, so checkpoints keep their keys); a dict
            passes options, e.g. ``{mode: max-autotune}``. The first steps are slow (compiling).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        class_names: list[str] | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        label_smoothing: float = 0.0,
        channels_last: bool = False,
        compile: bool | dict = False,
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
        self.backbone = backbone
        self.num_classes = num_classes
        self.class_names = (
            list(class_names) if class_names else [str(i) for i in range(num_classes)]
        )
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.label_smoothing = label_smoothing
        self.channels_last = channels_last
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        if compile:
            self.backbone.compile(**(compile if isinstance(compile, dict) else {}))

        metrics = accuracy_metrics(num_classes)
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.test_per_class = MulticlassAccuracy(num_classes, average=None)
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.backbone(images)

    def _logits_and_loss(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, targets = batch
        logits = self(images)
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the backbone returned logits of shape {tuple(logits.shape)}, expected "
                f"(batch, {self.num_classes}); set the backbone's num_classes to the dataset's"
            )
        loss = F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
        return logits, targets, loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        logits, targets, loss = self._logits_and_loss(batch)
        self.train_metrics(logits, targets)
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict(self.train_metrics)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        logits, targets, loss = self._logits_and_loss(batch)
        self.val_loss(loss, weight=targets.numel())
        self.val_metrics(logits, targets)
        self.log("val/loss", self.val_loss)
        self.log_dict(self.val_metrics, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        logits, targets, loss = self._logits_and_loss(batch)
        self.test_loss(loss, weight=targets.numel())
        self.test_metrics(logits, targets)
        self.test_per_class.update(logits, targets)
        self.test_confusion.update(logits, targets)
        self.log("test/loss", self.test_loss)
        self.log_dict(self.test_metrics)

    def on_test_epoch_end(self) -> None:
        # compute() syncs across processes, so every rank logs the same global values.
        per_class = self.test_per_class.compute()
        for name, value in zip(self.class_names, per_class, strict=True):
            self.log(f"test/acc_class/{name}", value)
        self.confusion_matrix = self.test_confusion.compute().cpu()
        self.test_per_class.reset()
        self.test_confusion.reset()

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(images).softmax(dim=1)

    def configure_optimizers(self):
        optimizer = self.optimizer(self.parameters())
        if self.lr_scheduler is None:
            return optimizer
        scheduler = self.lr_scheduler(optimizer)
        if isinstance(scheduler, WarmupCosineLR) and scheduler.total_steps is None:
            scheduler.total_steps = int(self.trainer.estimated_stepping_batches)
        config = {"scheduler": scheduler, "interval": getattr(scheduler, "interval", "epoch")}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = "val/acc_top1"
        return {"optimizer": optimizer, "lr_scheduler": config}
