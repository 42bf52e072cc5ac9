"""The package's floors: a module imports only from floors below its own, and no file is long.

Each top-level module or package of ``selab`` (a *room*) stands on one floor. A room may import
rooms on lower floors only, never one on its own floor or above, so the imports form no circles
and a lower room can be read, tested and reused without the ones above it. Imports are read from
the source (``ast``), lazy ones inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "selab"
MAX_LINES = 500

FLOORS = {
    # the ground floor: data, networks and small tools that import nothing of selab
    "checkpoints": 0,
    "data": 0,
    "loggers": 0,
    "models": 0,
    "optim": 0,
    "precision": 0,
    "predict": 0,
    "tables": 0,
    "testing": 0,
    # the LightningModule and the run folder
    "classifier": 1,
    "runs": 1,
    # checkpoint analysis over models, data and runs
    "analysis": 2,
    # what a run shows and what a study runs
    "callbacks": 3,
    "report": 3,
    "study": 3,
    # the command and its entry point
    "cli": 4,
    "__main__": 5,
}


def room_of(path: Path, source: Path = SOURCE) -> str:
    """The top-level module or package a file belongs to (``__init__`` for the package's own)."""
    return path.relative_to(source).with_suffix("").parts[0]


def imported_rooms(path: Path, source: Path = SOURCE) -> set[tuple[str, int]]:
    """The ``selab`` rooms the file ``path`` under ``source`` imports, with each import's line."""
    package = ["selab", *path.relative_to(source).with_suffix("").parts[:-1]]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from . import runs`` names a room; ``from selab import __version__`` the package
            names = [f"{module}.{alias.name}" for alias in node.names] if not node.module else []
            names = names or [module]
        else:
            continue
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "selab" and len(pieces) > 1 and pieces[1] in FLOORS:
                found.add((pieces[1], node.lineno))
    return found


def product_files() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def test_every_room_has_a_floor():
    rooms = {room_of(path) for path in product_files()} - {"__init__"}
    assert rooms == set(FLOORS), "give each new module or package a floor in FLOORS"


@pytest.mark.parametrize("path", product_files(), ids=lambda p: str(p.relative_to(SOURCE)))
def test_no_import_from_a_lower_floor_to_a_higher_one(path):
    room = room_of(path)
    if room == "__init__":
        return  # the package's face: re-exports the classes users import from ``selab``
    upward = sorted(
        f"line {line}: {room} (floor {FLOORS[room]}) imports {other} (floor {FLOORS[other]})"
        for other, line in imported_rooms(path)
        if other != room and FLOORS[other] >= FLOORS[room]
    )
    assert not upward, "\n".join(upward)


def test_the_floor_check_sees_relative_lazy_and_absolute_imports(tmp_path):
    fake = tmp_path / "selab"
    (fake / "runs").mkdir(parents=True)
    (fake / "runs" / "listing.py").write_text(
        "from .. import cli\nfrom ..study.cells import x\nfrom . import status\n"
        "def f():\n    import selab.analysis.gates\n    from selab.tables import y\n"
        "from .. import __version__\n"
    )
    found = imported_rooms(fake / "runs" / "listing.py", source=fake)
    assert found == {("cli", 1), ("study", 2), ("runs", 3), ("analysis", 5), ("tables", 6)}


@pytest.mark.parametrize("path", product_files(), ids=lambda p: str(p.relative_to(SOURCE)))
def test_no_product_file_is_longer_than_500_lines(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(SOURCE)} has {lines} lines; split it by concern"
