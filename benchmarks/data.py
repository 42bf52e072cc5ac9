"""What a run spends before and between its training steps, on the CPU.

- reading an image folder: ``prepare_data`` + ``setup("fit")`` of ``VisionDataModule`` on JPEG
  class folders (the CIFAR-10 copy's format), ``cache: false``, the memory loader;
- building one training epoch of the memory loader (augmentation, shuffling, batching), with and
  without MixUp + CutMix (alpha 1 each);
- computing speedrun94's patch-whitening filters from its 5,000 training images.

Only the public API is used, so the same file times an older checkout: copy ``benchmarks/`` into
it, run ``bench.py --sections data --out DIR`` there, and pass ``--baseline DIR/bench.json`` here
for a before/after table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from common import Context, Section, fabricate, median

from selab.data import VisionDataModule
from selab.models import speedrun_net


def _data(folder, **options) -> VisionDataModule:
    return VisionDataModule(
        dataset="imagefolder", root=str(folder), download=False, num_workers=0, cache=False,
        loader="memory", batch_size=500, val_size=500, **options,
    )  # fmt: skip


def _seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return median(times)


def measure(ctx: Context) -> Section:
    o = ctx.opts
    n_train, n_test = (500, 100) if o.quick else (5000, 1000)
    repeats = 2 if o.quick else 3
    print(f"\n[data] reading {n_train} + {n_test} JPEGs, epoch build, whitening initialisation")
    folder = fabricate(ctx.tmp / "data-jpeg", n_train, n_test, size=32, jpeg=True)

    def read():
        data = _data(folder)
        data.prepare_data()
        data.setup("fit")

    def epoch_of(**options):
        data = _data(folder, **options)
        data.prepare_data()
        data.setup("fit")
        return lambda: sum(len(labels) for _, labels in data.train_dataloader())

    with ctx.host_threads():
        rows = {
            "prepare_data + setup (decode)": _seconds(read, repeats),
            "one epoch, standard augmentation": _seconds(epoch_of(), repeats),
            "one epoch, standard augmentation + MixUp + CutMix": _seconds(
                epoch_of(mixup_alpha=1.0, cutmix_alpha=1.0), repeats
            ),
        }
        net = speedrun_net(num_classes=10)
        images = torch.randn(5000, 3, 32, 32)
        rows["speedrun94 whitening from 5,000 images"] = _seconds(
            lambda: net.whiten.initialize(images), repeats
        )
    for name, seconds in rows.items():
        print(f"  {name}: {seconds:.3f} s", flush=True)
    before, measured = {}, ""
    if o.baseline:
        earlier = json.loads(Path(o.baseline).read_text())["sections"]["data"]
        before, measured = earlier["seconds"], earlier["measured"]
    columns = "| step | before (s) | now (s) |" if before else "| step | seconds |"
    rules = "| --- | ---: | ---: |" if before else "| --- | ---: |"

    def row(name, seconds):
        if not before:
            return f"| {name} | {seconds:.3f} |"
        return f"| {name} | {before[name]:.3f} | {seconds:.3f} |" if name in before else f"| {name} | — | {seconds:.3f} |"  # fmt: skip

    md = [
        "## Before the first step: reading, epoch build, whitening (CPU)", "",
        f"{n_train} training + {n_test} test JPEGs of 32x32 in class folders (quality 75), "
        f"`VisionDataModule` with the memory loader, `cache: false`, batch 500, 500 images held out for validation; median of "
        f"{repeats} repeats, one torch thread.", "",
        columns, rules, *(row(name, seconds) for name, seconds in rows.items()), "",
        *([f"Before: the same file on an earlier checkout, {measured}.", ""] if before else []),
    ]  # fmt: skip
    results = {"seconds": rows, "train_images": n_train}
    if before:
        results["before"] = {"seconds": before, "measured": measured}
    return Section(results=results, markdown=md)
