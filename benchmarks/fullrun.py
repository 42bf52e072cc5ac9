"""One whole speedrun94 run on this machine: wall time and the accuracy it reached.

``lightning fit --config configs/cifar10/speedrun94.yaml`` on ``--data-root`` (CIFAR-10 pickles
or the JPEG image folders), in process: the wall time from the command's start (parsing, data
decoding, whitening initialisation) through the 480 training steps to the end of the final
test-time-augmented evaluation on the test split, the training seconds alone, and the top-1 it
reached. Opt-in (``--sections fullrun``): on a 2-core CPU it takes hours.
"""

from __future__ import annotations

import time

import torch
from common import Context, Section, TrainClock
from speedrun import speedrun_args

from selab.cli import run


def measure(ctx: Context) -> Section:
    o = ctx.opts
    md = ["## One full speedrun94 run: wall time and accuracy", ""]
    if not o.data_root:
        why = "not measured: no --data-root with CIFAR-10"
        return Section({"why": why}, [*md, f"{why}.", ""])
    extra = [f"--trainer.precision={o.precision}"] if o.precision else []
    print(f"\n[fullrun] speedrun94 on {o.data_root}, seed 0 {' '.join(extra)}")
    clock = TrainClock()
    start = time.perf_counter()
    cli = run(speedrun_args(ctx, 0, extra), run=False)
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    wall = time.perf_counter() - start
    accuracy = float(cli.trainer.callback_metrics["val/acc_top1"])
    result = {
        "wall_s": wall, "train_s": clock.seconds, "accuracy": accuracy,
        "steps": cli.trainer.global_step, "precision": str(cli.trainer.precision),
        "threads": torch.get_num_threads(),
    }  # fmt: skip
    print(f"  {wall:.0f} s wall, {clock.seconds:.0f} s training, top-1 {accuracy:.4f}")
    md += [
        "| device | precision | threads | steps | wall (setup + training + TTA test) | training | test top-1 (TTA) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        f"| {ctx.device.type} | {result['precision']} | {result['threads']} | {result['steps']} | "
        f"{wall / 60:.1f} min | {clock.seconds / 60:.1f} min | {100 * accuracy:.2f}% |", "",
        f"Seed 0, data `{o.data_root}` ({o.dataset}).", "",
    ]  # fmt: skip
    return Section(result, md)
