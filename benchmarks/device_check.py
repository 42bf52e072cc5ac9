"""GPU evidence in one call (``make device-check``): every GPU figure of the benchmark, in at most
nine minutes of wall time, written to ``OUT/device_check.md`` and ``OUT/device_check.json``.

(a) speedrun94 on the CIFAR-10 image folders (``--data-root``), seeds after a warm-up run:
    training seconds and test top-1 (time to 94% when it gets there);
(b) airbench94's own ``train94`` from the ``airbench`` package on the same images (converted to
    the tensors its ``CifarLoader`` reads), same GPU;
(c) ``lightning fit`` vs a bare loop, ms/step: ResNet-20 at batch 512, and speedrun94 against
    airbench94's modules;
(d) host syncs: reads per step counted, speedrun94 under CUDA's sync debug mode "error", and
    frames compiled after the first epoch with ``model.compile: true``;
(e) SE overhead in step time, ResNet-20/56/110 and ResNet-18;
(f) ``pytest -m gpu``.

Each section runs on its own: one that fails is reported with its error and the others still
run; a global time budget stops the loops between runs; anything not measured says why. Without
CUDA every GPU section reads "not measured: no GPU", unless ``--smoke``: then the same code runs
on the CPU with tiny sizes (a tiny JPEG folder, one or two steps, narrow networks), so CI keeps
the script from rotting.

    python benchmarks/device_check.py --data-root device/data --out $OUT   # on the device
    python benchmarks/device_check.py --smoke --out logs/device-check       # anywhere, under a minute
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch
from common import (
    REPO,
    SPEEDRUN,
    Context,
    Section,
    fabricate,
    load_average,
    machine_info,
    source_revision,
    write_report,
)

NO_GPU = "not measured: no GPU"


class NotMeasured(Exception):
    """A section that cannot run here, and why."""


# Each section's share of the budget (seconds): loops stop between runs once it is spent.
SHARES = {"a": 170, "b": 100, "c": 80, "d": 80, "e": 40, "f": 60}


def options(args) -> argparse.Namespace:
    """bench.py's options, sized for the device or, with ``--smoke``, for a CPU in seconds."""
    import bench

    if args.smoke:
        sizes = [
            "--seeds=2", "--no-compile", "--peer-batch=64", "--peer-fp32=1,1,1", "--peer-bf16=0",
            "--peer-widths=8,16,16", "--tiny-images=512", "--steps=4", "--warmup=2",
            "--batch-size=4", "--se-steps=1", "--se-repeats=1", "--repeats=1", "--cpu",
            "--compile-backend=eager",  # Dynamo's guards alike, no C++ compiler needed (CI)
        ]  # fmt: skip
    else:
        sizes = [f"--seeds={args.seeds}", "--no-compile", "--peer-batch=1024", "--peer-fp32=0",
                 "--peer-bf16=5,20,3", "--steps=50", "--warmup=10", "--repeats=3"]  # fmt: skip
    opts = bench.parse([*sizes, "--dataset=imagefolder", "--out", str(args.out)])
    opts.data_root = args.data_root
    opts.budget, opts.smoke = args.budget, args.smoke
    if args.smoke:  # the recipe's network, narrower, for one short epoch
        opts.speedrun_extra = ["--model.backbone.init_args.widths=[8,16,16]",
                               "--trainer.max_epochs=1", "--trainer.check_val_every_n_epoch=1",
                               "--data.batch_size=64"]  # fmt: skip
    return opts


def smoke_data(ctx: Context) -> Path:
    """A tiny CIFAR-like JPEG image folder (4 batches of 64 to train on)."""
    return fabricate(ctx.tmp / "cifar-jpg", n_train=256, n_test=100, size=32, jpeg=True)


# -- the sections ---------------------------------------------------------------------------------
def time_to_94(ctx: Context, data: Path, deadline: float) -> Section:
    import speedrun

    ctx.opts.data_root, ctx.opts.deadline = str(data), deadline
    section = speedrun.measure(ctx)
    section.markdown[0] = "## (a) speedrun94: time to 94% (or the accuracy reached), per seed"
    section.markdown += ["The compiled variant: not measured: left out to fit the budget "
                         "(`bench.py --data-root DIR` runs it).", ""]  # fmt: skip
    return section


def airbench_train94(ctx: Context, data: Path, deadline: float) -> Section:
    import peer

    if peer.import_airbench() is None:
        raise NotMeasured("not measured: the airbench package is not installed (carry its wheel)")
    smoke = not ctx.cuda
    section = peer.train94_seeds(
        ctx, data, ctx.opts.seeds, deadline,
        epochs=1 if smoke else None, widths=[8, 16, 16] if smoke else None,
    )  # fmt: skip
    section.markdown.insert(0, "## (b) airbench94's own `train94`, same data, same device")
    section.markdown.insert(1, "")
    return section


def loop_overhead(ctx: Context, deadline: float) -> Section:
    import overhead
    import peer

    batch, (warmup, steps, repeats) = (16, (1, 2, 1)) if not ctx.cuda else (512, (10, 50, 3))
    resnet = overhead.resnet20(ctx, batch, warmup, steps, repeats)
    side = peer.measure(ctx) if time.monotonic() < deadline else None
    md = ["## (c) `lightning fit` vs a bare loop, ms/step", "", *resnet.markdown]
    results = {"resnet20": resnet.results}
    if side is None:
        md += ["speedrun94 vs airbench94: not measured: time budget spent.", ""]
    else:
        md += side.markdown[2:]
        results["speedrun94_vs_airbench94"] = side.results
    return Section(results, md)


def host_syncs(ctx: Context, deadline: float) -> Section:
    import syncs

    counted = syncs.measure(ctx)
    md = ["## (d) Host syncs and recompiles", "", *counted.markdown[2:]]
    results = {"counted": counted.results}
    o = ctx.opts
    n = o.peer_batch * 8
    root = fabricate(ctx.tmp / "syncs-jpg", n_train=n, n_test=100, size=32, jpeg=True)
    args = ["--config", str(SPEEDRUN), "--data.dataset=imagefolder", f"--data.root={root}",
            f"--data.batch_size={o.peer_batch}", "--trainer.enable_progress_bar=false",
            f"--trainer.logger.init_args.save_dir={ctx.tmp}", *getattr(o, "speedrun_extra", [])]  # fmt: skip
    error = syncs.error_mode(ctx, args, steps=5)
    results["error_mode_speedrun94"] = error
    verdict = "no sync" if error["error"] is None else f"raised: `{error['error']}`"
    if not ctx.cuda:
        verdict = "not measured: no GPU (the mode is CUDA's; the smoke run checks the code path)"
    md += [f"- speedrun94 under `torch.cuda.set_sync_debug_mode(\"error\")`, "
           f"{error['steps_checked']} steps checked (from the third): {verdict}.", ""]  # fmt: skip
    return Section(results, md)


def se_overhead(ctx: Context, deadline: float) -> Section:
    import se

    section = se.measure(ctx)
    section.markdown[0] = section.markdown[0].replace("## ", "## (e) ")
    return section


def gpu_tests(ctx: Context, deadline: float) -> Section:
    timeout = max(10, int(deadline - time.monotonic()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO / "src"), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
               "tests/test_gpu.py"]  # fmt: skip
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        tail, code = (done.stdout + done.stderr).strip().splitlines()[-15:], done.returncode
    except subprocess.TimeoutExpired:
        tail, code = [f"stopped after {timeout} s (the time budget)"], "timeout"
    md = ["## (f) `pytest -m gpu`", "", f"Exit status {code}; the last lines:", "", "```",
          *tail, "```", ""]  # fmt: skip
    if not ctx.cuda:
        md.insert(2, "Without CUDA the GPU tests skip themselves.")
        md.insert(3, "")
    return Section({"returncode": code, "tail": tail}, md)


SECTIONS = {
    "a": ("speedrun94, time to 94%", time_to_94, True),
    "b": ("airbench94 train94", airbench_train94, True),
    "c": ("lightning fit vs bare loop", loop_overhead, False),
    "d": ("host syncs and recompiles", host_syncs, False),
    "e": ("SE overhead", se_overhead, False),
    "f": ("pytest -m gpu", gpu_tests, False),
}


# Run order: the headline figures and the tests first, should the budget run out.
ORDER = "abfdce"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "logs/device-check"))
    p.add_argument("--data-root", default=None, help="CIFAR-10 as image folders (train/, test/)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--budget", type=float, default=500, help="seconds for the sections")
    p.add_argument("--smoke", action="store_true", help="the same code on the CPU, tiny sizes")
    p.add_argument("--sections", default="abcdef", help="a subset, e.g. ab")
    args = p.parse_args(argv)
    start = time.monotonic()
    end = start + args.budget
    opts = options(args)
    ctx = Context(opts)
    gpu = ctx.cuda
    machine = machine_info(ctx.device)
    data = Path(args.data_root) if args.data_root else None
    print(f"device check on {machine}, smoke {args.smoke}", flush=True)
    sections, revision = {}, source_revision()
    for key in sorted(args.sections, key=ORDER.index):
        title, measure, needs_data = SECTIONS[key]
        began = time.monotonic()
        left = end - began
        entry = {"title": title}
        md = [f"## ({key}) {title}", ""]
        try:
            if not gpu and not args.smoke:
                raise NotMeasured(NO_GPU)
            if left < 15:
                raise NotMeasured(f"not measured: time budget spent ({left:.0f} s left)")
            if needs_data:
                if args.smoke:
                    data = data or smoke_data(ctx)
                elif data is None or not (data / "train").is_dir():
                    raise NotMeasured(f"not measured: no CIFAR-10 image folder at --data-root {data}")  # fmt: skip
            deadline = min(end, began + SHARES[key] * args.budget / sum(SHARES.values()))
            with ctx.host_threads() if args.smoke else contextlib.nullcontext():
                result = measure(ctx, data, deadline) if needs_data else measure(ctx, deadline)
            entry.update(status="ok", **result.results)
            md = result.markdown
        except NotMeasured as why:
            entry.update(status="not measured", why=str(why))
            md += [f"{why}.", ""]
        except Exception as error:  # noqa: BLE001 - one failing section must not stop the rest
            entry.update(status="error", error=repr(error), traceback=traceback.format_exc())
            md += [f"error: `{type(error).__name__}: {str(error)[:400]}`", "",
                   "Traceback in device_check.json.", ""]  # fmt: skip
            print(traceback.format_exc(), flush=True)
        finally:
            if gpu:
                torch.cuda.set_sync_debug_mode("default")
        entry["seconds"] = round(time.monotonic() - began, 1)
        entry["markdown"] = md
        if entry["status"] != "not measured":
            entry["measured"] = f"{entry['seconds']} s, load average {load_average()}"
        sections[key] = entry
        print(f"[{key}] {entry['status']} in {entry['seconds']} s", flush=True)
        report(args, machine, data, sections, time.monotonic() - start, revision)
    print(f"wrote {Path(args.out) / 'device_check.md'} in {time.monotonic() - start:.0f} s")
    failed = [key for key, entry in sections.items() if entry["status"] == "error"]
    if failed:  # the report is complete all the same; CI's smoke run fails on it
        print(f"sections that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def report(args, machine: dict, data, sections: dict, seconds: float, revision: str) -> None:
    """The markdown and JSON so far (rewritten after each section: a run stopped from outside
    still leaves what it measured)."""
    mode = "SMOKE: tiny sizes on the CPU, figures are not measurements" if args.smoke else (
        "GPU" if machine["device"] != "cpu" else "no GPU")  # fmt: skip
    done = dict(sorted(sections.items()))
    header = [
        "# selab device check", "",
        f"Device {machine['device']} ({mode}); {machine.get('cpu_model', '?')}, "
        f"{machine['cpu_count']} cores, CPU capability {machine['cpu_capability']}; torch "
        f"{machine['torch']}, lightning {machine['lightning']}, Python {machine['python']}; "
        f"commit {revision}; data `{data}`; {seconds:.0f} s of a {args.budget:.0f} s budget.", "",
        "| section | status | seconds |", "| --- | --- | ---: |",
        *(f"| ({k}) {s['title']} | {s['status']} | {s['seconds']} |" for k, s in done.items()),
        "",
    ]  # fmt: skip
    results = {"machine": machine, "smoke": args.smoke, "seconds": seconds, "sections": done}
    write_report(Path(args.out), "device_check", header, results)


if __name__ == "__main__":
    sys.exit(main())
