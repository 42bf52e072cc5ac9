"""The code and machine behind a run, as ``status.json`` records them."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any


def hardware() -> str:
    """What ran the command: the CUDA devices, else the processor, its cores and torch's threads."""
    import platform

    import torch

    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        counts = {name: names.count(name) for name in names}
        return ", ".join(f"{n} x {name}" for name, n in counts.items())
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    threads = torch.get_num_threads()
    return (
        f"CPU {model}, {os.cpu_count()} cores, {threads} torch thread{'s' if threads != 1 else ''}"
    )


def provenance() -> dict[str, Any]:
    """The code and machine behind a run: selab's git commit (``+dirty`` with uncommitted changes;
    None outside a checkout), versions, host and hardware."""
    import subprocess

    import lightning
    import torch

    source = Path(__file__).resolve().parents[1]  # the selab package
    commit = None
    try:
        git = ["git", "-C", str(source)]
        head = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode == 0:
            changes = subprocess.run([*git, "status", "--porcelain", "--", "."],
                                     capture_output=True, text=True, timeout=10)  # fmt: skip
            commit = head.stdout.strip() + ("+dirty" if changes.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    from .. import __version__

    return {
        "commit": commit,
        "selab": __version__,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": sys.version.split()[0],
        "host": socket.gethostname(),
        "hardware": hardware(),
    }
