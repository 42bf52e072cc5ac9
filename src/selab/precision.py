"""Training precision on the CPU: bfloat16 where the processor computes it natively.

bf16 autocast pays off on a CPU only with native bfloat16 instructions (AVX512-BF16 or AMX);
elsewhere oneDNN converts every operand and a training step slows down instead of speeding up
(selab's speedrun94 network on an AVX2-only AMD EPYC, one thread: about 14 times slower in
``bf16-mixed`` than in float32). A recipe that asks for bf16 (``configs/cifar10/speedrun94.yaml``)
therefore gets it on a GPU and on a CPU with native bf16, and float32 on any other CPU, with a
one-line notice and the precision actually used in the run's ``config.yaml``.
``--cpu_bf16 always`` keeps bf16 on every CPU.
"""

from __future__ import annotations

from typing import Literal

import torch

CpuBf16 = Literal["native", "always"]
FLOAT32 = "32-true"
# Lightning's short precision names and the full ones it turns them into.
_FULL_NAMES = {"64": "64-true", "32": FLOAT32, "16": "16-mixed", "bf16": "bf16-mixed"}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX tiles)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def runs_on_cpu(accelerator: object) -> bool:
    """Whether a Trainer with this ``accelerator`` argument trains on the CPU."""
    if accelerator is None or accelerator == "auto":
        mps = getattr(torch.backends, "mps", None)
        return not (torch.cuda.is_available() or (mps is not None and mps.is_available()))
    return accelerator == "cpu"


def full_name(precision: object) -> str:
    """A precision setting by Lightning's full name; None (not set) is Lightning's default.

    >>> full_name(32), full_name("bf16"), full_name(None), full_name("bf16-mixed")
    ('32-true', 'bf16-mixed', '32-true', 'bf16-mixed')
    """
    if precision is None:
        return FLOAT32
    return _FULL_NAMES.get(str(precision), str(precision))


def is_bf16(precision: object) -> bool:
    return str(precision).startswith("bf16")


def training_precision(
    precision: object, accelerator: object, cpu_bf16: CpuBf16 = "native"
) -> tuple[object, str | None]:
    """The precision to train in, and a notice when it is not the one asked for.

    >>> training_precision("32-true", "cpu")
    ('32-true', None)
    """
    if cpu_bf16 == "always" or not is_bf16(precision) or not runs_on_cpu(accelerator):
        return precision, None
    if cpu_has_native_bf16():
        return precision, None
    return FLOAT32, (
        f"trainer.precision {precision} -> {FLOAT32}: this CPU has no native bfloat16 "
        f"(AVX512-BF16 or AMX), where bf16 is several times slower than float32; "
        f"--cpu_bf16 always keeps {precision}"
    )
