"""selab training-speed benchmark (``make bench``); a measurement, not a test.

1. Lightning overhead: images/s of ``lightning fit`` (the CLI's own Trainer, Classifier and memory
   datamodule, built from configs/cifar10/se_resnet20.yaml) against a hand-written PyTorch loop on
   the same backbone, optimizer and in-memory batches. Target: Lightning >= 0.95x.
2. Data path: images/s the memory loader delivers against the per-image torchvision loader with
   ``--workers`` workers, alone and feeding SE-ResNet-20 training. Target: >= 3x.
3. SE overhead: train-step and inference time of ResNet-20 with ``attention: se`` vs ``none``.
   Target: <= 10% of the step time.
4. On a GPU, (1) and (3) again with bf16-mixed + channels_last + torch.compile.

Timings interleave the variants and report medians over ``--repeats`` (shared machines are noisy;
the load average is recorded). Results: a table on stdout and JSON in ``logs/bench/``.

    python benchmarks/bench.py --data-root /path/to/cifar10-jpg            # imagefolder JPEGs
    python benchmarks/bench.py --dataset cifar10 --data-root data/          # the CIFAR pickles
    python benchmarks/bench.py --quick                                      # a smoke run
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
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

import lightning as L  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402

from selab import models  # noqa: E402
from selab.cli import run  # noqa: E402
from selab.data import VisionDataModule  # noqa: E402

CONFIG = REPO / "configs/cifar10/se_resnet20.yaml"
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


# -- helpers --------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(
    times: list[float], warmup: int, steps: int, batch_size: int, median: bool = True
) -> float:
    """images/s from per-step end times after the warm-up: batch size / median step time, which
    shrugs off the multi-second stalls of a shared machine, or (``median=False``, for bursty
    prefetching loaders) images over the whole window. Window rates also go to the JSON."""
    ends = times[warmup - 1 : warmup + steps]
    durations = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    window = steps * batch_size / (ends[-1] - ends[0])
    RATES.append(window)
    return batch_size / statistics.median(durations) if median else window


RATES: list[float] = []  # window images/s of every rate() call, in order


def load_average() -> float | None:
    with contextlib.suppress(OSError, AttributeError):
        return os.getloadavg()[0]
    return None


def fabricate(folder: Path, n_train: int, n_test: int) -> Path:
    """CIFAR-shaped JPEGs (learnable stripes, see tests/fakedata.py) when no data is given."""
    sys.path.insert(0, str(REPO / "tests"))
    from PIL import Image

    from fakedata import CLASSES, balanced_labels, make_images

    for split, n in (("train", n_train), ("test", n_test)):
        labels = balanced_labels(n)
        for i, (label, image) in enumerate(
            zip(labels, make_images(labels, 32, seed=n), strict=True)
        ):
            path = folder / split / CLASSES[label] / f"{i:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path, quality=95)
    return folder


class Bench:
    def __init__(self, opts) -> None:
        self.opts = opts
        self.device = torch.device("cuda" if torch.cuda.is_available() and not opts.cpu else "cpu")
        self.results: dict = {"rows": [], "skipped": []}
        self.tmp = Path(tempfile.mkdtemp(prefix="selab-bench-"))

    def warmup(self, compiled: bool) -> int:
        """Untimed first steps; compiled models get more (compilation, possible recompiles)."""
        return max(self.opts.warmup, 10) if compiled else self.opts.warmup

    # -- data ---------------------------------------------------------------------------------
    def data_args(self) -> dict:
        o = self.opts
        common = {"batch_size": o.batch_size, "num_workers": o.workers, "download": False}
        if o.dataset == "cifar10":
            return {"dataset": "cifar10", "root": o.data_root, **common}
        return {
            "dataset": "imagefolder", "root": o.data_root, "mean": CIFAR_MEAN, "std": CIFAR_STD,
            **common,
        }  # fmt: skip

    def datamodule(self, loader: str) -> VisionDataModule:
        dm = VisionDataModule(**self.data_args(), loader=loader)
        dm.prepare_data()
        dm.setup("fit")
        if loader == "memory":
            for dataset in (dm.train_set, dm.val_set, dm.test_set):
                dataset.to(self.device)
        return dm

    @staticmethod
    def batches(dm: VisionDataModule, device: torch.device):
        """Training batches on the device, epoch after epoch, as a Trainer would feed them."""
        epoch = 0
        while True:
            loader = dm.train_dataloader()
            loader.sampler.set_epoch(epoch)
            for images, labels in loader:
                yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            epoch += 1

    # -- the two training loops ----------------------------------------------------------------
    def hand_loop(self, backbone_fn, dm, steps: int, fast: bool = False) -> float:
        """The plain PyTorch loop: same backbone, optimizer and batches as the Lightning run."""
        o, device = self.opts, self.device
        L.seed_everything(0, verbose=False)
        model = backbone_fn().to(device)
        if fast:
            model = model.to(memory_format=torch.channels_last)
            model.compile()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        model.train()
        autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16) if fast else contextlib.nullcontext()
        )
        times = []
        batches = self.batches(dm, device)
        for _ in range(self.warmup(fast) + steps):
            images, labels = next(batches)
            if fast:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast:
                loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sync(device)
            times.append(time.perf_counter())
        return rate(times, self.warmup(fast), steps, o.batch_size)

    def lightning_fit(self, backbone_args: list[str], steps: int, fast: bool = False) -> float:
        """``lightning fit`` as the CLI builds it, timed by a callback at every batch end."""
        o = self.opts

        class StepClock(Callback):
            def __init__(self) -> None:
                self.times: list[float] = []

            def on_train_batch_end(self, trainer, *args) -> None:
                sync(trainer.strategy.root_device)
                self.times.append(time.perf_counter())

        data = [
            f"--data.{k}={json.dumps(v) if isinstance(v, (tuple, bool)) else v}"
            for k, v in self.data_args().items()
        ]
        args = [
            "--config", str(CONFIG), *data, *backbone_args, "--data.loader=memory",
            f"--trainer.max_steps={self.warmup(fast) + steps}", "--trainer.limit_val_batches=0",
            "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", "--trainer.devices=1",
            f"--trainer.logger.init_args.save_dir={self.tmp}", "--model.lr_scheduler=null",
        ]  # fmt: skip
        if fast:
            args += [
                "--trainer.precision=bf16-mixed", "--model.channels_last=true",
                "--model.compile=true",
            ]  # fmt: skip
        cli = run(args, run=False)
        clock = StepClock()
        cli.trainer.callbacks.append(clock)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        return rate(clock.times, self.warmup(fast), steps, o.batch_size)

    # -- sections ------------------------------------------------------------------------------
    def row(self, section: str, what: str, value: float, unit: str, note: str = "", **extra):
        self.results["rows"].append(
            {"section": section, "what": what, "value": value, "unit": unit, "note": note, **extra}
        )
        print(f"  {what:<52} {value:>10.3f} {unit:<9} {note}", flush=True)

    def lightning_overhead(self, fast: bool = False) -> None:
        o = self.opts
        tag = " (bf16+channels_last+compile)" if fast else ""
        print(f"\n[1] Lightning fit vs hand loop{tag}, images/s (median of {o.repeats})")
        # ResNet-18 as the CIFAR pooling study runs it (configs/cifar10/resnet18_se.yaml): CIFAR stem.
        cases = [
            ("SE-ResNet-20", lambda: models.resnet20(attention="se", reduction=16), [], o.steps),
            (
                "SE-ResNet-18 (cifar stem)",
                lambda: models.resnet18(stem="cifar", attention="se", num_classes=10),
                [
                    "--model.backbone.class_path=selab.models.resnet18",
                    "--model.backbone.init_args.stem=cifar",
                    "--model.backbone.init_args.attention=se",
                ],
                o.steps_resnet18,
            ),
        ]
        dm = self.datamodule("memory")
        for name, backbone_fn, backbone_args, steps in cases:
            hand, light = [], []
            for _ in range(o.repeats):
                hand.append(self.hand_loop(backbone_fn, dm, steps, fast))
                light.append(self.lightning_fit(backbone_args, steps, fast))
            ratios = [b / a for a, b in zip(hand, light, strict=True)]
            h, lt = statistics.median(hand), statistics.median(light)
            self.row("lightning", f"{name} hand loop{tag}", h, "img/s", samples=hand)
            self.row("lightning", f"{name} lightning fit{tag}", lt, "img/s", samples=light)
            self.row(
                "lightning", f"{name} Lightning / hand{tag}", statistics.median(ratios), "x",
                "target >= 0.95", samples=ratios,
            )  # fmt: skip

    def data_path(self) -> None:
        o = self.opts
        print(f"\n[2] memory loader vs per-image torchvision loader ({o.workers} workers)")
        if o.dataset == "imagefolder" and not o.quick:  # the first run's decode, without cache
            start = time.perf_counter()
            VisionDataModule(**self.data_args(), loader="memory", cache=False).setup("fit")
            self.row(
                "data", "memory: first-run decode (no cache)", time.perf_counter() - start, "s"
            )
        for loader in ("memory", "torchvision"):
            start = time.perf_counter()
            dm = self.datamodule(loader)
            self.row(
                "data", f"{loader}: setup (decode or cache load)", time.perf_counter() - start, "s"
            )
            setattr(self, f"dm_{loader}", dm)
        speeds: dict[str, list[float]] = {"memory": [], "torchvision": []}
        for _ in range(o.repeats):
            for loader in speeds:
                batches, times = self.batches(getattr(self, f"dm_{loader}"), self.device), []
                for _ in range(o.warmup + o.data_steps):
                    next(batches)
                    sync(self.device)
                    times.append(time.perf_counter())
                speeds[loader].append(
                    rate(times, o.warmup, o.data_steps, o.batch_size, median=False)
                )
                del batches  # stops the workers' epoch
        for loader, values in speeds.items():
            self.row(
                "data",
                f"{loader}: loader alone",
                statistics.median(values),
                "img/s",
                samples=values,
            )
        ratio = statistics.median(speeds["memory"]) / statistics.median(speeds["torchvision"])
        self.row("data", "memory / torchvision, loader alone", ratio, "x", "target >= 3")
        train = {"memory": [], "torchvision": []}
        backbone = lambda: models.resnet20(attention="se", reduction=16)  # noqa: E731
        for _ in range(o.repeats):
            for loader in train:
                train[loader].append(
                    self.hand_loop(backbone, getattr(self, f"dm_{loader}"), o.steps)
                )
        for loader, values in train.items():
            self.row(
                "data",
                f"{loader}: SE-ResNet-20 training",
                statistics.median(values),
                "img/s",
                samples=values,
            )
        ratio = statistics.median(train["memory"]) / statistics.median(train["torchvision"])
        self.row("data", "memory / torchvision, training", ratio, "x")

    def se_overhead(self, fast: bool = False, compile_only: bool = False) -> None:
        """``fast``: bf16 autocast + channels_last + compile; ``compile_only``: fp32, compiled."""
        o, device = self.opts, self.device
        tag = " (bf16+channels_last+compile)" if fast else " (compiled)" if compile_only else ""
        print(f"\n[3] SE overhead, ResNet-20, batch {o.batch_size}{tag}: ms per step (median)")
        images = torch.randn(o.batch_size, 3, 32, 32, device=device)
        labels = torch.randint(10, (o.batch_size,), device=device)
        if fast:
            images = images.contiguous(memory_format=torch.channels_last)
        nets = {}
        for attention in ("none", "se"):
            torch.manual_seed(0)
            net = models.resnet20(attention=attention).to(device)
            if fast:
                net = net.to(memory_format=torch.channels_last)
            if fast or compile_only:
                net.compile()
            nets[attention] = (net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9))
        autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16) if fast else contextlib.nullcontext()
        )

        def train_step(net, optimizer):
            with autocast:
                loss = F.cross_entropy(net(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        @torch.no_grad()
        def infer(net, optimizer):
            with autocast:
                net(images)

        for kind, step in (("train step", train_step), ("inference", infer)):
            times: dict[str, list[float]] = {"none": [], "se": []}
            for net, opt in nets.values():
                net.train(kind == "train step")
                for _ in range(self.warmup(fast or compile_only)):
                    step(net, opt)
            for _ in range(o.repeats * o.se_steps):  # alternate, so load changes hit both alike
                for attention, (net, opt) in nets.items():
                    sync(device)
                    start = time.perf_counter()
                    step(net, opt)
                    sync(device)
                    times[attention].append((time.perf_counter() - start) * 1000)
            none, se = statistics.median(times["none"]), statistics.median(times["se"])
            self.row("se", f"ResNet-20 {kind}, attention none{tag}", none, "ms")
            self.row("se", f"ResNet-20 {kind}, attention se{tag}", se, "ms")
            self.row(
                "se", f"SE overhead, {kind}{tag}", 100 * (se / none - 1), "%",
                "target <= 10" if kind == "train step" else "SE paper: +2% (CPU inference)",
            )  # fmt: skip

    # -- all ------------------------------------------------------------------------------------
    def machine(self) -> dict:
        info = {
            "device": torch.cuda.get_device_name(0) if self.device.type == "cuda" else "cpu",
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "lightning": L.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_start": load_average(),
        }
        with contextlib.suppress(OSError):
            info["cpu_model"] = next(
                line.split(":", 1)[1].strip()
                for line in open("/proc/cpuinfo")
                if line.startswith("model name")
            )
        return info

    def main(self) -> int:
        o = self.opts
        self.results["machine"] = self.machine()
        self.results["options"] = vars(o)
        print(f"selab bench on {self.results['machine']}")
        print(f"data: {o.dataset} at {o.data_root}, batch {o.batch_size}, {o.workers} workers")
        sections = o.sections.split(",")
        if "se" in sections:
            self.se_overhead()
        if "data" in sections:
            self.data_path()
        if "lightning" in sections:
            self.lightning_overhead()
        if o.compile_cpu and self.device.type == "cpu" and "se" in sections:
            self.se_overhead(compile_only=True)
        if self.device.type == "cuda" and not o.no_fast:
            if "se" in sections:
                self.se_overhead(fast=True)
            if "lightning" in sections:
                self.lightning_overhead(fast=True)
        self.results["machine"]["load_average_end"] = load_average()
        self.results["window_rates"] = RATES
        out = Path(o.out)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(self.results, indent=2, default=str))
        shutil.rmtree(self.tmp, ignore_errors=True)  # the timed runs' TensorBoard logs
        print(
            f"\nload average {self.results['machine']['load_average_start']} -> "
            f"{self.results['machine']['load_average_end']}; wrote {path}"
        )
        return 0


def parse(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--dataset",
        choices=["imagefolder", "cifar10"],
        default=None,
        help="imagefolder (JPEGs in root/{train,test}/<class>/) or cifar10 (pickles); "
        "default: cifar10 if data/cifar-10-batches-py exists, else fabricated JPEGs",
    )
    p.add_argument("--data-root", default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="DataLoader workers of the torchvision loader (and for decoding)",
    )
    p.add_argument("--steps", type=int, default=30, help="timed training steps per measurement")
    p.add_argument("--steps-resnet18", type=int, default=8)
    p.add_argument("--data-steps", type=int, default=60, help="timed batches, loader alone")
    p.add_argument("--se-steps", type=int, default=10, help="timed steps per repeat, SE overhead")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sections", default="se,data,lightning")
    p.add_argument("--cpu", action="store_true", help="ignore the GPU")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--no-fast", action="store_true", help="GPU: skip the bf16/compile variants")
    p.add_argument(
        "--compile-cpu",
        action="store_true",
        help="CPU: also the SE overhead with torch.compile (needs a C++ compiler)",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: few steps, one repeat")
    p.add_argument("--out", default=str(REPO / "logs/bench"))
    opts = p.parse_args(argv)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.quick:
        opts.steps, opts.steps_resnet18, opts.data_steps = 5, 2, 10
        opts.se_steps, opts.warmup, opts.repeats = 5, 2, 1
    if opts.dataset is None:
        cifar = REPO / "data"
        if opts.data_root is None and (cifar / "cifar-10-batches-py").is_dir():
            opts.dataset, opts.data_root = "cifar10", str(cifar)
        else:
            opts.dataset = "imagefolder"
    if opts.data_root is None:
        folder = Path(tempfile.gettempdir()) / "selab-bench-fake"
        if not (folder / "test").is_dir():
            print(f"no data given: fabricating CIFAR-shaped JPEGs in {folder}")
            fabricate(folder, n_train=10_000, n_test=1_000)
        opts.data_root = str(folder)
    return opts


if __name__ == "__main__":
    sys.exit(Bench(parse()).main())
