"""The HParams tab: a run's hyper-parameters against its best validation and its test accuracy."""

from __future__ import annotations

import inspect
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn

from .. import analysis
from ..models.layers import AttentionSpec, get_attention, parse_attention
from ._compiled import uncompiled
from ._tensorboard import OncePerRun, backbone_of, batch_images, tensorboard_logger

HP_METRICS = ("hp/best_val_acc_top1", "hp/test_acc_top1", "hp/test_acc_top5")


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


def _reduction(init_args: Any) -> int:
    """The attention's reduction ratio from a backbone's options (a variant name or a spec):
    the spec's, else the variant's default; 0 for variants without a bottleneck."""
    attention = _get(init_args, "attention")
    if attention is None:
        return 0
    if not isinstance(attention, (str, AttentionSpec)):
        attention = {k: _get(attention, k) for k in ("name", "reduction") if _get(attention, k)}
    spec = parse_attention(attention)
    if spec.reduction is not None:
        return int(spec.reduction)
    variant = get_attention(spec.name)
    parameter = inspect.signature(variant).parameters.get("reduction") if variant else None
    return int(parameter.default) if parameter is not None else 0


def run_hyperparameters(
    trainer: Trainer, pl_module: LightningModule, params: int, macs: int, batch_size: int
) -> dict[str, Any]:
    """The HParams columns: backbone, attention, reduction, optimizer, lr, batch size, epochs,
    dataset, parameters and MACs (per image)."""
    hparams = getattr(pl_module, "hparams", {}) or {}
    backbone_config = _get(hparams, "backbone")
    init_args = _get(backbone_config, "init_args", {}) or {}
    backbone = backbone_of(pl_module)
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
        "reduction": _reduction(init_args) if attention != "none" else 0,
        "optimizer": optimizer or "none",
        "lr": float(lr) if lr is not None else 0.0,
        "batch_size": int(getattr(datamodule, "batch_size", None) or batch_size),
        "epochs": int(trainer.max_epochs if trainer.max_epochs is not None else -1),
        "dataset": str(getattr(datamodule, "dataset", "") or ""),
        "params": int(params),
        "macs": int(macs),
    }


class HParams(OncePerRun):
    """The run's row in TensorBoard's HParams tab.

    The hyper-parameters (:func:`run_hyperparameters`) are written once per run folder, at the
    first batch (real input shape, model on its device); the metrics are ``hp/best_val_acc_top1``
    (the running best, after every validation of ``fit``), ``hp/test_acc_top1`` and
    ``hp/test_acc_top5`` (after ``lightning test``, which logs into the run that trained the
    checkpoint). The running best is kept in checkpoints, so it survives a resume.

    Args:
        enabled: ``--hparams.enabled false`` switches it off.
    """

    def __init__(self, enabled: bool = True) -> None:
        super().__init__(enabled)
        self.best_val: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"best_val": self.best_val}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_val = state_dict.get("best_val")

    def write(self, trainer: Trainer, pl_module: LightningModule, batch) -> None:
        images = batch_images(batch)
        backbone = backbone_of(pl_module)
        params = analysis.count_params(backbone)
        with uncompiled(backbone):
            macs = analysis.count_macs(backbone, images[:1])
        values = run_hyperparameters(trainer, pl_module, params, macs, len(images))
        self._write_hparams(tensorboard_logger(trainer), values)

    @staticmethod
    def _write_hparams(logger: TensorBoardLogger, values: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        # The metric values come from the hp/* scalars logged later; none is logged here.
        experiment, start, end = hparams(values, dict.fromkeys(HP_METRICS, 0.0))
        file_writer = logger.experiment._get_file_writer()  # as Lightning's log_hyperparams does
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = tensorboard_logger(trainer)
        if not self.enabled or trainer.sanity_checking or logger is None:
            return
        if trainer.state.fn != TrainerFn.FITTING:
            return
        value = trainer.callback_metrics.get("val/acc_top1")
        if value is not None:
            self.best_val = max(float(value), self.best_val if self.best_val is not None else 0.0)
            logger.log_metrics({"hp/best_val_acc_top1": self.best_val}, step=trainer.global_step)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = tensorboard_logger(trainer)
        if not self.enabled or logger is None:
            return
        metrics = trainer.callback_metrics
        hp = {
            f"hp/test_{name}": float(metrics[f"test/{name}"])
            for name in ("acc_top1", "acc_top5")
            if f"test/{name}" in metrics
        }
        if hp:
            logger.log_metrics(hp, step=trainer.global_step)
