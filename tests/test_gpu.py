"""On a CUDA device: no synchronising call in a training step, checked by CUDA itself.

``torch.cuda.set_sync_debug_mode("error")`` raises on any operation that makes the host wait for
the device (a read such as ``.item()``, a blocking copy to the device, ``nonzero``...), which the
CPU-side :class:`selab.testing.HostReadCounter` cannot see. Skipped without CUDA; ``make test``
deselects the ``gpu`` marker, ``make test-all`` runs it.
"""

import lightning as L
import pytest
import torch

from test_speed import SMALL_SE_NET, fit

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


class SyncsAreErrors(L.Callback):
    """Sync debug mode "error" from step ``skip`` on, from each step's start to the next one's
    (or the end of the epoch's training): the step, the callbacks, the next batch's loading."""

    def __init__(self, skip: int = 2) -> None:
        self.skip = skip
        self.checked_steps = 0

    def _off(self) -> None:
        torch.cuda.set_sync_debug_mode("default")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._off()
        if batch_idx >= self.skip:
            self.checked_steps += 1
            torch.cuda.set_sync_debug_mode("error")

    def on_train_epoch_end(self, trainer, pl_module):
        self._off()

    def on_validation_start(self, trainer, pl_module):
        self._off()

    def on_exception(self, trainer, pl_module, exception):
        self._off()

    def teardown(self, trainer, pl_module, stage):
        self._off()


@pytest.mark.parametrize(
    "fast",
    [[], ["--trainer.precision=bf16-mixed", "--model.compile=true"]],
    ids=["eager", "bf16_compiled"],
)
def test_no_synchronising_call_in_a_training_step(in_tmp, imagefolder_root, fast):
    checker = SyncsAreErrors()
    fit(
        in_tmp, imagefolder_root,
        "--trainer.accelerator=gpu", "--trainer.devices=1", "--trainer.enable_progress_bar=true",
        "--trainer.log_every_n_steps=100", "--progress.every_n_steps=3", *fast,
        callbacks=[checker],
    )  # fmt: skip
    assert checker.checked_steps >= 6


def test_inductor_compiled_run_recompiles_nothing_after_the_first_epoch(in_tmp, imagefolder_root):
    from selab.testing import CompileCounter

    torch._dynamo.reset()
    compiled = CompileCounter()
    fit(
        in_tmp, imagefolder_root,
        "--trainer.accelerator=gpu", "--trainer.devices=1", "--trainer.max_epochs=3",
        "--trainer.precision=bf16-mixed", "--model.compile=true", "--data.batch_size=16",
        *SMALL_SE_NET, callbacks=[compiled],
    )  # fmt: skip
    assert compiled.after_epoch[0] > 0
    assert compiled.compiled_after(0) == 0, compiled.after_epoch
