"""selab speed benchmark (``make bench``): measurements, not tests. Writes results/bench.md.

(a) time to 94%: ``lightning fit --config configs/cifar10/speedrun94.yaml`` on the device, per
    seed: seconds of training (device-synchronised; without process start, the first run's
    compilation and cuDNN autotuning, which a warm-up run absorbs, and without the final
    test-time-augmented evaluation) and the test accuracy, beside airbench's published A100
    figures. Needs a GPU and CIFAR-10 (``--data-root``); on a CPU it is not measured.
(b) host overhead: ms per step of ``lightning fit`` (the CLI with every default callback and the
    memory loader) against a bare PyTorch loop of this file (same tiny network, optimizer and
    schedule; batches sliced from one device tensor; nothing read back), interleaved repeats,
    medians, and their ratio.
(c) images/s of a training step of SE-ResNet-20/56/110 and ResNet-18 (CIFAR stem) with and
    without SE, and the SE overhead in percent (bare loop, synthetic device batches).
(d) host reads and recompiles: device->host reads per steady-state training step of
    ``lightning fit`` (selab.testing.HostReadCounter; on a GPU also CUDA's sync debug warnings),
    and frames compiled after the first epoch with ``model.compile: true``.

Timings sync the device only at the ends of a timed window (never per step). Shared machines
are noisy: variants are interleaved and medians reported, with the load average.

    python benchmarks/bench.py                         # everything this machine can run
    python benchmarks/bench.py --quick                 # a smoke run
    python benchmarks/bench.py --sections overhead,syncs
    python benchmarks/bench.py --data-root data/ --seeds 5   # (a) on a GPU, CIFAR-10 pickles
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tiny.TinyNet for the CLI
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

import lightning as L  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402
from tiny import TinyNet  # noqa: E402

from selab import models  # noqa: E402
from selab.cli import run  # noqa: E402
from selab.optim import WarmupCosineLR  # noqa: E402
from selab.runs import atomic_write_text  # noqa: E402
from selab.testing import CompileCounter, HostReadCounter  # noqa: E402

SPEEDRUN = REPO / "configs/cifar10/speedrun94.yaml"
NOT_MEASURED = "not measured: no device lent"
# airbench's published times to 94% on one A100 (Jordan 2024 and its repository), seconds.
ANCHORS = {
    "airbench94 (uncompiled)": 3.83,
    "airbench94 compiled": 3.09,
    "airbench94 with Muon": 2.59,
}
SE_NETWORKS = {
    "ResNet-20": lambda attention: models.resnet20(attention=attention),
    "ResNet-56": lambda attention: models.resnet56(attention=attention),
    "ResNet-110": lambda attention: models.resnet110(attention=attention),
    "ResNet-18 (CIFAR stem)": lambda attention: models.resnet18(stem="cifar", attention=attention),
}
TINY_CONFIG = """
seed_everything: 0
trainer:
  max_epochs: 1
  enable_progress_bar: false
  enable_model_summary: false
  num_sanity_val_steps: 0
  limit_val_batches: 0
  logger:
    class_path: lightning.pytorch.loggers.TensorBoardLogger
    init_args: {{save_dir: {logs}, name: tiny}}
model:
  backbone:
    class_path: tiny.TinyNet
    init_args: {{width: {width}}}
  optimizer:
    class_path: torch.optim.SGD
    init_args: {{lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 5.0e-4}}
  lr_scheduler:
    class_path: selab.optim.WarmupCosineLR
    init_args: {{warmup_steps: 5}}
  label_smoothing: 0.1
data:
  dataset: imagefolder
  root: {root}
  batch_size: {batch_size}
  loader: memory
  augment: none
"""


# -- helpers --------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def source_revision() -> str:
    """The commit the benchmark ran from, marked ``+changes`` when the working tree differs."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" +changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def load_average() -> float | None:
    with contextlib.suppress(OSError, AttributeError):
        return round(os.getloadavg()[0], 2)
    return None


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fabricate(folder: Path, n_train: int, n_test: int, size: int) -> Path:
    """Small PNG class folders (tests/fakedata.py's learnable stripes) for the overhead runs."""
    sys.path.insert(0, str(REPO / "tests"))
    from fakedata import write_imagefolder

    if not (folder / "test").is_dir():
        write_imagefolder(folder, n_train=n_train, n_test=n_test, size=size)
    return folder


def clocks() -> tuple[float, float]:
    """(wall, process CPU) seconds. On a shared CPU the process time is the steadier figure of a
    single-threaded loop: it leaves out the time the process waited for a core."""
    return time.perf_counter(), time.process_time()


class Window(Callback):
    """Wall and CPU seconds of ``steps`` training iterations after ``warmup`` ones (each from one
    batch's start to the next one's, loading included), with one device sync at each end."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.start: tuple[float, float] | None = None
        self.seconds: tuple[float, float] | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            sync(trainer.strategy.root_device)
            self.start = clocks()
        elif batch_idx == self.warmup + self.steps:
            sync(trainer.strategy.root_device)
            end = clocks()
            self.seconds = (end[0] - self.start[0], end[1] - self.start[1])
            trainer.should_stop = True


class TrainClock(Callback):
    """Training seconds of a run: each epoch from its start to its last batch's end (device
    synchronised at both), so validation and the final evaluation are left out."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        sync(trainer.strategy.root_device)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == trainer.num_training_batches - 1:
            sync(trainer.strategy.root_device)
            self.seconds += time.perf_counter() - self._start


class Bench:
    def __init__(self, opts) -> None:
        self.opts = opts
        self.device = torch.device("cuda" if torch.cuda.is_available() and not opts.cpu else "cpu")
        self.tmp = Path(tempfile.mkdtemp(prefix="selab-bench-"))
        self.results: dict = {"sections": {}}
        self.md: list[str] = []
        # (c) on a CPU: smaller batches and fewer steps, or ResNet-18 alone takes most of an hour.
        if opts.batch_size is None:
            opts.batch_size = 128 if self.cuda else 32
        if opts.se_steps is None:
            opts.se_steps = 5 if self.cuda else 3
        if opts.se_repeats is None:
            opts.se_repeats = opts.repeats if self.cuda else min(opts.repeats, 3)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def accelerator_args(self) -> list[str]:
        return ["--trainer.accelerator=gpu" if self.cuda else "--trainer.accelerator=cpu",
                "--trainer.devices=1"]  # fmt: skip

    # -- (a) time to 94% ------------------------------------------------------------------------
    def speedrun(self) -> None:
        o = self.opts
        self.md += ["## (a) Time to 94% on CIFAR-10: `configs/cifar10/speedrun94.yaml`", ""]
        anchors = ", ".join(f"{name} {seconds} s" for name, seconds in ANCHORS.items())
        if not self.cuda or not o.data_root:
            why = NOT_MEASURED if not self.cuda else "not measured: no --data-root with CIFAR-10"
            self.md += [f"{why}.", "", f"Published on one A100: {anchors}.", ""]
            self.results["sections"]["speedrun"] = {"measured": False, "why": why}
            print(f"\n[a] speedrun94: {why}")
            return
        rows = []
        variants = [("uncompiled", [])]
        if not o.no_compile:
            variants.append(("compiled", ["--model.compile=true"]))
        for name, extra in variants:
            runs = []
            for index, seed in enumerate([None, *range(o.seeds)]):  # None: the warm-up run
                clock = TrainClock()
                args = [
                    "--config", str(SPEEDRUN), f"--data.root={o.data_root}",
                    f"--data.dataset={o.dataset}", f"--seed_everything={seed or 0}",
                    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                    f"--trainer.logger.init_args.save_dir={self.tmp}", *extra,
                    *self.accelerator_args(),
                ]  # fmt: skip
                cli = run(args, run=False)
                cli.trainer.callbacks.append(clock)
                cli.trainer.fit(cli.model, datamodule=cli.datamodule)
                accuracy = float(cli.trainer.callback_metrics["val/acc_top1"])
                print(
                    f"  {name} seed {seed}: {clock.seconds:.2f} s, acc {accuracy:.4f}", flush=True
                )
                if index:
                    runs.append({"seed": seed, "seconds": clock.seconds, "accuracy": accuracy})
            seconds = [r["seconds"] for r in runs]
            accuracies = [r["accuracy"] for r in runs]
            rows.append(
                (name, statistics.mean(seconds), statistics.pstdev(seconds),
                 statistics.mean(accuracies), statistics.pstdev(accuracies),
                 sum(a >= 0.94 for a in accuracies), len(runs))
            )  # fmt: skip
            self.results["sections"].setdefault("speedrun", {})[name] = runs
        self.md += [
            "| variant | training s (mean ± sd) | test top-1 (mean ± sd) | runs >= 94% |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, s, s_sd, acc, acc_sd, hits, n in rows:
            self.md.append(f"| {name} | {s:.2f} ± {s_sd:.2f} | {100 * acc:.2f} ± {100 * acc_sd:.2f}% "
                           f"| {hits}/{n} |")  # fmt: skip
        self.md += ["", f"Seeds 0..{o.seeds - 1} after one warm-up run. Published on one A100: "
                        f"{anchors}.", ""]  # fmt: skip

    # -- (b) host overhead ----------------------------------------------------------------------
    def _tiny_config(self) -> Path:
        o = self.opts
        folder = f"selab-bench-tiny-{o.tiny_images}x{o.tiny_size}px"
        root = fabricate(Path(tempfile.gettempdir()) / folder,
                         n_train=o.tiny_images, n_test=64, size=o.tiny_size)  # fmt: skip
        path = self.tmp / "tiny.yaml"
        path.write_text(TINY_CONFIG.format(
            logs=self.tmp, root=root, batch_size=o.tiny_batch, width=o.tiny_width
        ))  # fmt: skip
        return path

    def lightning_steps(self, config: Path, steps: int, extra=(), callbacks=(), bare=False):
        """(wall, CPU) ms per step of ``lightning fit`` over ``steps`` steps after the warm-up;
        ``bare``: with every callback removed (Lightning's loop and the Classifier alone)."""
        window = Window(self.opts.warmup, steps)
        cli = run(["--config", str(config), *self.accelerator_args(), *extra], run=False)
        if bare:
            cli.trainer.callbacks[:] = []
        cli.trainer.callbacks.extend([window, *callbacks])
        self._last_trainer = cli.trainer
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        if window.seconds is None:
            raise RuntimeError("the epoch is shorter than warm-up + steps; raise --tiny-images")
        return tuple(1000 * seconds / steps for seconds in window.seconds)

    def bare_steps(self, images: torch.Tensor, labels: torch.Tensor, steps: int):
        """The tuned hand loop: same network, optimizer, schedule and loss; batches are slices of
        one device tensor; no value is read back. (wall, CPU) ms per step."""
        o, device = self.opts, self.device
        L.seed_everything(0, verbose=False)
        model = TinyNet(width=o.tiny_width).to(device)
        kind = {"fused": True} if self.cuda else {"foreach": True}
        optimizer = torch.optim.SGD(
            model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, **kind
        )
        schedule = WarmupCosineLR(
            optimizer, warmup_steps=5, total_steps=len(images) // o.tiny_batch
        )
        model.train()
        start = None
        for step in range(o.warmup + steps):
            if step == o.warmup:
                sync(device)
                start = clocks()
            x = images[step * o.tiny_batch : (step + 1) * o.tiny_batch]
            y = labels[step * o.tiny_batch : (step + 1) * o.tiny_batch]
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        sync(device)
        end = clocks()
        return tuple(1000 * (e - s) / steps for s, e in zip(start, end, strict=True))

    def overhead(self) -> None:
        o = self.opts
        print(
            f"\n[b] host overhead, tiny network, batch {o.tiny_batch} of {o.tiny_size}px: ms/step"
        )
        config = self._tiny_config()
        generator = torch.Generator().manual_seed(0)
        n = (o.warmup + o.steps) * o.tiny_batch
        images = torch.randn(n, 3, o.tiny_size, o.tiny_size, generator=generator).to(self.device)
        labels = torch.randint(10, (n,), generator=generator).to(self.device)
        bare, light, loop = [], [], []  # (wall, CPU) ms per step
        for repeat in range(o.repeats):  # interleaved: a change in load hits all alike
            bare.append(self.bare_steps(images, labels, o.steps))
            light.append(self.lightning_steps(config, o.steps))
            loop.append(self.lightning_steps(config, o.steps, bare=True))
            print(f"  repeat {repeat}: bare {bare[-1][0]:.3f} ms ({bare[-1][1]:.3f} CPU), "
                  f"lightning fit {light[-1][0]:.3f} ms ({light[-1][1]:.3f} CPU), without "
                  f"callbacks {loop[-1][0]:.3f} ms ({loop[-1][1]:.3f} CPU)", flush=True)  # fmt: skip
        clock_names = ("wall", "CPU") if not self.cuda else ("wall",)
        summary = {}
        for index, clock in enumerate(clock_names):
            b = [v[index] for v in bare]
            lt = [v[index] for v in light]
            lp = [v[index] for v in loop]
            summary[clock] = {
                "bare_ms": b, "lightning_ms": lt, "no_callbacks_ms": lp,
                "ratio": median(lt) / median(b), "ratio_no_callbacks": median(lp) / median(b),
                "ratios": [y / x for x, y in zip(b, lt, strict=True)],
            }  # fmt: skip
        self.results["sections"]["overhead"] = summary
        where = "GPU" if self.cuda else "CPU"
        self.md += [
            f"## (b) Host overhead on the {where}: `lightning fit` vs a bare PyTorch loop", "",
            f"Tiny CNN (`benchmarks/tiny.py`, width {o.tiny_width}), batch {o.tiny_batch} of "
            f"{o.tiny_size}x{o.tiny_size} images, SGD (Nesterov) + WarmupCosineLR, {o.steps} timed "
            f"steps after {o.warmup}, {o.repeats} interleaved repeats, "
            f"{torch.get_num_threads()} torch thread(s). `lightning fit`: the selab CLI with every "
            "default callback and the memory loader; bare loop: batches sliced from one device "
            "tensor, nothing read back.", "",
            "| clock | bare loop ms/step | `lightning fit` ms/step | ratio (medians) | ratio per repeat "
            "| without callbacks ms/step (ratio) |",
            "| --- | ---: | ---: | ---: | --- | ---: |",
        ]  # fmt: skip
        for clock, row in summary.items():
            self.md.append(
                f"| {clock} | {median(row['bare_ms']):.3f} | {median(row['lightning_ms']):.3f} | "
                f"**{row['ratio']:.3f}x** | {', '.join(f'{r:.2f}' for r in row['ratios'])} | "
                f"{median(row['no_callbacks_ms']):.3f} ({row['ratio_no_callbacks']:.3f}x) |"
            )
        self.md += ["", "Target <= 1.15x. \"Without callbacks\": the same run with every callback "
                        "removed (Lightning's loop and the Classifier alone); the difference is what "
                        "the callbacks cost (Lightning calls every hook of every callback, 6 per "
                        "step). On a CPU the process CPU time is the steadier clock on a shared "
                        "machine (it leaves out time spent waiting for a core)."]  # fmt: skip
        if not self.cuda:
            self.md += ["", f"GPU: {NOT_MEASURED}."]
        self.md.append("")

    # -- (c) images/s and SE overhead ----------------------------------------------------------
    def se_throughput(self) -> None:
        o, device = self.opts, self.device
        fast = self.cuda
        print(f"\n[c] images/s of a training step, batch {o.batch_size}, with and without SE")
        images = torch.randn(o.batch_size, 3, 32, 32, device=device)
        labels = torch.randint(10, (o.batch_size,), device=device)
        if fast:
            images = images.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if fast else contextlib.nullcontext()
        )
        rows = []
        for name, build in SE_NETWORKS.items():
            nets = {}
            for attention in ("none", "se"):
                torch.manual_seed(0)
                net = build(attention).to(device)
                if fast:
                    net = net.to(memory_format=torch.channels_last)
                kind = {"fused": True} if self.cuda else {"foreach": True}
                optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, **kind)
                nets[attention] = (net, optimizer)

            def window(net, optimizer, steps):
                sync(device)
                start = time.perf_counter()
                for _ in range(steps):
                    with autocast:
                        loss = F.cross_entropy(net(images), labels)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                sync(device)
                return (time.perf_counter() - start) / steps

            for net, optimizer in nets.values():
                window(net, optimizer, o.se_warmup)
            seconds = {"none": [], "se": []}
            for _ in range(o.se_repeats):
                for attention, (net, optimizer) in nets.items():
                    seconds[attention].append(window(net, optimizer, o.se_steps))
            none, se = median(seconds["none"]), median(seconds["se"])
            overhead = 100 * (se / none - 1)
            rows.append((name, o.batch_size / none, o.batch_size / se, overhead))
            print(f"  {name}: {o.batch_size / none:.1f} vs {o.batch_size / se:.1f} img/s, "
                  f"SE +{overhead:.1f}%", flush=True)  # fmt: skip
            self.results["sections"].setdefault("se", {})[name] = seconds
        where = "GPU, bf16 autocast, channels_last" if self.cuda else "CPU, fp32"
        self.md += [
            f"## (c) Training images/s with and without SE ({where})", "",
            f"Bare training steps (forward, backward, SGD), batch {o.batch_size} of 32x32, "
            f"{o.se_steps} steps per window after {o.se_warmup}, {o.se_repeats} interleaved repeats, "
            "medians. SE: r = 16, at least 8 hidden units, end of each residual branch.", "",
            "| network | images/s without SE | with SE | SE overhead (step time) |",
            "| --- | ---: | ---: | ---: |",
        ]  # fmt: skip
        for name, plain, se, overhead in rows:
            self.md.append(f"| {name} | {plain:.1f} | {se:.1f} | {overhead:+.1f}% |")
        self.md += ["", "The SE paper reports about +10% training step time on GPUs."]
        if not self.cuda:
            self.md += ["", f"GPU: {NOT_MEASURED}."]
        self.md.append("")

    # -- (d) host reads and recompiles ---------------------------------------------------------
    def syncs(self) -> None:
        o = self.opts
        print("\n[d] host reads per training step, recompiles after the first epoch")
        config = self._tiny_config()
        counter = HostReadCounter(skip=2)
        cuda_syncs: dict[int, int] = {}
        callbacks = [counter]
        if self.cuda:
            callbacks.append(CudaSyncWarnings(cuda_syncs))
        # Logging steps convert the logged values once per log_every_n_steps: counted apart.
        self.lightning_steps(config, o.steps, ["--trainer.log_every_n_steps=50"], callbacks)
        per_step = counter.per_step()
        per_step.pop(max(per_step), None)  # the window's end stops training, which logs once
        log_steps = [s for s in per_step if (s + 1) % 50 == 0]
        quiet = {s: n for s, n in per_step.items() if s not in log_steps}
        compiled = CompileCounter()
        epochs = 3
        extra = ["--model.compile=true", f"--trainer.max_epochs={epochs}",
                 "--trainer.limit_val_batches=2", f"--trainer.limit_train_batches={o.warmup + 4}"]  # fmt: skip
        cli = run(["--config", str(config), *self.accelerator_args(), *extra], run=False)
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
        }
        self.results["sections"]["syncs"] = result
        print(f"  reads per step (max) {result['reads_per_step_max']}, frames compiled by epoch "
              f"{compiled.after_epoch}", flush=True)  # fmt: skip
        cuda_line = (
            f"CUDA sync-debug warnings per step: max {max(cuda_syncs.values(), default=0)}."
            if self.cuda else f"CUDA sync-debug count: {NOT_MEASURED}."
        )  # fmt: skip
        self.md += [
            "## (d) Host reads and recompiles, counted", "",
            f"`lightning fit` of the tiny network, default callbacks, {len(per_step)} steady-state "
            "steps (selab.testing.HostReadCounter: `.item()`, `.tolist()`, `.cpu()`, `.numpy()`, "
            "`bool()`, `float()`, `int()`, `__index__` on tensors, from one step's start to the "
            "next's):", "",
            f"- device->host reads per step: max **{result['reads_per_step_max']}**, total "
            f"{result['reads_total']} over {len(quiet)} steps without logging;",
            f"- on logging steps (every 50): {result['reads_on_logging_steps'] or 'none in the window'} "
            "(Lightning converts the logged step values for the loggers);",
            f"- {cuda_line}",
            f"- `model.compile: true` (backend inductor), {epochs} epochs with validation: frames "
            f"compiled by the end of each epoch {compiled.after_epoch}, i.e. "
            f"**{compiled.compiled_after(0)}** compiled after the first epoch.", "",
        ]  # fmt: skip

    # -- all ------------------------------------------------------------------------------------
    def machine(self) -> dict:
        info = {
            "device": torch.cuda.get_device_name(0) if self.cuda else "cpu",
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "lightning": L.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
        }
        with contextlib.suppress(OSError, StopIteration):
            info["cpu_model"] = next(
                line.split(":", 1)[1].strip()
                for line in open("/proc/cpuinfo")
                if line.startswith("model name")
            )
        return info

    @contextlib.contextmanager
    def host_threads(self):
        """One intra-op thread on a CPU unless ``--threads`` says otherwise: the tiny network's
        tensors (sections b, d) are too small to split, and on a shared machine OpenMP threads
        that wait on each other make every figure noisier (section c)."""
        threads = torch.get_num_threads()
        if not self.cuda and self.opts.threads is None:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def main(self) -> int:
        o = self.opts
        machine = self.machine()
        print(f"selab bench on {machine}")
        sections = {"speedrun": self.speedrun, "overhead": self.overhead,
                    "se": self.se_throughput, "syncs": self.syncs}  # fmt: skip
        names = o.sections.split(",")
        unknown = [name for name in names if name not in sections]
        if unknown:
            raise SystemExit(f"unknown section {unknown}; choose from {', '.join(sections)}")
        out = Path(o.out)
        out.mkdir(parents=True, exist_ok=True)
        # Sections measured earlier on this machine are kept: a busy machine can run them apart.
        previous = {}
        with contextlib.suppress(OSError, ValueError, KeyError):
            earlier = json.loads((out / "bench.json").read_text())
            if not o.fresh and earlier["machine"] == machine:
                previous = earlier["sections"]
        command = f"python benchmarks/bench.py {' '.join(sys.argv[1:])}".strip()
        revision = source_revision()
        for name in names:
            start, first_line = time.strftime("%Y-%m-%d %H:%M %Z"), len(self.md)
            load = load_average()
            with self.host_threads():
                sections[name]()
            self.results["sections"].setdefault(name, {})
            previous[name] = {
                **self.results["sections"][name],
                "markdown": self.md[first_line:],
                "measured": f"`{command}`, commit {revision}, {start}, load average {load} -> {load_average()}",
            }
        order = [name for name in sections if name in previous]
        lines = [
            "# selab benchmark", "",
            f"Machine: {machine.get('cpu_model', '?')}, {machine['cpu_count']} cores "
            f"({torch.get_num_threads() if o.threads or self.cuda else 1} torch thread(s)), "
            f"device {machine['device']}; "
            f"torch {machine['torch']}, lightning {machine['lightning']}, Python "
            f"{machine['python']}.", "",
        ]  # fmt: skip
        for name in order:
            lines += previous[name]["markdown"] + [f"_Measured: {previous[name]['measured']}._", ""]
        atomic_write_text(out / "bench.md", "\n".join(lines) + "\n")
        results = {"machine": machine, "options": vars(o), "sections": previous}
        atomic_write_text(out / "bench.json", json.dumps(results, indent=2, default=str))
        shutil.rmtree(self.tmp, ignore_errors=True)
        print(f"\nwrote {out / 'bench.md'} and {out / 'bench.json'}")
        return 0


class CudaSyncWarnings(Callback):
    """CUDA's sync debug warnings per training step, from step 2 on (GPU only)."""

    def __init__(self, counts: dict[int, int]) -> None:
        self.counts = counts
        self._catcher = None
        self._caught = None
        self._step = None

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


def parse(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sections", default="speedrun,overhead,se,syncs")
    p.add_argument("--data-root", default=None, help="(a): CIFAR-10 (pickles or JPEG folders)")
    p.add_argument("--dataset", default="cifar10", choices=["cifar10", "imagefolder"])
    p.add_argument("--seeds", type=int, default=5, help="(a): timed runs after the warm-up")
    p.add_argument("--no-compile", action="store_true", help="(a): skip the compiled variant")
    p.add_argument("--tiny-batch", type=int, default=32, help="(b, d) batch size")
    p.add_argument("--tiny-size", type=int, default=8, help="(b, d) image side")
    p.add_argument("--tiny-width", type=int, default=8, help="(b, d) channels of the first conv")
    p.add_argument("--tiny-images", type=int, default=8192, help="(b, d) training images")
    p.add_argument("--steps", type=int, default=100, help="(b, d) timed steps")
    p.add_argument("--warmup", type=int, default=10, help="(b, d) untimed first steps")
    p.add_argument("--batch-size", type=int, default=None, help="(c) batch; 128 (GPU), 32 (CPU)")
    p.add_argument("--se-steps", type=int, default=None, help="(c) steps per window; 5 (GPU), 3")
    p.add_argument("--se-warmup", type=int, default=1, help="(c) untimed first steps")
    p.add_argument("--se-repeats", type=int, default=None, help="(c) repeats; CPU: at most 3")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    p.add_argument("--cpu", action="store_true", help="ignore the GPU")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--quick", action="store_true", help="a smoke run: few steps and repeats")
    p.add_argument("--out", default=str(REPO / "results"))
    p.add_argument(
        "--fresh", action="store_true", help="drop the sections measured earlier in --out"
    )
    opts = p.parse_args(argv)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.quick:
        opts.steps, opts.warmup, opts.repeats, opts.seeds = 20, 5, 2, 1
        opts.se_steps, opts.se_warmup, opts.tiny_images, opts.batch_size = 2, 1, 2048, 32
    return opts


if __name__ == "__main__":
    sys.exit(Bench(parse()).main())
