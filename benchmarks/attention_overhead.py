"""What each attention variant costs one backbone: parameters added and training-step time.

For every registered variant: parameters added to the backbone without attention, and the median
forward+backward time of one batch relative to ``se``. Variants are timed round-robin (one step of
each per repeat) so a change in machine load hits them all alike. On CPU the process's CPU time is
reported too: it does not count time the threads spent descheduled, so it is the steadier figure on
a shared machine.

    PYTHONPATH=src python benchmarks/attention_overhead.py            # ResNet-20, batch 128, CPU
    PYTHONPATH=src python benchmarks/attention_overhead.py --device cuda --repeats 20

Not a test: timings depend on the machine and its load. On a busy machine use ``--threads 1``:
with more threads than free cores, OpenMP threads wait on each other and the times mean little.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from selab import models


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def train_step_seconds(model, images, labels) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one forward+backward step."""
    model.zero_grad(set_to_none=True)
    if images.is_cuda:
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    F.cross_entropy(model(images), labels).backward()
    if images.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet20")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32, help="image side (CIFAR: 32)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", nargs="*", default=models.list_attention())
    args = parser.parse_args()
    if "se" not in args.variants:
        parser.error("the times are relative to se: include it in --variants")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    baseline = n_params(models.build_backbone(args.backbone))
    nets = {
        name: models.build_backbone(args.backbone, attention=name).to(device).train()
        for name in args.variants
    }
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    labels = torch.randint(0, 10, (args.batch,), device=device)

    for model in nets.values():  # warm-up: allocator, kernel selection
        train_step_seconds(model, images, labels)
    times = {name: [] for name in nets}
    for _ in range(args.repeats):
        for name, model in nets.items():
            times[name].append(train_step_seconds(model, images, labels))

    wall = {name: statistics.median(t[0] for t in ts) for name, ts in times.items()}
    cpu = {name: statistics.median(t[1] for t in ts) for name, ts in times.items()}
    print(
        f"{args.backbone}, batch {args.batch} x 3 x {args.size} x {args.size}, {device}"
        f"{f', {args.threads} threads' if device.type == 'cpu' else ''}, "
        f"median of {args.repeats} forward+backward steps"
    )
    print(
        "| attention | params added | % of backbone | wall ms | wall vs se | CPU ms | CPU vs se |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, model in nets.items():
        added = n_params(model) - baseline
        print(
            f"| {name} | {added:,} | {100 * added / baseline:.2f} "
            f"| {1e3 * wall[name]:.0f} | {wall[name] / wall['se']:.2f} "
            f"| {1e3 * cpu[name]:.0f} | {cpu[name] / cpu['se']:.2f} |"
        )


if __name__ == "__main__":
    main()
