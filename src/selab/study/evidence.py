"""Evidence that travels: finished cells exported to a results folder, committed with the code.

``selab study export OUT RESULTS`` copies each finished cell's small files (``metrics.csv``,
``cell.json``, ``status.json`` with commit, host, hardware and times, ``config.yaml``; never
checkpoints or event files) to ``RESULTS/cells/<arm>/seed_<seed>/`` beside a copy of the study file.
``selab study run … --results RESULTS`` counts those cells as done when their identity is the
current command's, and exports the cells it finishes; ``selab study report`` reads a study folder
and a results folder together. So a study can be completed over several machines and sittings, and
anyone can rerun the report from a clone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import runs
from . import cells as cellplan
from .identity import CELL_FILE
from .spec import Study, StudyError

# The small files of a run folder that make up a cell's evidence.
CELL_FILES = (runs.METRICS, CELL_FILE, runs.STATUS, runs.CONFIG)


def cell_roots(folder: str | Path) -> list[Path]:
    """The folders holding cells of a study folder or a results folder: ``folder`` itself
    (``<arm>/seed_<seed>/``) and its exported cells (``cells/<arm>/seed_<seed>/``)."""
    folder = Path(folder)
    return [folder, folder / cellplan.EXPORTED]


def finished(folder: Path) -> bool:
    return folder.is_dir() and runs.has_test_results(folder)


def export_cell(source: Path, target: Path) -> str:
    """Copy one finished cell's files; 'exported', 'unchanged', or raise when ``target`` holds
    other results (committed evidence is never overwritten)."""
    missing = [name for name in (runs.METRICS, CELL_FILE) if not (source / name).is_file()]
    if missing:
        raise StudyError(
            f"{source} has no {' or '.join(missing)}: only cells run by `selab study run` can be "
            "exported"
        )
    names = [name for name in CELL_FILES if (source / name).is_file()]
    if target.exists():
        same = all(
            (target / n).is_file() and (target / n).read_bytes() == (source / n).read_bytes()
            for n in names
        )
        if same:
            return "unchanged"
        raise StudyError(
            f"{target} already holds other results for this cell; export to another folder, or "
            "move it away first"
        )
    temporary = target.with_name(f".{target.name}.partial")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    for name in names:
        shutil.copy2(source / name, temporary / name)
    temporary.rename(target)
    return "exported"


def export(study: Study, out: str | Path, results: str | Path, keep_study_file) -> list[str]:
    """Export every finished cell of the study under ``out`` to ``results``; one line per cell."""
    out, results = Path(out), Path(results)
    keep_study_file(study, results)
    lines = []
    for seed in study.seeds:
        for arm in study.arms:
            source = cellplan.cell_dir(out, arm, seed)
            if not finished(source):
                continue
            what = export_cell(source, cellplan.exported_dir(results, arm, seed))
            label = cellplan.cell_label(arm, seed)
            lines.append(
                f"{what}: {label} -> {cellplan.display_path(cellplan.exported_dir(results, arm, seed))}"
            )
    return lines
