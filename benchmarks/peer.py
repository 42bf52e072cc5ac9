"""selab vs airbench94, side by side: seconds per training step of the same recipe.

- selab: ``lightning fit --config configs/cifar10/speedrun94.yaml``, the whole CLI with its
  default callbacks (the progress bar off) and the memory loader, on a synthetic JPEG image folder
  in the real on-disk layout;
- airbench94: a bare loop over the ``airbench`` package's own modules (``Conv``, ``ConvGroup``,
  ``BatchNorm``, ``Flatten``, ``Mul``, built as its ``make_net94`` builds them, on this device in
  float32 instead of ``.half().cuda()``), its whitening initialisation, optimizer groups, triangular
  schedule, summed label-smoothed loss and Lookahead, on batches sliced from one device tensor.

Same batch, precision (fp32, or bf16 autocast as selab's ``bf16-mixed``) and threads; the two
are interleaved, repeat by repeat, and the ratio of the medians is reported per precision.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import tempfile
import time
from pathlib import Path

import torch
from common import SPEEDRUN, Context, Section, fabricate, median, sync, timed_steps
from torch import nn

PRECISIONS = {"fp32": "32", "bf16": "bf16-mixed"}  # ours -> selab's trainer.precision


def import_airbench():
    """The package, or None. Importing it sets ``cudnn.benchmark``: put back as it was."""
    benchmark = torch.backends.cudnn.benchmark
    try:
        import airbench  # noqa: F401
        from airbench import lib_airbench94, utils
    except ImportError:
        return None
    finally:
        torch.backends.cudnn.benchmark = benchmark
    return lib_airbench94, utils


def make_net94(device, widths=None) -> nn.Sequential:
    """airbench94's network from the package's modules, as its ``make_net94`` builds it, kept in
    float32 on ``device`` (its own ends with ``.half().cuda()``)."""
    ab, _ = import_airbench()
    widths = widths or list(ab.hyp["net"]["widths"].values())
    momentum = ab.hyp["net"]["batchnorm_momentum"]
    whiten_width = 2 * 3 * 2**2
    net = nn.Sequential(
        ab.Conv(3, whiten_width, 2, padding=0, bias=True),
        nn.GELU(),
        ab.ConvGroup(whiten_width, widths[0], momentum),
        ab.ConvGroup(widths[0], widths[1], momentum),
        ab.ConvGroup(widths[1], widths[2], momentum),
        nn.MaxPool2d(3),
        ab.Flatten(),
        nn.Linear(widths[2], 10, bias=False),
        ab.Mul(ab.hyp["net"]["scaling_factor"]),
    )
    net[0].weight.requires_grad = False
    return net.to(device).to(memory_format=torch.channels_last)


def airbench_steps(ctx, images, labels, batch, warmup, steps, precision, widths=None):
    """(wall, CPU) seconds per step of airbench94's training step (``airbench.utils.train``'s
    loop body) over ``steps`` steps after ``warmup``; nothing read back but Lookahead's decay."""
    ab, utils = import_airbench()
    hyp, device = ab.hyp["opt"], ctx.device
    torch.backends.cudnn.benchmark = ctx.cuda  # as airbench (on import) and the recipe set it
    torch.manual_seed(0)
    model = make_net94(device, widths)
    utils.init_whitening_conv(model[0], images[:5000])
    momentum = hyp["momentum"]
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    lr = hyp["lr"] / kilostep_scale
    wd = hyp["weight_decay"] * batch / kilostep_scale
    lr_biases = lr * hyp["bias_scaler"]
    norm_biases = [p for k, p in model.named_parameters() if "norm" in k and p.requires_grad]
    other = [p for k, p in model.named_parameters() if "norm" not in k and p.requires_grad]
    optimizer = torch.optim.SGD(
        [dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases),
         dict(params=other, lr=lr, weight_decay=wd / lr)],
        momentum=momentum, nesterov=True,
    )  # fmt: skip
    total = math.ceil(50_000 // batch * hyp["train_epochs"])
    schedule = torch.linspace(0.2, 1, total + 1)  # only the per-step work matters here
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: float(schedule[i]))
    alpha = 0.95**5 * (torch.arange(total + 1) / total) ** 3
    lookahead = utils.LookaheadState(model)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=hyp["label_smoothing"], reduction="none")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    model.train()

    def step(i):
        x, y = images[i * batch : (i + 1) * batch], labels[i * batch : (i + 1) * batch]
        with autocast:
            loss = loss_fn(model(x), y).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if (i + 1) % 5 == 0:
            lookahead.update(model, decay=alpha[i + 1].item())

    return timed_steps(device, warmup, steps, step)


def plan(text: str) -> tuple[int, int, int]:
    """``WARMUP,STEPS,REPEATS`` -> ints; ``0`` or empty: skip."""
    if not text or text == "0":
        return (0, 0, 0)
    warmup, steps, repeats = (int(v) for v in text.split(","))
    return warmup, steps, repeats


def measure(ctx: Context) -> Section:
    o = ctx.opts
    md = ["## selab vs airbench94, side by side", ""]
    if import_airbench() is None:
        why = "not measured: the airbench package is not installed (pip install -e '.[bench]')"
        return Section({"why": why}, [*md, f"{why}.", ""])
    plans = {p: plan(getattr(o, f"peer_{p}")) for p in PRECISIONS}
    plans = {p: v for p, v in plans.items() if v[1]}
    batch = o.peer_batch
    most = max(w + s for w, s, _ in plans.values())
    folder = Path(tempfile.gettempdir()) / f"selab-bench-peer-{batch * most}-jpg"
    root = fabricate(folder, n_train=batch * most, n_test=100, size=32, jpeg=True)
    generator = torch.Generator().manual_seed(0)
    n = max(batch * most, 5000)
    images = torch.randn(n, 3, 32, 32, generator=generator).to(ctx.device)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(10, (n,), generator=generator).to(ctx.device)
    widths = [int(w) for w in o.peer_widths.split(",")] if o.peer_widths else None
    extra = [f"--model.backbone.init_args.widths=[{o.peer_widths}]"] if widths else []
    where = "GPU" if ctx.cuda else "CPU"
    print(f"\n[airbench] {where}, batch {batch}: s/step of lightning fit vs airbench94's loop")
    results = {}
    for precision, (warmup, steps, repeats) in plans.items():
        args = [
            "--config", str(SPEEDRUN), "--data.dataset=imagefolder", f"--data.root={root}",
            f"--data.batch_size={batch}", "--data.loader=memory",
            f"--trainer.precision={PRECISIONS[precision]}", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", f"--trainer.logger.init_args.save_dir={ctx.tmp}",
            *extra,
        ]  # fmt: skip
        peer, ours = [], []
        for repeat in range(repeats):  # interleaved: a change in load hits both alike
            peer.append(
                airbench_steps(ctx, images, labels, batch, warmup, steps, precision, widths)
            )
            ours.append(tuple(ms / 1000 for ms in ctx.lightning_steps(args, warmup, steps)))
            print(f"  {precision} repeat {repeat}: airbench94 {peer[-1][0]:.3f} s "
                  f"({peer[-1][1]:.3f} CPU), lightning fit {ours[-1][0]:.3f} s "
                  f"({ours[-1][1]:.3f} CPU)", flush=True)  # fmt: skip
        results[precision] = {"warmup": warmup, "steps": steps, "repeats": repeats}
        for index, clock in enumerate(("wall", "CPU") if not ctx.cuda else ("wall",)):
            a, s = [v[index] for v in peer], [v[index] for v in ours]
            results[precision][clock] = {
                "airbench_s": a, "selab_s": s, "ratio": median(s) / median(a),
                "ratios": [y / x for x, y in zip(a, s, strict=True)],
            }  # fmt: skip
    threads = torch.get_num_threads()
    md += [
        f"Seconds per training step on the {where} ({threads} torch thread(s)), batch {batch} of "
        "32x32: `lightning fit --config configs/cifar10/speedrun94.yaml` (whole CLI, default "
        "callbacks with the progress bar off, memory loader, a synthetic JPEG image folder) against "
        "a bare loop over the airbench package's own airbench94 modules (built as `make_net94` "
        "builds them, in float32 on this device), with its optimizer groups, schedule, summed "
        "loss and Lookahead, on batches sliced from one tensor. Interleaved repeats, medians; "
        "bf16 is autocast on both sides.", "",
        "| precision | clock | airbench94 bare loop s/step | selab `lightning fit` s/step | "
        "ratio (medians) | ratio per repeat | steps x repeats |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]  # fmt: skip
    for precision, row in results.items():
        for clock in ("wall", "CPU"):
            if clock in row:
                r = row[clock]
                md.append(
                    f"| {precision} | {clock} | {median(r['airbench_s']):.3f} | "
                    f"{median(r['selab_s']):.3f} | **{r['ratio']:.3f}x** | "
                    f"{', '.join(f'{v:.2f}' for v in r['ratios'])} | "
                    f"{row['steps']} after {row['warmup']} x {row['repeats']} |"
                )
    md += ["", "Target: selab within 5% of the peer's bare loop (ratio <= 1.05)."]
    if widths:
        md += ["", f"Network widths {widths} (not the recipe's 64, 256, 256)."]
    return Section(results, [*md, ""])


# -- airbench's own train94 on an image folder ----------------------------------------------------
def write_airbench_tensors(root: Path, target: Path) -> Path:
    """``target/{train,test}.pt`` in the format airbench's ``CifarLoader`` reads (``images``
    uint8 N x 32 x 32 x 3, ``labels``, ``classes``) from the image folders ``root/{train,test}/
    <class>/*``, classes in sorted order (CIFAR-10's own)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from PIL import Image

    def decode(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))

    target.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        if (target / f"{split}.pt").exists():
            continue
        classes = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
        files = [(f, c) for c, name in enumerate(classes) for f in sorted((root / split / name).iterdir())]  # fmt: skip
        with ThreadPoolExecutor(min(16, os.cpu_count() or 1)) as pool:
            images = np.stack(list(pool.map(decode, [f for f, _ in files], chunksize=256)))
        labels = torch.tensor([c for _, c in files])
        torch.save({"images": torch.from_numpy(images), "labels": labels, "classes": classes},
                   target / f"{split}.pt")  # fmt: skip
    return target


class WallEvent:
    """``torch.cuda.Event`` on the host clock, for the CPU smoke run of airbench's GPU loop."""

    def record(self) -> None:
        self.time = time.perf_counter()

    def elapsed_time(self, end: WallEvent) -> float:
        return 1000 * (end.time - self.time)


@contextlib.contextmanager
def airbench_on_cpu(utils):
    """airbench's ``train`` times with CUDA events and loads its test split onto GPU 0: on a CPU
    (smoke runs only) the events read the host clock and the loader stays on the CPU."""
    saved = torch.cuda.Event, torch.cuda.synchronize, utils.CifarLoader
    torch.cuda.Event, torch.cuda.synchronize = (lambda **_: WallEvent()), (lambda *_: None)
    utils.CifarLoader = functools.partial(saved[2], gpu="cpu")
    try:
        yield
    finally:
        torch.cuda.Event, torch.cuda.synchronize, utils.CifarLoader = saved


def train94_seeds(ctx: Context, root: Path, seeds: int, deadline=None, epochs=None, widths=None):
    """airbench94's own ``train94`` on the image folder ``root``, one warm-up run then ``seeds``
    seeded runs: training seconds (whitening initialisation included, evaluation not) and the
    test top-1 with its test-time augmentation (level 2). Returns a Section."""
    ab, utils = import_airbench()
    folder = write_airbench_tensors(root, ctx.tmp / "airbench" / "cifar10")
    gpu = 0 if ctx.cuda else "cpu"
    hyp = ab.hyp
    epochs = epochs or hyp["opt"]["train_epochs"]
    batch = ctx.opts.peer_batch
    make_net = ab.make_net94 if ctx.cuda else functools.partial(make_net94, ctx.device, widths)
    test = utils.CifarLoader(str(folder), train=False, batch_size=2000, gpu=gpu)
    if not ctx.cuda:  # its network is fp16 on a GPU; the CPU smoke run stays in float32
        test.images = test.images.float()
    runs, cwd = [], os.getcwd()
    os.chdir(folder.parent)  # train() loads its test split from ./cifar10
    print(f"\n[airbench train94] on {root}, {seeds} seeds after a warm-up run")
    try:
        for index, seed in enumerate([None, *range(seeds)]):  # None: the warm-up run
            if deadline and time.monotonic() > deadline and runs:
                break
            torch.manual_seed(seed or 0)
            loader = utils.CifarLoader(
                str(folder), train=True, batch_size=batch, aug=hyp["aug"], altflip=True, gpu=gpu
            )
            if not ctx.cuda:
                loader.images = loader.images.float()
            sync(ctx.device)
            start = time.perf_counter()
            with contextlib.nullcontext() if ctx.cuda else airbench_on_cpu(utils):
                model = ab.train94(loader, epochs=epochs, make_net=make_net, verbose=False)
            sync(ctx.device)
            seconds = time.perf_counter() - start
            accuracy = utils.evaluate(model, test, tta_level=hyp["net"]["tta_level"])
            print(f"  seed {seed}: {seconds:.2f} s, acc {accuracy:.4f}", flush=True)
            if index:
                runs.append({"seed": seed, "seconds": seconds, "accuracy": accuracy})
    finally:
        os.chdir(cwd)
    seconds, accuracies = [r["seconds"] for r in runs], [r["accuracy"] for r in runs]
    md = [
        "| runs | training s per seed | mean s | test top-1 per seed (TTA) | mean top-1 | runs >= 94% |",
        "| ---: | --- | ---: | --- | ---: | ---: |",
        f"| {len(runs)} | {', '.join(f'{s:.2f}' for s in seconds)} | {median(seconds):.2f} (median) "
        f"| {', '.join(f'{100 * a:.2f}' for a in accuracies)} | "
        f"{100 * sum(accuracies) / max(len(runs), 1):.2f}% | "
        f"{sum(a >= 0.94 for a in accuracies)}/{len(runs)} |", "",
        f"`airbench.train94` (package {package_version()}), {epochs} epochs, batch {batch}, on "
        f"`{root}` converted to its tensors; seeds from 0 after one warm-up run (of {seeds} "
        "asked); seconds from the call to its return, device-synchronised (whitening "
        "initialisation included; its evaluation left out: `verbose=False`).", "",
    ]  # fmt: skip
    return Section({"runs": runs}, md)


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    with contextlib.suppress(PackageNotFoundError):
        return version("airbench")
    return "?"
