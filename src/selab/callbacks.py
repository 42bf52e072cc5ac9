"""TensorBoard dashboards: what a run shows besides the scalars the Classifier logs.

``Dashboard`` (CLI group ``dashboard``) and ``ExcitationMonitor`` (CLI group ``excitation``) are on
in every ``lightning`` run; switch parts off with e.g. ``--dashboard.log_graph false`` or
``--excitation.enabled false`` (or the same keys in YAML). Both write only to a
``TensorBoardLogger`` and do nothing without one.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from . import analysis

HP_METRICS = ("hp/best_val_acc_top1", "hp/test_acc_top1", "hp/test_acc_top5")


def tensorboard_logger(trainer: Trainer) -> TensorBoardLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


def _images(batch) -> torch.Tensor:
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def _get(config: Any, key: str, default: Any = None) -> Any:
    """``config[key]`` for dicts and jsonargparse Namespaces alike."""
    if config is None:
        return default
    if isinstance(config, dict):
        return config.get(key, default)
    return getattr(config, key, default)


def _short_class_path(config: Any) -> str | None:
    class_path = _get(config, "class_path")
    return class_path.rsplit(".", 1)[-1] if isinstance(class_path, str) else None


def run_hyperparameters(
    trainer: Trainer, pl_module: LightningModule, params: int, macs: int, batch_size: int
) -> dict[str, Any]:
    """The HParams columns: backbone, attention, reduction, optimizer, lr, batch size, epochs,
    dataset, parameters and MACs (per image)."""
    hparams = getattr(pl_module, "hparams", {}) or {}
    backbone_config = _get(hparams, "backbone")
    init_args = _get(backbone_config, "init_args", {}) or {}
    backbone = getattr(pl_module, "backbone", pl_module)
    kinds = sorted({analysis.attention_name(m) for _, m in analysis.find_attention(backbone)})
    attention = "+".join(kinds) or "none"

    optimizer, lr = None, None
    if trainer.optimizers:
        first = trainer.optimizers[0]
        optimizer = type(first).__name__
        group = first.param_groups[0]
        lr = group.get("initial_lr", group.get("lr"))
    else:
        config = _get(hparams, "optimizer")
        optimizer = _short_class_path(config)
        lr = _get(_get(config, "init_args"), "lr")
    datamodule = trainer.datamodule
    return {
        "backbone": _short_class_path(backbone_config) or type(backbone).__name__,
        "attention": attention,
        "reduction": int(_get(init_args, "reduction", 0) or 0) if attention != "none" else 0,
        "optimizer": optimizer or "none",
        "lr": float(lr) if lr is not None else 0.0,
        "batch_size": int(getattr(datamodule, "batch_size", None) or batch_size),
        "epochs": int(trainer.max_epochs if trainer.max_epochs is not None else -1),
        "dataset": str(getattr(datamodule, "dataset", "") or ""),
        "params": int(params),
        "macs": int(macs),
    }


class Dashboard(Callback):
    """HParams, throughput, model graph and cost table, test figures.

    - HParams tab: the run's hyper-parameters (:func:`run_hyperparameters`) against
      ``hp/best_val_acc_top1`` (updated after every validation), ``hp/test_acc_top1`` and
      ``hp/test_acc_top5`` (after ``lightning test``), written once per run folder.
    - ``throughput/train_images_per_s`` (over the last ``throughput_window`` steps) and
      ``throughput/val_images_per_s``; ``time/fit_elapsed_s`` (training wall time, carried over
      a resume) after every validation.
    - ``model/summary`` text: parameters and MACs per image of each part of the backbone and with
      vs without attention (``torch.utils.flop_counter``; MACs = FLOPs / 2). The graph
      (``log_graph``) is traced from one real image in eval mode.
    - At test: ``test/confusion_matrix`` and ``test/per_class_accuracy`` figures with class names.

    Args:
        hparams, summary, log_graph, throughput, test_figures: switch each part.
        throughput_window: training steps averaged for the images/s figure.
    """

    def __init__(
        self,
        hparams: bool = True,
        summary: bool = True,
        log_graph: bool = True,
        throughput: bool = True,
        throughput_window: int = 20,
        test_figures: bool = True,
    ) -> None:
        if throughput_window < 1:
            raise ValueError(f"throughput_window must be >= 1, got {throughput_window}")
        self.hparams = hparams
        self.summary = summary
        self.log_graph = log_graph
        self.throughput = throughput
        self.throughput_window = throughput_window
        self.test_figures = test_figures
        self.best_val: float | None = None
        self.elapsed_before = 0.0  # training seconds of earlier sessions of a resumed run
        self._fresh_run = False
        self._described = False
        self._fit_start: float | None = None
        self._steps: deque[tuple[float, int]] = deque()
        self._val_start: float | None = None
        self._val_images = 0

    # -- state carried across a resume ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"best_val": self.best_val, "elapsed": self._elapsed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_val = state_dict.get("best_val")
        self.elapsed_before = float(state_dict.get("elapsed", 0.0))

    def _elapsed(self) -> float:
        running = time.perf_counter() - self._fit_start if self._fit_start is not None else 0.0
        return self.elapsed_before + running

    # -- run description, once, at the first batch (real input shape, model on its device) ----
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        logger = tensorboard_logger(trainer)
        self._described = False
        # A run folder where something was logged before (a resumed fit, or a test logged into
        # the run that trained the checkpoint) keeps the HParams session, graph and summary
        # written the first time. TensorBoardLogger writes hparams.yaml with the first metrics.
        self._fresh_run = logger is not None and not Path(logger.log_dir, "hparams.yaml").exists()

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def _describe(self, trainer: Trainer, pl_module: LightningModule, batch) -> None:
        if self._described:
            return
        self._described = True
        logger = tensorboard_logger(trainer)
        if logger is None or not trainer.is_global_zero or not self._fresh_run:
            return
        images = _images(batch)
        example = images[:1]
        backbone = getattr(pl_module, "backbone", pl_module)
        writer = logger.experiment
        # Two counting passes in all: per part (whose total is the model's MACs), then without
        # attention for the comparison.
        if not (self.hparams or self.summary or self.log_graph):
            return
        parts = analysis.module_table(backbone, example)
        macs = parts[-1]["MACs"]
        if self.hparams:
            params = analysis.count_params(backbone)
            values = run_hyperparameters(trainer, pl_module, params, macs, len(images))
            self._write_hparams(logger, values)
        if self.summary:
            cost = analysis.complexity(backbone, example, macs)
            writer.add_text(
                "model/summary", self._summary_text(example, parts, cost), trainer.global_step
            )
        if self.log_graph:
            self._add_graph(writer, backbone, example)

    @staticmethod
    def _write_hparams(logger: TensorBoardLogger, values: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        # The metric values come from the hp/* scalars logged later; none is logged here.
        experiment, start, end = hparams(values, dict.fromkeys(HP_METRICS, 0.0))
        file_writer = logger.experiment._get_file_writer()  # as Lightning's log_hyperparams does
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)

    @staticmethod
    def _summary_text(example: torch.Tensor, parts: analysis.Table, cost: analysis.Table) -> str:
        shape = "x".join(str(s) for s in example.shape[1:])
        return (
            f"Parameters and MACs per {shape} image, counted with torch.utils.flop_counter "
            "(MACs = FLOPs / 2; convolutions and matrix products, not element-wise work).\n\n"
            f"{parts}\n\n{cost}\n"
        )

    @staticmethod
    @torch.no_grad()
    def _add_graph(writer, backbone: nn.Module, example: torch.Tensor) -> None:
        import warnings

        training = backbone.training
        backbone.eval()  # tracing runs a forward pass: keep batch-norm statistics untouched
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", ".*torch.jit.trace.*deprecated")
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                writer.add_graph(backbone, example)
        except Exception as error:  # a backbone that cannot be traced still trains
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(f"Dashboard: could not trace the model graph ({error})")
        finally:
            backbone.train(training)

    # -- training ------------------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._steps.clear()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._describe(trainer, pl_module, batch)
        if self.throughput and not self._steps:
            self._steps.append((time.perf_counter(), 0))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self.throughput:
            return
        self._steps.append((time.perf_counter(), len(_images(batch))))
        while len(self._steps) > self.throughput_window + 1:
            self._steps.popleft()
        seconds = self._steps[-1][0] - self._steps[0][0]
        images = sum(n for _, n in list(self._steps)[1:])
        if seconds > 0:
            pl_module.log(
                "throughput/train_images_per_s", images / seconds, on_step=True, on_epoch=False
            )

    # -- validation ----------------------------------------------------------------------------
    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._val_start, self._val_images = time.perf_counter(), 0

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._describe(trainer, pl_module, batch)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ):
        self._val_images += len(_images(batch))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.throughput and not trainer.sanity_checking and self._val_start is not None:
            seconds = time.perf_counter() - self._val_start
            if seconds > 0:
                pl_module.log("throughput/val_images_per_s", self._val_images / seconds)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = tensorboard_logger(trainer)
        if trainer.sanity_checking or logger is None or trainer.state.fn != TrainerFn.FITTING:
            return
        metrics: dict[str, float] = {}
        value = trainer.callback_metrics.get("val/acc_top1")
        if value is not None:
            self.best_val = max(float(value), self.best_val if self.best_val is not None else 0.0)
            metrics["hp/best_val_acc_top1"] = self.best_val
        if self._fit_start is not None:
            metrics["time/fit_elapsed_s"] = self._elapsed()
        if metrics:
            logger.log_metrics(metrics, step=trainer.global_step)

    # -- test ----------------------------------------------------------------------------------
    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._describe(trainer, pl_module, batch)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = tensorboard_logger(trainer)
        if logger is None:
            return
        metrics = trainer.callback_metrics
        hp = {
            f"hp/test_{name}": float(metrics[f"test/{name}"])
            for name in ("acc_top1", "acc_top5")
            if f"test/{name}" in metrics
        }
        if hp:
            logger.log_metrics(hp, step=trainer.global_step)
        if self.test_figures:
            self._log_test_figures(trainer, pl_module, logger)

    @rank_zero_only
    def _log_test_figures(self, trainer: Trainer, pl_module, logger: TensorBoardLogger) -> None:
        names = list(getattr(pl_module, "class_names", []) or [])
        confusion = getattr(pl_module, "confusion_matrix", None)
        writer, step = logger.experiment, trainer.global_step
        if confusion is not None and names:
            writer.add_figure(
                "test/confusion_matrix",
                analysis.plot_confusion(confusion, names),
                step,
                close=False,
            )
        metrics = trainer.callback_metrics
        per_class = {
            name: float(metrics[f"test/acc_class/{name}"])
            for name in names
            if f"test/acc_class/{name}" in metrics
        }
        if per_class:
            figure = analysis.plot_per_class(per_class, "per-class test accuracy")
            writer.add_figure("test/per_class_accuracy", figure, step, close=False)


class ExcitationMonitor(Callback):
    """Attention gate statistics over the validation set, after every validation epoch.

    The gate of each attention block (see :func:`selab.analysis.attention_blocks`: modules of the
    registered attention classes, read through their ``excitation`` method or ``gate`` sub-module)
    is averaged per channel over the validation images and logged as a histogram,
    ``excitation/stage<s>/<block>``, plus ``excitation/stage<s>/all`` pooling each stage's blocks.
    For a few blocks (``class_blocks``; by default the last block of each stage) the mean per class
    is drawn as in the SE paper's Fig. 6, ``excitation/per_class``, every
    ``figure_every_n_epochs`` epochs and at the last one.

    Cost: the hooks add a sum and an ``index_add_`` of an (N, C) tensor per block and batch, on
    the model's device; nothing runs during training or the sanity check.

    Args:
        enabled: switch the whole callback (``--excitation.enabled false``).
        class_blocks: module paths (as in ``model.named_modules()``, e.g.
            ``backbone.stages.2.2.attention``) for the per-class figure.
        max_classes: classes drawn in the per-class figure (the first ones).
        figure_every_n_epochs: how often to draw it (0: only at the end of training).
    """

    def __init__(
        self,
        enabled: bool = True,
        class_blocks: list[str] | None = None,
        max_classes: int = 10,
        figure_every_n_epochs: int = 10,
    ) -> None:
        self.enabled = enabled
        self.class_blocks = class_blocks
        self.max_classes = max_classes
        self.figure_every_n_epochs = figure_every_n_epochs
        self.stats: analysis.GateStats | None = None
        self._blocks: list[analysis.AttentionBlock] | None = None
        self._hooks: analysis.GateHooks | None = None
        self._active = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._blocks = None

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._active = (
            self.enabled and not trainer.sanity_checking and tensorboard_logger(trainer) is not None
        )
        self.stats = None

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not self._active:
            return
        if self.stats is None:
            if self._blocks is None:
                self._blocks = analysis.attention_blocks(pl_module, _images(batch)[:1])
            if not self._blocks:
                self._active = False
                return
            names = self.class_blocks or analysis.default_class_blocks(self._blocks)
            unknown = set(names) - {b.name for b in self._blocks}
            if unknown:
                raise ValueError(
                    f"excitation.class_blocks: no attention block {sorted(unknown)}; blocks are "
                    f"{[b.name for b in self._blocks]}"
                )
            self.stats = analysis.GateStats(
                self._blocks,
                pl_module.num_classes,
                getattr(pl_module, "class_names", None),
                class_blocks=names,
            )
            self._hooks = analysis.GateHooks(self._blocks, self.stats.update).__enter__()
        targets = batch[1] if isinstance(batch, (list, tuple)) and len(batch) > 1 else None
        self.stats.targets = targets

    def _remove_hooks(self) -> None:
        if self._hooks is not None:
            self._hooks.__exit__(None, None, None)
            self._hooks = None

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._remove_hooks()
        if not self._active or self.stats is None:
            return
        self.stats.targets = None
        self.stats.reduce(lambda t: trainer.strategy.reduce(t, reduce_op="sum"))
        if trainer.is_global_zero:
            self._log(trainer)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._remove_hooks()

    def teardown(self, trainer, pl_module, stage) -> None:
        self._remove_hooks()

    def _draw_figure_now(self, trainer: Trainer) -> bool:
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs > 0
        periodic = self.figure_every_n_epochs > 0 and epoch % self.figure_every_n_epochs == 0
        return last or periodic or trainer.should_stop or trainer.state.fn != TrainerFn.FITTING

    def _log(self, trainer: Trainer) -> None:
        stats, step = self.stats, trainer.global_step
        writer = tensorboard_logger(trainer).experiment
        for stage, blocks in stats.stages().items():
            means = [stats.mean(block.name) for block in blocks]
            for block, mean in zip(blocks, means, strict=True):
                writer.add_histogram(f"excitation/stage{stage}/{block.short_name}", mean, step)
            writer.add_histogram(f"excitation/stage{stage}/all", torch.cat(means), step)
        if self._draw_figure_now(trainer):
            figure = analysis.plot_class_gates(stats, max_classes=self.max_classes)
            if figure is not None:
                writer.add_figure("excitation/per_class", figure, step, close=False)
