"""Host overhead: ms per step of ``lightning fit`` against a bare PyTorch loop, tiny network.

``lightning fit`` is the selab CLI with every default callback and the memory loader; the bare
loop trains the same network with the same optimizer, schedule and loss on batches sliced from
one device tensor, reading nothing back. Interleaved repeats, medians, their ratio; also the same
run with every callback removed (Lightning's loop and the Classifier alone).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from common import NOT_MEASURED, REPO, Context, Section, fabricate, median, timed_steps
from tiny import TinyNet

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


def tiny_config(ctx: Context) -> Path:
    """The tiny network's config over a PNG folder (written once per size, in the temp dir)."""
    o = ctx.opts
    folder = Path(tempfile.gettempdir()) / f"selab-bench-tiny-{o.tiny_images}x{o.tiny_size}px"
    root = fabricate(folder, n_train=o.tiny_images, n_test=64, size=o.tiny_size)
    path = ctx.tmp / "tiny.yaml"
    path.write_text(TINY_CONFIG.format(
        logs=ctx.tmp, root=root, batch_size=o.tiny_batch, width=o.tiny_width
    ))  # fmt: skip
    return path


def bare_steps(
    ctx, model, optimizer, schedule, images, labels, batch, warmup, steps, smoothing=0.0
):
    """The tuned hand loop: forward, loss, backward, step, schedule step; batches are slices of
    one device tensor; no value is read back. (wall, CPU) ms per step."""
    model.train()

    def step(i):
        x, y = images[i * batch : (i + 1) * batch], labels[i * batch : (i + 1) * batch]
        loss = F.cross_entropy(model(x), y, label_smoothing=smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()

    return tuple(1000 * s for s in timed_steps(ctx.device, warmup, steps, step))


def tiny_bare_steps(ctx: Context, images: torch.Tensor, labels: torch.Tensor, steps: int):
    """The bare loop of the tiny config: same network, optimizer, schedule and loss."""
    import lightning as L

    from selab.optim import WarmupCosineLR

    o = ctx.opts
    L.seed_everything(0, verbose=False)
    model = TinyNet(width=o.tiny_width).to(ctx.device)
    kind = {"fused": True} if ctx.cuda else {"foreach": True}
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, **kind
    )
    schedule = WarmupCosineLR(optimizer, warmup_steps=5, total_steps=len(images) // o.tiny_batch)
    return bare_steps(
        ctx, model, optimizer, schedule, images, labels, o.tiny_batch, o.warmup, steps, 0.1
    )


def resnet20(ctx: Context, batch: int, warmup: int, steps: int, repeats: int) -> Section:
    """``lightning fit --config configs/cifar10/resnet20.yaml`` (no augmentation, fp32) against
    the bare loop of the same network, SGD and MultiStepLR: ms per step, ratio of medians."""
    from selab import models

    n = batch * (warmup + steps)
    root = fabricate(ctx.tmp / f"resnet20-{n}", n_train=n, n_test=64, size=32)
    args = [
        "--config", str(REPO / "configs/cifar10/resnet20.yaml"), "--data.dataset=imagefolder",
        f"--data.root={root}", f"--data.batch_size={batch}", "--data.loader=memory",
        "--data.augment=none", "--data.val_size=0", "--model.channels_last=false",
        "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_progress_bar=false", f"--trainer.logger.init_args.save_dir={ctx.tmp}",
    ]  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, 32, 32, generator=generator).to(ctx.device)
    labels = torch.randint(10, (n,), generator=generator).to(ctx.device)
    print(f"\n[overhead] ResNet-20, batch {batch}: ms/step")
    torch.backends.cudnn.benchmark = ctx.cuda  # as selab sets it for its runs
    bare, light = [], []
    for repeat in range(repeats):
        torch.manual_seed(0)
        model = models.resnet20().to(ctx.device)
        kind = {"fused": True} if ctx.cuda else {"foreach": True}
        optimizer = torch.optim.SGD(
            model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, **kind
        )
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, [82, 123], 0.1)
        bare.append(
            bare_steps(ctx, model, optimizer, schedule, images, labels, batch, warmup, steps)
        )
        light.append(ctx.lightning_steps(args, warmup, steps))
        print(f"  repeat {repeat}: bare {bare[-1][0]:.3f} ms, lightning fit {light[-1][0]:.3f} ms")
    b, lt = [v[0] for v in bare], [v[0] for v in light]
    result = {"bare_ms": b, "lightning_ms": lt, "ratio": median(lt) / median(b)}
    md = [
        f"ResNet-20 (`configs/cifar10/resnet20.yaml`, fp32, no augmentation), batch {batch}, "
        f"{steps} steps after {warmup}, {repeats} interleaved repeats, wall ms/step: bare loop "
        f"{median(b):.2f}, `lightning fit` {median(lt):.2f}, ratio **{result['ratio']:.3f}x** "
        f"(per repeat {', '.join(f'{y / x:.2f}' for x, y in zip(b, lt, strict=True))}).", "",
    ]  # fmt: skip
    return Section(result, md)


def measure(ctx: Context) -> Section:
    o = ctx.opts
    print(f"\n[overhead] tiny network, batch {o.tiny_batch} of {o.tiny_size}px: ms/step")
    args = ["--config", str(tiny_config(ctx))]
    generator = torch.Generator().manual_seed(0)
    n = (o.warmup + o.steps) * o.tiny_batch
    images = torch.randn(n, 3, o.tiny_size, o.tiny_size, generator=generator).to(ctx.device)
    labels = torch.randint(10, (n,), generator=generator).to(ctx.device)
    bare, light, loop = [], [], []  # (wall, CPU) ms per step
    for repeat in range(o.repeats):  # interleaved: a change in load hits all alike
        bare.append(tiny_bare_steps(ctx, images, labels, o.steps))
        light.append(ctx.lightning_steps(args, o.warmup, o.steps))
        loop.append(ctx.lightning_steps(args, o.warmup, o.steps, bare=True))
        print(f"  repeat {repeat}: bare {bare[-1][0]:.3f} ms ({bare[-1][1]:.3f} CPU), "
              f"lightning fit {light[-1][0]:.3f} ms ({light[-1][1]:.3f} CPU), without "
              f"callbacks {loop[-1][0]:.3f} ms ({loop[-1][1]:.3f} CPU)", flush=True)  # fmt: skip
    summary = {}
    for index, clock in enumerate(("wall", "CPU") if not ctx.cuda else ("wall",)):
        b, lt, lp = ([v[index] for v in values] for values in (bare, light, loop))
        summary[clock] = {
            "bare_ms": b, "lightning_ms": lt, "no_callbacks_ms": lp,
            "ratio": median(lt) / median(b), "ratio_no_callbacks": median(lp) / median(b),
            "ratios": [y / x for x, y in zip(b, lt, strict=True)],
        }  # fmt: skip
    where = "GPU" if ctx.cuda else "CPU"
    md = [
        f"## Host overhead on the {where}: `lightning fit` vs a bare PyTorch loop", "",
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
        md.append(
            f"| {clock} | {median(row['bare_ms']):.3f} | {median(row['lightning_ms']):.3f} | "
            f"**{row['ratio']:.3f}x** | {', '.join(f'{r:.2f}' for r in row['ratios'])} | "
            f"{median(row['no_callbacks_ms']):.3f} ({row['ratio_no_callbacks']:.3f}x) |"
        )
    md += ["", "Target <= 1.15x. \"Without callbacks\": the same run with every callback removed "
               "(Lightning's loop and the Classifier alone); the difference is what the callbacks "
               "cost (Lightning calls every hook of every callback, 6 per step). On a CPU the "
               "process CPU time is the steadier clock on a shared machine (it leaves out time "
               "spent waiting for a core)."]  # fmt: skip
    if not ctx.cuda:
        md += ["", f"GPU: {NOT_MEASURED}."]
    return Section(summary, [*md, ""])
