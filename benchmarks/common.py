"""What every benchmark section shares: clocks, the run context, the machine, the report.

A section is a function ``measure(ctx) -> Section``: it reads its sizes from ``ctx.opts`` (the
options of ``bench.py``), times what it times, and returns its figures (for the JSON) and its
markdown. :func:`write_report` assembles sections into ``bench.md`` and ``bench.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
for path in (REPO / "src", HERE):  # selab from this checkout; tiny.TinyNet for the CLI
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

import lightning as L  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402

NOT_MEASURED = "not measured: no device lent"
SPEEDRUN = REPO / "configs/cifar10/speedrun94.yaml"


@dataclass
class Section:
    """One section's figures (JSON) and its markdown."""

    results: dict = field(default_factory=dict)
    markdown: list[str] = field(default_factory=list)


# -- clocks ---------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clocks() -> tuple[float, float]:
    """(wall, process CPU) seconds. On a shared CPU the process time is the steadier figure of a
    single-threaded loop: it leaves out the time the process waited for a core."""
    return time.perf_counter(), time.process_time()


def timed_steps(device: torch.device, warmup: int, steps: int, step) -> tuple[float, float]:
    """(wall, CPU) seconds per call of ``step(i)`` over ``steps`` calls after ``warmup``
    untimed ones; the device is synchronised only at the ends of the timed window."""
    start = None
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            start = clocks()
        step(i)
    sync(device)
    end = clocks()
    return tuple((e - s) / steps for s, e in zip(start, end, strict=True))


def median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def load_average() -> float | None:
    with contextlib.suppress(OSError, AttributeError):
        return round(os.getloadavg()[0], 2)
    return None


class Window(Callback):
    """Wall and CPU seconds of ``steps`` training iterations after ``warmup`` ones (each from one
    batch's start to the next one's, loading included), with one device sync at each end."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.start: tuple[float, float] | None = None
        self.seconds: tuple[float, float] | None = None

    def _close(self, trainer) -> None:
        sync(trainer.strategy.root_device)
        end = clocks()
        self.seconds = (end[0] - self.start[0], end[1] - self.start[1])
        trainer.should_stop = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            sync(trainer.strategy.root_device)
            self.start = clocks()
        elif batch_idx == self.warmup + self.steps:
            self._close(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # An epoch exactly warmup + steps long has no next batch to stop at.
        last = batch_idx == trainer.num_training_batches - 1
        if last and self.seconds is None and batch_idx == self.warmup + self.steps - 1:
            self._close(trainer)


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


# -- data -----------------------------------------------------------------------------------------
def fabricate(folder: Path, n_train: int, n_test: int, size: int, jpeg: bool = False) -> Path:
    """Class folders of learnable stripes (tests/fakedata.py) in the real on-disk layout,
    ``folder/{train,test}/<class>/*``; JPEG like the CIFAR-10 copy, or lossless PNG. Written
    once: a folder that already holds its test split is reused."""
    if (folder / "test").is_dir():
        return folder
    if str(REPO / "tests") not in sys.path:
        sys.path.insert(0, str(REPO / "tests"))
    from PIL import Image

    from fakedata import CLASSES, balanced_labels, make_images, write_imagefolder

    if not jpeg:
        write_imagefolder(folder, n_train=n_train, n_test=n_test, size=size)
        return folder
    for offset, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        labels = balanced_labels(n, seed=offset)
        for i, (label, image) in enumerate(zip(labels, make_images(labels, size, 10 + offset), strict=True)):  # fmt: skip
            target = folder / split / CLASSES[label]
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(target / f"{i:05d}.jpg", quality=75)
    return folder


# -- the run context ------------------------------------------------------------------------------
class Context:
    """The device, a scratch folder and the options every section reads."""

    def __init__(self, opts) -> None:
        self.opts = opts
        cuda = torch.cuda.is_available() and not getattr(opts, "cpu", False)
        self.device = torch.device("cuda" if cuda else "cpu")
        self.tmp = Path(tempfile.mkdtemp(prefix="selab-bench-"))

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def accelerator_args(self) -> list[str]:
        return [f"--trainer.accelerator={'gpu' if self.cuda else 'cpu'}", "--trainer.devices=1"]

    def lightning_steps(self, args, warmup: int, steps: int, callbacks=(), bare=False):
        """(wall, CPU) ms per step of ``lightning fit`` (``args`` as on the command line) over
        ``steps`` steps after ``warmup``; ``bare``: with every callback removed (Lightning's loop
        and the Classifier alone)."""
        from selab.cli import run

        window = Window(warmup, steps)
        cli = run([*args, *self.accelerator_args()], run=False)
        if bare:
            cli.trainer.callbacks[:] = []
        cli.trainer.callbacks.extend([window, *callbacks])
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        if window.seconds is None:
            raise RuntimeError(f"the epoch is shorter than {warmup} + {steps} steps")
        return tuple(1000 * seconds / steps for seconds in window.seconds)

    @contextlib.contextmanager
    def host_threads(self):
        """One intra-op thread on a CPU unless ``--threads`` says otherwise: on a shared machine
        OpenMP threads that wait on each other make every figure noisier."""
        threads = torch.get_num_threads()
        if not self.cuda:
            torch.set_num_threads(getattr(self.opts, "threads", None) or 1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


# -- the machine ----------------------------------------------------------------------------------
def cpu_flags() -> set[str]:
    with contextlib.suppress(OSError, StopIteration):
        with open("/proc/cpuinfo") as cpuinfo:
            return set(next(ln for ln in cpuinfo if ln.startswith("flags")).split(":")[1].split())
    return set()


def cpu_capability() -> str:
    """What the CPU offers bf16: PyTorch's kernel level and the relevant instruction sets."""
    flags = cpu_flags()
    level = torch.backends.cpu.get_cpu_capability()
    bf16 = {name: name in flags for name in ("avx512_bf16", "amx_bf16")}
    return f"{level}, " + ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in bf16.items())


def machine_info(device: torch.device) -> dict:
    info = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "cpu_count": os.cpu_count(),
        "cpu_capability": cpu_capability(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError, StopIteration):
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(ln for ln in cpuinfo if ln.startswith("model name"))
            info["cpu_model"] = model.split(":", 1)[1].strip()
    return info


def busy_processes(seconds: float = 1.0, share: float = 0.3) -> list[str]:
    """Other processes that used more than ``share`` of a core over ``seconds``: their commands,
    shortened (``python -m selab fit``), so a report says what it competed with."""

    def ticks() -> dict[str, int]:
        found = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                found[stat.parent.name] = int(fields[11]) + int(fields[12])  # utime + stime
        return found

    before = ticks()
    time.sleep(seconds)
    after, hz = ticks(), os.sysconf("SC_CLK_TCK")
    busy = []
    for pid, used in after.items():
        if pid != str(os.getpid()) and (used - before.get(pid, used)) / hz / seconds > share:
            with contextlib.suppress(OSError):
                words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                busy.append(" ".join(Path(w.decode()).name if i == 0 else w.decode()
                                     for i, w in enumerate(words[:4]) if w))  # fmt: skip
    return sorted(busy)


def source_revision() -> str:
    """The commit the benchmark ran from, marked ``+changes`` when the working tree differs."""

    def git(*args: str) -> str:
        try:  # a copy of the tree without git (a device machine) has no commit to name
            done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO)
        except OSError:
            return ""
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" +changes" if git("status", "--porcelain", "--untracked-files=no") else "")


# -- the report -----------------------------------------------------------------------------------
def atomic_write_text(path: Path, text: str) -> None:
    """Written beside and renamed: a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(out: Path, title: str, header: list[str], results: dict) -> None:
    """``out/<title>.md`` (the header, then each section's markdown and how it was measured) and
    ``out/<title>.json`` (``results``: the machine, the options, the sections)."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [*header]
    for section in results["sections"].values():
        lines += section.get("markdown", [])
        if section.get("measured"):
            lines += [f"_Measured: {section['measured']}._", ""]
    atomic_write_text(out / f"{title}.md", "\n".join(lines).rstrip() + "\n")
    atomic_write_text(out / f"{title}.json", json.dumps(results, indent=2, default=str) + "\n")
