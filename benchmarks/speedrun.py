"""Time to 94% on CIFAR-10: ``lightning fit --config configs/cifar10/speedrun94.yaml`` per seed.

Seconds of training (device-synchronised; without process start, the first run's compilation and
cuDNN autotuning, which a warm-up run absorbs, and without the final test-time-augmented
evaluation) and the test accuracy (the recipe validates once, at the end, on the test split, with
test-time augmentation), beside airbench's published A100 figures. Needs a GPU and CIFAR-10
(``--data-root``); on a CPU it is not measured (``--sections fullrun`` times one CPU run).
"""

from __future__ import annotations

import statistics
import time

from common import NOT_MEASURED, SPEEDRUN, Context, Section, TrainClock

from selab.cli import run

# airbench's published times to 94% on one A100 (Jordan 2024 and its repository), seconds.
ANCHORS = {
    "airbench94 (uncompiled)": 3.83,
    "airbench94 compiled": 3.09,
    "airbench94 with Muon": 2.59,
}


def speedrun_args(ctx: Context, seed: int, extra=()) -> list[str]:
    o = ctx.opts
    return [
        "--config", str(SPEEDRUN), f"--data.root={o.data_root}", f"--data.dataset={o.dataset}",
        f"--seed_everything={seed}", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", f"--trainer.logger.init_args.save_dir={ctx.tmp}",
        *getattr(o, "speedrun_extra", []), *extra, *ctx.accelerator_args(),
    ]  # fmt: skip


def measure(ctx: Context) -> Section:
    o = ctx.opts
    md = ["## Time to 94% on CIFAR-10: `configs/cifar10/speedrun94.yaml`", ""]
    anchors = ", ".join(f"{name} {seconds} s" for name, seconds in ANCHORS.items())
    if not (ctx.cuda or getattr(o, "smoke", False)) or not o.data_root:
        why = NOT_MEASURED if not ctx.cuda else "not measured: no --data-root with CIFAR-10"
        print(f"\n[speedrun] {why}")
        return Section({"why": why}, [*md, f"{why}.", "", f"Published on one A100: {anchors}.", ""])
    print("\n[speedrun] time to 94% per seed")
    results, rows = {}, []
    deadline = getattr(o, "deadline", None)  # device_check: stop between runs when it passes
    variants = [("uncompiled", [])] + (
        [] if o.no_compile else [("compiled", ["--model.compile=true"])]
    )
    for name, extra in variants:
        runs = []
        for index, seed in enumerate([None, *range(o.seeds)]):  # None: the warm-up run
            if deadline and time.monotonic() > deadline and runs:
                print(f"  {name}: time budget spent after {len(runs)} seed(s)")
                break
            clock = TrainClock()
            cli = run(speedrun_args(ctx, seed or 0, extra), run=False)
            cli.trainer.callbacks.append(clock)
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            accuracy = float(cli.trainer.callback_metrics["val/acc_top1"])
            print(f"  {name} seed {seed}: {clock.seconds:.2f} s, acc {accuracy:.4f}", flush=True)
            if index:
                runs.append({"seed": seed, "seconds": clock.seconds, "accuracy": accuracy})
        seconds, accuracies = [r["seconds"] for r in runs], [r["accuracy"] for r in runs]
        rows.append((name, runs, statistics.mean(seconds), statistics.mean(accuracies),
                     sum(a >= 0.94 for a in accuracies)))  # fmt: skip
        results[name] = runs
    md += [
        "| variant | training s per seed | mean s | test top-1 per seed (TTA) | mean top-1 | runs >= 94% |",
        "| --- | --- | ---: | --- | ---: | ---: |",
    ]
    for name, runs, s, acc, hits in rows:
        per_s = ", ".join(f"{r['seconds']:.2f}" for r in runs)
        per_acc = ", ".join(f"{100 * r['accuracy']:.2f}" for r in runs)
        md.append(
            f"| {name} | {per_s} | {s:.2f} | {per_acc} | {100 * acc:.2f}% | {hits}/{len(runs)} |"
        )
    md += ["", f"Seeds from 0 after one warm-up run (of {o.seeds} asked); data `{o.data_root}` "
               f"({o.dataset}). Published on one A100: {anchors}.", ""]  # fmt: skip
    return Section(results, md)
