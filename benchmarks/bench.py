"""selab speed benchmark (``make bench``): measurements, not tests. Writes results/bench.md.

Sections, one module each (``--sections``, comma-separated; the default runs all but ``fullrun``):

- ``airbench`` (peer.py): selab vs airbench94 side by side, s/step of ``lightning fit`` with
  speedrun94 against a bare loop over the airbench package's modules, fp32 and bf16;
- ``speedrun`` (speedrun.py): time to 94% per seed with speedrun94 (GPU and ``--data-root``);
- ``overhead`` (overhead.py): ms/step of ``lightning fit`` vs a bare loop, tiny network;
- ``se`` (se.py): images/s with and without SE, ResNet-20/56/110 and ResNet-18;
- ``syncs`` (syncs.py): device->host reads per step and recompiles after the first epoch;
- ``data`` (data.py): reading an image folder, building an epoch, the whitening initialisation;
- ``fullrun`` (fullrun.py, opt-in): one whole speedrun94 run, wall time and accuracy.

Timings sync the device only at the ends of a timed window (never per step). Shared machines
are noisy: variants are interleaved and medians reported, with the load average.

    python benchmarks/bench.py                         # everything this machine can run
    python benchmarks/bench.py --quick                 # a smoke run
    python benchmarks/bench.py --sections overhead,syncs
    python benchmarks/bench.py --data-root data/ --seeds 5   # time to 94% on a GPU
    python benchmarks/bench.py --sections fullrun --data-root DIR --dataset imagefolder
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from common import (
    REPO,
    Context,
    Section,
    busy_processes,
    load_average,
    machine_info,
    source_revision,
    write_report,
)

SECTIONS = ("airbench", "speedrun", "overhead", "se", "syncs", "data", "fullrun")
DEFAULT = "airbench,speedrun,overhead,se,syncs,data"


def section(name: str):
    """The section's ``measure`` (imported on demand: each pulls in what it times)."""
    import data
    import fullrun
    import overhead
    import peer
    import se
    import speedrun
    import syncs

    modules = {"airbench": peer, "speedrun": speedrun, "overhead": overhead, "se": se,
               "syncs": syncs, "data": data, "fullrun": fullrun}  # fmt: skip
    return modules[name].measure


def header(
    machine: dict, threads: int, note: str, load: float | None, busy: list[str]
) -> list[str]:
    lines = [
        "# selab benchmark", "",
        f"Machine: {machine.get('cpu_model', '?')}, {machine['cpu_count']} cores ({threads} torch "
        f"thread(s)), device {machine['device']}; CPU capability {machine['cpu_capability']} "
        "(bf16 on a CPU without avx512_bf16 or AMX runs emulated, far slower than fp32); torch "
        f"{machine['torch']}, lightning {machine['lightning']}, Python {machine['python']}.", "",
    ]  # fmt: skip
    if busy or note:
        others = ", ".join(f"`{command}`" for command in busy)
        lines += [
            f"Load average {load} on {machine['cpu_count']} cores when the run started"
            + (f"; {len(busy)} other processes used over 30% of a core each ({others}), "
               "so absolute times are slower than on a quiet machine; the ratios come from "
               "interleaved repeats and stay comparable" if busy else "")
            + (f". {note}" if note else "") + ".", "",
        ]  # fmt: skip
    return lines


def main(argv=None) -> int:
    o = parse(argv)
    names = o.sections.split(",")
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown section {unknown}; choose from {', '.join(SECTIONS)}")
    ctx = Context(o)
    machine = machine_info(ctx.device)
    print(f"selab bench on {machine}")
    out = Path(o.out)
    # Sections measured earlier on this machine are kept: a busy machine can run them apart.
    previous = {}
    with contextlib.suppress(OSError, ValueError, KeyError):
        earlier = json.loads((out / "bench.json").read_text())
        if not o.fresh and earlier["machine"] == machine:
            previous = earlier["sections"]
    command = f"python benchmarks/bench.py {' '.join(sys.argv[1:] if argv is None else argv)}"
    revision, first_load, busy = source_revision(), load_average(), busy_processes()
    for name in names:
        start, load = time.strftime("%Y-%m-%d %H:%M %Z"), load_average()
        with ctx.host_threads():
            result: Section = section(name)(ctx)
        previous[name] = {
            **result.results,
            "markdown": result.markdown,
            "measured": f"`{command.strip()}`, commit {revision}, {start}, load average {load} -> "
            f"{load_average()}",
        }
    ordered = {name: previous[name] for name in SECTIONS if name in previous}
    threads = torch.get_num_threads() if ctx.cuda else (o.threads or 1)
    results = {"machine": machine, "options": vars(o), "sections": ordered}
    write_report(out, "bench", header(machine, threads, o.note, first_load, busy), results)
    shutil.rmtree(ctx.tmp, ignore_errors=True)
    print(f"\nwrote {out / 'bench.md'} and {out / 'bench.json'}")
    return 0


def parse(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sections", default=DEFAULT, help=f"of {', '.join(SECTIONS)}")
    p.add_argument("--data-root", default=None, help="speedrun, fullrun: CIFAR-10 (pickles or JPEG folders)")  # fmt: skip
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "imagefolder"])
    p.add_argument("--seeds", type=int, default=5, help="speedrun: timed runs after the warm-up")
    p.add_argument("--no-compile", action="store_true", help="speedrun: skip the compiled variant")
    p.add_argument("--precision", default=None, help="fullrun: trainer.precision (the recipe's)")
    p.add_argument("--peer-batch", type=int, default=1024, help="airbench: batch size")
    p.add_argument("--peer-fp32", default="1,2,3", help="airbench: fp32 WARMUP,STEPS,REPEATS (0: skip)")  # fmt: skip
    p.add_argument("--peer-bf16", default="0,1,2", help="airbench: bf16 WARMUP,STEPS,REPEATS (0: skip)")  # fmt: skip
    p.add_argument("--peer-widths", default="", help="airbench: block widths, e.g. 8,16,16 (smoke)")
    p.add_argument("--tiny-batch", type=int, default=32, help="overhead, syncs: batch size")
    p.add_argument("--tiny-size", type=int, default=8, help="overhead, syncs: image side")
    p.add_argument(
        "--tiny-width", type=int, default=8, help="overhead, syncs: first conv's channels"
    )
    p.add_argument("--tiny-images", type=int, default=8192, help="overhead, syncs: training images")
    p.add_argument("--steps", type=int, default=100, help="overhead, syncs: timed steps")
    p.add_argument("--warmup", type=int, default=10, help="overhead, syncs: untimed first steps")
    p.add_argument("--compile-backend", default="inductor", help="syncs: torch.compile backend")
    p.add_argument("--batch-size", type=int, default=None, help="se: batch; 128 (GPU), 32 (CPU)")
    p.add_argument("--se-networks", nargs="*", default=None, help="se: a subset of the networks")
    p.add_argument("--se-steps", type=int, default=None, help="se: steps per window; 5 (GPU), 3")
    p.add_argument("--se-warmup", type=int, default=1, help="se: untimed first steps")
    p.add_argument("--se-repeats", type=int, default=None, help="se: repeats; CPU: at most 3")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    p.add_argument("--cpu", action="store_true", help="ignore the GPU")
    p.add_argument("--threads", type=int, default=None, help="torch threads on a CPU (default 1)")
    p.add_argument("--quick", action="store_true", help="a smoke run: few steps and repeats")
    p.add_argument("--note", default="", help="a sentence for the report's header")
    p.add_argument("--baseline", default=None, help="data: bench.json of another checkout, shown as 'before'")  # fmt: skip
    p.add_argument("--out", default=str(REPO / "results"))
    p.add_argument("--fresh", action="store_true", help="drop the sections measured earlier in --out")  # fmt: skip
    opts = p.parse_args(argv)
    cuda = torch.cuda.is_available() and not opts.cpu
    # se on a CPU: smaller batches and fewer steps, or ResNet-18 alone takes most of an hour.
    if opts.batch_size is None:
        opts.batch_size = 128 if cuda else 32
    if opts.se_steps is None:
        opts.se_steps = 5 if cuda else 3
    if opts.se_repeats is None:
        opts.se_repeats = opts.repeats if cuda else min(opts.repeats, 3)
    if opts.quick:
        opts.steps, opts.warmup, opts.repeats, opts.seeds = 20, 5, 2, 1
        opts.se_steps, opts.se_warmup, opts.se_repeats, opts.tiny_images = 2, 1, 2, 2048
        opts.batch_size = 32
        opts.peer_batch, opts.peer_fp32, opts.peer_bf16 = 128, "0,1,1", "0,1,1"
    return opts


if __name__ == "__main__":
    sys.exit(main())
