"""Host reads and recompiles, counted: device->host reads per steady-state training step of
``lightning fit`` (selab.testing.HostReadCounter; on a GPU also CUDA's sync debug warnings), and
frames compiled after the first epoch with ``model.compile: true``."""

from __future__ import annotations

import warnings

import torch
from common import NOT_MEASURED, Context, Section
from lightning.pytorch.callbacks import Callback
from overhead import tiny_config

from selab.cli import run
from selab.testing import CompileCounter, HostReadCounter


class CudaSyncWarnings(Callback):
    """CUDA's sync debug warnings per training step, from step 2 on (GPU only)."""

    def __init__(self, counts: dict[int, int]) -> None:
        self.counts = counts
        self._catcher = self._caught = self._step = None

    def _close(self) -> None:
        if self._catcher is not None:
            torch.cuda.set_sync_debug_mode("default")
            self._catcher.__exit__(None, None, None)
            self.counts[self._step] = sum("synchroniz" in str(w.message) for w in self._caught)
            self._catcher = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._close()
        if batch_idx >= 2:
            self._step = trainer.global_step
            self._catcher = warnings.catch_warnings(record=True)
            self._caught = self._catcher.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._close()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._close()

    def teardown(self, trainer, pl_module, stage) -> None:
        self._close()


def measure(ctx: Context) -> Section:
    o = ctx.opts
    print("\n[syncs] host reads per training step, recompiles after the first epoch")
    config = tiny_config(ctx)
    counter = HostReadCounter(skip=2)
    cuda_syncs: dict[int, int] = {}
    callbacks = [counter, *([CudaSyncWarnings(cuda_syncs)] if ctx.cuda else [])]
    # Logging steps convert the logged values once per log_every_n_steps: counted apart.
    args = ["--config", str(config), "--trainer.log_every_n_steps=50"]
    ctx.lightning_steps(args, o.warmup, o.steps, callbacks)
    per_step = counter.per_step()
    per_step.pop(max(per_step), None)  # the window's end stops training, which logs once
    log_steps = [s for s in per_step if (s + 1) % 50 == 0]
    quiet = {s: n for s, n in per_step.items() if s not in log_steps}
    compiled = CompileCounter()
    epochs = 3
    backend = getattr(o, "compile_backend", None) or "inductor"
    extra = [f'--model.compile={{"backend": "{backend}"}}', f"--trainer.max_epochs={epochs}",
             "--trainer.limit_val_batches=2", f"--trainer.limit_train_batches={o.warmup + 4}"]  # fmt: skip
    cli = run(["--config", str(config), *ctx.accelerator_args(), *extra], run=False)
    cli.trainer.callbacks.append(compiled)
    torch._dynamo.reset()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    result = {
        "steps": len(per_step),
        "reads_per_step_max": max(quiet.values(), default=0),
        "reads_total": sum(quiet.values()),
        "reads_on_logging_steps": {s: per_step[s] for s in log_steps},
        "where": counter.describe(),
        "cuda_syncs": cuda_syncs,
        "frames_compiled_after_epoch": compiled.after_epoch,
        "compiled_after_first_epoch": compiled.compiled_after(0),
    }
    print(f"  reads per step (max) {result['reads_per_step_max']}, frames compiled by epoch "
          f"{compiled.after_epoch}", flush=True)  # fmt: skip
    cuda_line = (
        f"CUDA sync-debug warnings per step: max {max(cuda_syncs.values(), default=0)}."
        if ctx.cuda else f"CUDA sync-debug count: {NOT_MEASURED}."
    )  # fmt: skip
    md = [
        "## Host reads and recompiles, counted", "",
        f"`lightning fit` of the tiny network, default callbacks, {len(per_step)} steady-state "
        "steps (selab.testing.HostReadCounter: `.item()`, `.tolist()`, `.cpu()`, `.numpy()`, "
        "`bool()`, `float()`, `int()`, `__index__` on tensors, from one step's start to the "
        "next's):", "",
        f"- device->host reads per step: max **{result['reads_per_step_max']}**, total "
        f"{result['reads_total']} over {len(quiet)} steps without logging;",
        f"- on logging steps (every 50): {result['reads_on_logging_steps'] or 'none in the window'} "
        "(Lightning converts the logged step values for the loggers);",
        f"- {cuda_line}",
        f"- `model.compile` (backend {backend}), {epochs} epochs with validation: frames "
        f"compiled by the end of each epoch {compiled.after_epoch}, i.e. "
        f"**{compiled.compiled_after(0)}** compiled after the first epoch.", "",
    ]  # fmt: skip
    return Section(result, md)


class SyncsAreErrors(Callback):
    """CUDA's sync debug mode "error" from step ``skip`` on, from each step's start to the next
    one's: a read, a blocking copy or ``nonzero`` in the step, a callback or the loading raises."""

    def __init__(self, skip: int = 2, enabled: bool = True) -> None:
        self.skip, self.steps, self._on = skip, 0, False
        self.enabled = enabled  # False: the same calls without CUDA (a CPU smoke run)

    def _mode(self, mode: str) -> None:
        if self.enabled:
            torch.cuda.set_sync_debug_mode(mode)

    def _off(self, *_, **__) -> None:
        if self._on:
            self._mode("default")
            self._on = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._off()
        if batch_idx >= self.skip:
            self.steps += 1
            self._on = True
            self._mode("error")

    on_train_epoch_end = on_validation_start = teardown = _off

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._off()


def error_mode(ctx: Context, args: list[str], steps: int) -> dict:
    """``lightning fit`` (``args``) for ``steps`` steps after two under sync debug mode "error":
    the steps checked and the first error (None: no sync)."""
    check = SyncsAreErrors(skip=2, enabled=ctx.cuda)
    extra = ["--trainer.max_epochs=1", f"--trainer.limit_train_batches={steps + 2}"]
    cli = run([*args, *extra, *ctx.accelerator_args()], run=False)
    cli.trainer.callbacks.append(check)
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    except RuntimeError as error:
        return {"steps_checked": check.steps, "error": str(error).splitlines()[0][:300]}
    finally:
        check._off()
    return {"steps_checked": check.steps, "error": None}
