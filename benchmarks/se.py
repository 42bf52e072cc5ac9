"""Training images/s of SE-ResNet-20/56/110 and ResNet-18 (CIFAR stem) with and without SE.

Bare training steps (forward, backward, SGD) on one synthetic device batch; the two variants of a
network are timed in interleaved windows, medians, and the SE overhead in step time. On a GPU in
bf16 autocast and channels_last, on a CPU in fp32.
"""

from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F
from common import NOT_MEASURED, Context, Section, median, sync

from selab import models

NETWORKS = {
    "ResNet-20": lambda attention: models.resnet20(attention=attention),
    "ResNet-56": lambda attention: models.resnet56(attention=attention),
    "ResNet-110": lambda attention: models.resnet110(attention=attention),
    "ResNet-18 (CIFAR stem)": lambda attention: models.resnet18(stem="cifar", attention=attention),
}


def measure(ctx: Context) -> Section:
    o, device, fast = ctx.opts, ctx.device, ctx.cuda
    networks = {name: NETWORKS[name] for name in (o.se_networks or NETWORKS)}
    print(f"\n[se] images/s of a training step, batch {o.batch_size}, with and without SE")
    images = torch.randn(o.batch_size, 3, 32, 32, device=device)
    labels = torch.randint(10, (o.batch_size,), device=device)
    if fast:
        images = images.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if fast else contextlib.nullcontext()

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

    rows, seconds_of = [], {}
    for name, build in networks.items():
        nets = {}
        for attention in ("none", "se"):
            torch.manual_seed(0)
            net = build(attention).to(device)
            if fast:
                net = net.to(memory_format=torch.channels_last)
            kind = {"fused": True} if fast else {"foreach": True}
            nets[attention] = (
                net,
                torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, **kind),
            )
        for net, optimizer in nets.values():
            window(net, optimizer, o.se_warmup)
        seconds = {"none": [], "se": []}
        for _ in range(o.se_repeats):
            for attention, (net, optimizer) in nets.items():
                seconds[attention].append(window(net, optimizer, o.se_steps))
        none, se = median(seconds["none"]), median(seconds["se"])
        overhead = 100 * (se / none - 1)
        rows.append((name, o.batch_size / none, o.batch_size / se, overhead))
        seconds_of[name] = {**seconds, "overhead_percent": overhead}
        print(f"  {name}: {o.batch_size / none:.1f} vs {o.batch_size / se:.1f} img/s, "
              f"SE {overhead:+.1f}%", flush=True)  # fmt: skip
    where = "GPU, bf16 autocast, channels_last" if fast else "CPU, fp32"
    md = [
        f"## Training images/s with and without SE ({where})", "",
        f"Bare training steps (forward, backward, SGD), batch {o.batch_size} of 32x32, "
        f"{o.se_steps} steps per window after {o.se_warmup}, {o.se_repeats} interleaved repeats, "
        "medians. SE: r = 16, at least 8 hidden units, end of each residual branch.", "",
        "| network | images/s without SE | with SE | SE overhead (step time) |",
        "| --- | ---: | ---: | ---: |",
    ]  # fmt: skip
    md += [f"| {n} | {plain:.1f} | {se:.1f} | {over:+.1f}% |" for n, plain, se, over in rows]
    md += ["", "The SE paper reports about +10% training step time on GPUs."]
    if not fast:
        md += ["", f"GPU: {NOT_MEASURED}."]
    return Section(seconds_of, [*md, ""])
