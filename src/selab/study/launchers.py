"""Where a study's cells run: here one after another (default), here N at a time, on a Ray
cluster, or on SLURM through submitit. Every launcher calls :func:`~selab.study.cells.run_cell`
with the same spec, so the run folders come out the same whichever ran them.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from .cells import cell_label, run_cell
from .spec import StudyError

Result = dict[str, Any]
OnResult = Callable[[Result], None]


def _failed(spec: dict[str, Any], error: BaseException) -> Result:
    """A cell whose launcher could not run it (the task or job itself crashed)."""
    return {"arm": spec["arm"], "seed": spec["seed"], "folder": spec["folder"], "ok": False,
            "step": "launch", "returncode": None, "log": str(Path(spec["folder"]) / "run.log"),
            "error": f"{type(error).__name__}: {error}"}  # fmt: skip


def visible_gpus() -> list[str]:
    """CUDA devices this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else all torch sees."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def slot_environments(parallel: int, gpus: list[str], cores: int) -> list[dict[str, str]]:
    """The environment of each of ``parallel`` slots: the GPUs split between them (a GPU shared
    round-robin when there are fewer GPUs than slots), or the CPU cores as torch threads."""
    if parallel <= 1:
        return [{}]
    if gpus:
        if len(gpus) >= parallel:
            share = len(gpus) // parallel
            groups = [gpus[i * share : (i + 1) * share] for i in range(parallel)]
        else:
            groups = [[gpus[i % len(gpus)]] for i in range(parallel)]
        return [{"CUDA_VISIBLE_DEVICES": ",".join(group)} for group in groups]
    threads = str(max(1, cores // parallel))
    return [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} for _ in range(parallel)]


class LocalLauncher:
    """Cells on this machine: one after another, or ``parallel`` at a time (one process each)."""

    name = "local"

    def __init__(self, parallel: int = 1) -> None:
        if parallel < 1:
            raise StudyError(f"--parallel must be at least 1, got {parallel}")
        self.parallel = parallel

    def describe(self) -> str:
        return (
            "local, one cell at a time"
            if self.parallel == 1
            else f"local, {self.parallel} cells at a time"
        )

    def run(self, specs: Iterable[dict], fail_fast: bool, on_result: OnResult) -> None:
        specs = list(specs)
        if self.parallel == 1:
            for spec in specs:
                result = run_cell(spec)
                on_result(result)
                if fail_fast and not result["ok"]:
                    return
            return
        cores = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
        gpus = visible_gpus()
        slots: queue.Queue[dict[str, str]] = queue.Queue()
        for env in slot_environments(self.parallel, gpus, cores):
            slots.put(env)
        stop = threading.Event()

        def work(spec: dict) -> Result | None:
            if stop.is_set():
                return None
            env = slots.get()
            try:
                return run_cell({**spec, "env": {**spec.get("env", {}), **env}}, stop)
            finally:
                slots.put(env)

        with ThreadPoolExecutor(self.parallel) as pool:
            futures = [pool.submit(work, spec) for spec in specs]
            try:
                for future in as_completed(futures):
                    result = future.result()
                    if result is None:
                        continue
                    on_result(result)
                    if fail_fast and not result["ok"]:
                        stop.set()
            except BaseException:
                stop.set()
                raise


def _import_extra(module: str, extra: str):
    try:
        return __import__(module)
    except ImportError:
        raise StudyError(
            f"--launcher {extra} needs the '{extra}' extra: pip install -e '.[{extra}]' "
            f"(or pip install 'selab[{extra}]')"
        ) from None


class RayLauncher:
    """Each cell a Ray task asking for ``cpus`` CPUs and ``gpus`` GPUs, on the cluster at
    ``address`` (``ray.init(address=...)``), or a Ray instance started here when none is given.

    The cluster's nodes must see the study folder and the configs at the same paths (a shared
    file system), and have selab installed.
    """

    name = "ray"

    def __init__(self, address: str | None = None, cpus: float = 1, gpus: float | None = None):
        self.address, self.cpus, self.gpus = address, cpus, gpus
        self.ray = _import_extra("ray", "ray")

    def describe(self) -> str:
        return f"ray ({self.address or 'local instance'}), {self.cpus} CPU and {self.gpus} GPU per cell"

    def run(self, specs: Iterable[dict], fail_fast: bool, on_result: OnResult) -> None:
        ray = self.ray
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, log_to_driver=False)
        try:
            if self.gpus is None:  # one GPU per cell on a cluster that has them
                self.gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
            task = ray.remote(run_cell).options(
                num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0
            )
            pending = {task.remote(spec): spec for spec in specs}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                spec = pending.pop(done[0])
                try:
                    result = ray.get(done[0])
                except Exception as error:  # the task crashed (worker died, cancelled, ...)
                    result = _failed(spec, error)
                on_result(result)
                if fail_fast and not result["ok"]:
                    for ref in pending:
                        ray.cancel(ref)
                    return
        finally:
            if started_here:
                ray.shutdown()


class SlurmLauncher:
    """Each cell a SLURM job submitted through submitit (``AutoExecutor``), its files in
    ``<out>/submitit``. ``parameters`` go to ``executor.update_parameters`` (e.g.
    ``timeout_min=600``, ``slurm_partition=gpu``); ``cluster="local"`` runs the same jobs as local
    processes (submitit's local executor), to try a setup without SLURM.
    """

    name = "slurm"

    def __init__(
        self,
        folder: Path,
        cpus: int = 1,
        gpus: int = 0,
        parameters: dict[str, Any] | None = None,
        cluster: str = "slurm",
    ) -> None:
        self.submitit = _import_extra("submitit", "slurm")
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise StudyError(
                "--launcher slurm: no SLURM here (sbatch not found); run on a login node, or try "
                "the jobs locally with --submitit-cluster local"
            )
        self.folder, self.cluster = folder, cluster
        self.parameters = {"cpus_per_task": cpus, "gpus_per_node": gpus, **(parameters or {})}
        self._check_parameters()

    def _check_parameters(self) -> None:
        """submitit's own check of every parameter, before anything is written (its debug
        executor, unlike the others, creates no folder)."""
        executor = self.submitit.AutoExecutor(folder=str(self.folder), cluster="debug")
        try:
            executor.update_parameters(**self.parameters)
        except (ValueError, TypeError, NameError, AssertionError) as error:
            shared = ", ".join(self.submitit.AutoExecutor._typed_parameters())
            raise StudyError(
                f"--slurm: {str(error).splitlines()[0]} submitit's shared parameters are {shared}; "
                "SLURM's own take the slurm_ prefix (e.g. slurm_partition)"
            ) from None

    def describe(self) -> str:
        return f"submitit ({self.cluster}), jobs in {self.folder}"

    def run(self, specs: Iterable[dict], fail_fast: bool, on_result: OnResult) -> None:
        executor = self.submitit.AutoExecutor(folder=str(self.folder), cluster=self.cluster)
        executor.update_parameters(**self.parameters)
        jobs = {}
        for spec in specs:
            executor.update_parameters(name=cell_label(spec["arm"], spec["seed"]).replace("/", "-"))
            jobs[executor.submit(run_cell, spec)] = spec
        for job in self.submitit.helpers.as_completed(list(jobs), poll_frequency=1):
            spec = jobs.pop(job)
            try:
                result = job.result()
            except Exception as error:  # the job failed outside run_cell (time limit, node, ...)
                result = _failed(spec, error)
            on_result(result)
            if fail_fast and not result["ok"]:
                for other in jobs:
                    other.cancel(check=False)
                return
