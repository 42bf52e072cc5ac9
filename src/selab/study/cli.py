"""``selab study run STUDY.yaml`` and ``selab study report DIR``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from .. import runs
from . import cells as cellplan
from .evidence import export
from .launchers import LocalLauncher, RayLauncher, SlurmLauncher
from .results import write_report
from .spec import STUDY_FILE, Study, StudyError, load_study, parse_study, read_yaml

USAGE_EXAMPLES = """
examples:
  selab study run configs/studies/vgg_small/study.yaml
  selab study run configs/studies/vgg_small/study.yaml --set data.dataset=imagefolder data.root=/tmp/cifarjpg
  selab study run study.yaml --parallel 2 -- --trainer.max_epochs 1
  selab study run study.yaml --launcher ray --ray-address auto --gpus-per-cell 1
  selab study run study.yaml --results results/vgg_small    # count and add to committed cells
  selab study export logs/studies/vgg_small results/vgg_small
  selab study report logs/studies/vgg_small
  selab study report results/vgg_small
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selab study",
        description="Arms x seeds of ordinary selab runs, and their statistics.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,report,export}")
    run = commands.add_parser(
        "run",
        help="run every missing cell (fit, then test on last.ckpt), then report",
        description="Run every missing (arm, seed) cell: `selab fit`, then `selab test` on its "
        "last.ckpt, each a subprocess. Finished cells are skipped, interrupted ones resume from "
        "last.ckpt. Arguments after `--` are appended to every cell's commands. Each cell records "
        "what it ran with (cell.json: configs' content, overrides, --set values, arguments after "
        "--); a cell recorded with other arguments is never reused: the run stops and names it.",
    )
    run.add_argument("study", help="the study file (study.yaml)")
    run.add_argument("--out", help="study folder (default: the file's 'out', logs/studies/<name>)")
    run.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="settings",
                     help="override for every cell, e.g. data.root=/tmp/cifarjpg data.dataset=imagefolder")  # fmt: skip
    run.add_argument("--arms", nargs="+", help="run only these arms")
    run.add_argument("--seeds", nargs="+", type=int, help="run only these seeds")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failed cell")
    run.add_argument("--dry-run", action="store_true", help="print what would run and stop")
    run.add_argument("--rerun", action="store_true",
                     help="run again the cells recorded with other arguments; their folders are "
                     "moved to <out>/replaced/, not deleted")  # fmt: skip
    run.add_argument("--results", metavar="DIR",
                     help="a results folder (selab study export): its cells with the same "
                     "arguments count as done, and the cells finished here are exported to it")  # fmt: skip
    run.add_argument("--launcher", choices=["local", "ray", "slurm"], default="local",
                     help="where cells run: here (local, default), on a Ray cluster, or as SLURM "
                     "jobs through submitit")  # fmt: skip
    run.add_argument("--parallel", type=int, default=1, metavar="N",
                     help="local: N cells at a time, GPUs (or CPU threads) split between them")  # fmt: skip
    run.add_argument("--ray-address", help="Ray cluster to submit to (default: start one here)")
    run.add_argument("--cpus-per-cell", type=float, default=1, help="ray/slurm: CPUs per cell")
    run.add_argument("--gpus-per-cell", type=float,
                     help="ray/slurm: GPUs per cell (default: 1 where the cluster has GPUs, else 0)")  # fmt: skip
    run.add_argument("--slurm", nargs="+", default=[], metavar="KEY=VALUE",
                     help="submitit parameters, e.g. timeout_min=600 slurm_partition=gpu")  # fmt: skip
    run.add_argument("--submitit-cluster", default="slurm", choices=["slurm", "local"],
                     help="'local' runs the SLURM jobs as local processes (submitit's local executor)")  # fmt: skip
    report = commands.add_parser(
        "report",
        help="tables and figure of a study folder",
        description="Write cells.csv, results.csv, results.md and results.png into a study folder.",
    )
    report.add_argument("folder", help="the study folder (holding study.yaml and <arm>/seed_<s>/)")
    report.add_argument("--study", help="study file to use when the folder has no study.yaml")
    report.add_argument("--results", nargs="+", default=[], metavar="DIR",
                        help="results folders whose exported cells join the report")  # fmt: skip
    export = commands.add_parser(
        "export",
        help="copy finished cells' small files to a results folder (to commit)",
        description="Copy each finished cell's metrics.csv, cell.json, status.json and config.yaml "
        "(no checkpoints) to RESULTS/cells/<arm>/seed_<seed>/ with the study file, then write the "
        "report there. Cells already exported are left as they are; other results for the same "
        "cell are never overwritten.",
    )
    export.add_argument("folder", help="the study folder (holding study.yaml and <arm>/seed_<s>/)")
    export.add_argument("results", help="the results folder, e.g. results/vgg_small")
    return parser


def _settings(values: list[str]) -> list[str]:
    for value in values:
        key, sep, _ = value.partition("=")
        if not sep or not key or key.startswith("-"):
            raise StudyError(f"--set {value!r}: write KEY=VALUE, e.g. data.root=/tmp/cifarjpg")
    return values


def _parameters(values: list[str]) -> dict[str, Any]:
    parameters = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise StudyError(f"--slurm {value!r}: write KEY=VALUE, e.g. timeout_min=600")
        parameters[key] = yaml.safe_load(text)
    return parameters


def keep_study_file(study: Study, folder: Path) -> Path:
    """Copy the study file to ``<folder>/study.yaml``; an existing one must say the same."""
    target = folder / STUDY_FILE
    if target.exists():
        existing = read_yaml(target)
        if existing != study.raw:
            raise StudyError(
                f"{target} holds a different study than {study.source or study.path}; keep "
                f"both: choose another folder for this one, or move {folder} away"
            )
        return target
    folder.mkdir(parents=True, exist_ok=True)
    source = study.source or study.path
    text = Path(source).read_text(encoding="utf-8") if source else yaml.safe_dump(study.raw)
    return runs.atomic_write_text(target, text)


def _subset(study: Study, arms: list[str] | None, seeds: list[int] | None):
    for arm in arms or []:
        if arm not in study.arms:
            raise StudyError(f"--arms {arm}: no such arm; arms: {', '.join(study.arms)}")
    for seed in seeds or []:
        if seed not in study.seeds:
            raise StudyError(f"--seeds {seed}: not a seed of the study; seeds: {study.seeds}")
    return arms, seeds


def _launcher(args, out: Path):
    if args.launcher != "local" and args.parallel != 1:
        raise StudyError(
            "--parallel is for the local launcher; Ray and SLURM run cells as resources allow"
        )
    if args.launcher == "ray":
        return RayLauncher(args.ray_address, args.cpus_per_cell, args.gpus_per_cell)
    if args.launcher == "slurm":
        gpus = int(args.gpus_per_cell or 0)
        return SlurmLauncher(
            out / "submitit",
            int(args.cpus_per_cell),
            gpus,
            _parameters(args.slurm),
            args.submitit_cluster,
        )
    return LocalLauncher(args.parallel)


def _resolve_conflicts(plan, out: Path, rerun: bool) -> None:
    """Stop at the first cell recorded with other arguments, or, with ``--rerun``, move each
    such cell aside so that it runs anew."""
    for cell in plan:
        if cell.conflict is None:
            continue
        where = f"{cell.label} in {cellplan.display_path(out)}"
        if cell.action == cellplan.RUNNING:
            raise StudyError(f"{where} is running with other arguments: {cell.conflict}")
        if not rerun:
            raise StudyError(
                f"{where} cannot be reused: {cell.conflict}; pass another --out, or --rerun to "
                f"run it again (the old cell is moved to {cellplan.display_path(out / 'replaced')})"
            )
        moved = cellplan.replace(cell, out)
        print(f"{cell.label}: ran with other arguments, moved to {cellplan.display_path(moved)}")


def _move_stale(plan, out: Path) -> None:
    """Move aside what fits stopped before their first checkpoint left in cells that start anew."""
    for cell in plan:
        if cellplan.stale(cell):
            moved = cellplan.replace(cell, out)
            print(f"{cell.label}: files of a fit stopped before its first checkpoint moved to "
                  f"{cellplan.display_path(moved)}")  # fmt: skip


NOTES = {
    cellplan.DONE: "finished, skipped",
    cellplan.RUNNING: "running elsewhere, skipped",
    cellplan.NEW: "new",
    cellplan.RESUME: "resuming from last.ckpt",
    cellplan.TEST: "fit finished, testing",
    cellplan.COMMITTED: "finished in the results folder, skipped",
}


def run_study(args, extra: list[str]) -> int:
    study = load_study(args.study)
    out = Path(args.out).expanduser() if args.out else study.out
    results = Path(args.results).expanduser() if args.results else None
    settings = _settings(args.settings)
    arms, seeds = _subset(study, args.arms, args.seeds)
    launcher = _launcher(args, out)
    here = args.launcher == "local"  # ray and slurm decide the precision where the cells run
    plan = cellplan.plan(study, out, settings, extra, arms, seeds, results, here)
    if not args.rerun:
        _resolve_conflicts(plan, out, rerun=False)  # stops at the first conflict
    if not args.dry_run:
        keep_study_file(study, out)
        _resolve_conflicts(plan, out, rerun=True)
        _move_stale(plan, out)
    todo = [c for c in plan if c.steps or c.conflict]
    print(f"study {study.name}: {len(plan)} cells in {cellplan.display_path(out)}, "
          f"{len(todo)} to run ({launcher.describe()})")  # fmt: skip
    for index, cell in enumerate(plan, 1):
        note = NOTES[cell.action]
        if cellplan.stale(cell):  # a dry run: left in place
            note = "new; the files of a fit stopped before its first checkpoint go to replaced/"
        if cell.conflict:
            note = f"ran with other arguments ({cell.conflict}): --rerun moves it aside and runs it"
        print(f"[{index}/{len(plan)}] {cell.label}: {note}")
        for _, argv in cell.steps:
            print(f"    {cellplan.command_line(argv)}")
    if args.dry_run:
        return 0
    failures: list[dict] = []

    def on_result(result: dict) -> None:
        label = cellplan.cell_label(result["arm"], result["seed"])
        if result["ok"]:
            print(f"done: {label} ({result.get('seconds', 0):.0f} s)")
        else:
            failures.append(result)
            what = (
                result.get("error") or f"{result['step']} exited with status {result['returncode']}"
            )
            print(f"FAILED: {label}: {what}; see {cellplan.display_path(result['log'])}")

    launcher.run([c.spec() for c in plan if c.steps], args.fail_fast, on_result)
    if results is not None:
        for line in export(study, out, results, keep_study_file):
            print(line)
    paths = write_report(study, out, [results] if results else [])
    print(Path(paths["markdown"]).read_text(encoding="utf-8"))
    print("written: " + ", ".join(cellplan.display_path(p) for p in paths.values()))
    if failures:
        print(f"{len(failures)} cell(s) failed: " + ", ".join(
            f"{cellplan.cell_label(r['arm'], r['seed'])} ({cellplan.display_path(r['log'])})"
            for r in failures
        ))  # fmt: skip
        return 1
    return 0


def _study_of_folder(folder: Path, study_file: str | None) -> Study:
    """The study of a study or results folder: ``--study FILE`` (kept there), else its copy."""
    if not folder.is_dir():
        raise StudyError(
            f"{folder} is not a folder; pass a study folder (e.g. logs/studies/<name>)"
        )
    if study_file:
        study = load_study(study_file, check_files=False)
        keep_study_file(study, folder)
        return study
    if (folder / STUDY_FILE).is_file():
        path = folder / STUDY_FILE
        study = parse_study(
            read_yaml(path), None, check_files=False, where=str(path), default_name=folder.name
        )
        study.source = path
        return study
    raise StudyError(f"{folder} has no {STUDY_FILE}; pass the study file with --study FILE")


def export_study(args) -> int:
    folder = Path(args.folder).expanduser()
    study = _study_of_folder(folder, None)
    results = Path(args.results).expanduser()
    lines = export(study, folder, results, keep_study_file)
    for line in lines:
        print(line)
    if not lines:
        print(f"no finished cell in {cellplan.display_path(folder)}: nothing exported")
    paths = write_report(study, results)
    print("written: " + ", ".join(cellplan.display_path(p) for p in paths.values()))
    return 0


def report_study(args) -> int:
    folder = Path(args.folder).expanduser()
    study = _study_of_folder(folder, args.study)
    paths = write_report(study, folder, [Path(r).expanduser() for r in args.results])
    print(Path(paths["markdown"]).read_text(encoding="utf-8"))
    print("written: " + ", ".join(cellplan.display_path(p) for p in paths.values()))
    return 0


def positional_after_settings(argv: list[str]) -> list[str]:
    """``--set K=V ... study.yaml``: argparse would take the study file as one more setting; the
    first word after ``--set`` without ``=`` is moved before it (settings always have one)."""
    argv = list(argv)
    if "--set" not in argv:
        return argv
    start = argv.index("--set") + 1
    end = start
    while end < len(argv) and "=" in argv[end] and not argv[end].startswith("-"):
        end += 1
    if end < len(argv) and not argv[end].startswith("-"):
        argv.insert(start - 1, argv.pop(end))
    return argv


def main(argv: list[str] | None = None) -> int:
    """``selab study ...``; returns the exit status (0 ok, 1 a cell failed, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        index = argv.index("--")
        argv, extra = argv[:index], argv[index + 1 :]
    args = _parser().parse_args(positional_after_settings(argv))
    try:
        if args.command == "run":
            return run_study(args, extra)
        if args.command == "export":
            return export_study(args)
        return report_study(args)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
