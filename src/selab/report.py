"""Run a notebook with parameters and render it to HTML: ``make report RUN=logs/...``.

    python -m selab.report logs/cifar10/resnet20+se/version_0            # -> <run>/report.html
    python -m selab.report path/to/x.ckpt -o x.html -p data_root=~/data/cifar10-jpg

Parameters are injected papermill-style: a cell tagged ``injected-parameters`` is inserted after
the notebook's cell tagged ``parameters``, so the defaults stay visible above the overrides.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

# The repository's notebook, wherever the command runs from (selab is installed editable from it).
ANALYZE_NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "analyze_checkpoint.ipynb"


def inject_parameters(notebook, parameters: dict[str, Any]):
    """Insert ``name = repr(value)`` assignments after the ``parameters`` cell (in place)."""
    import nbformat

    index = next(
        (
            i
            for i, cell in enumerate(notebook.cells)
            if "parameters" in cell.get("metadata", {}).get("tags", [])
        ),
        None,
    )
    if index is None:
        raise ValueError("the notebook has no cell tagged 'parameters'")
    notebook.cells = [
        c
        for c in notebook.cells
        if "injected-parameters" not in c.get("metadata", {}).get("tags", [])
    ]
    source = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(index + 1, cell)
    return notebook


def execute_notebook(
    path: str | Path,
    parameters: dict[str, Any] | None = None,
    cwd: str | Path | None = None,
    timeout: int = 1800,
    kernel_name: str = "python3",
):
    """Execute a notebook (with ``parameters`` injected) in ``cwd`` and return it with outputs."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(str(path), as_version=4)
    if parameters:
        inject_parameters(notebook, parameters)
    from traitlets.config import Config

    # Local sockets (IPC) rather than unencrypted TCP ports, which ipykernel warns about.
    with tempfile.TemporaryDirectory(prefix="selab-kernel-") as sockets:
        sockets_config = {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}
        client = NotebookClient(
            notebook,
            config=Config({"KernelManager": sockets_config}),
            timeout=timeout,
            kernel_name=kernel_name,
            resources={"metadata": {"path": str(cwd or os.getcwd())}},
        )
        client.execute()
    return notebook


def to_html(notebook, output: str | Path) -> Path:
    """Render an executed notebook to ``output`` (written whole or not at all)."""
    from nbconvert import HTMLExporter

    from .runs import atomic_write_text

    body, _ = HTMLExporter().from_notebook_node(notebook)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(output, body)


def default_output(run: str | Path) -> Path:
    """``<run>/report.html`` for a run folder, ``<name>-report.html`` beside a checkpoint."""
    from .runs import REPORT

    run = Path(run)
    return run / REPORT if run.is_dir() else run.with_name(f"{run.stem}-{REPORT}")


def report(
    run: str | Path,
    output: str | Path | None = None,
    notebook: str | Path = ANALYZE_NOTEBOOK,
    **parameters: Any,
) -> Path:
    """Render the checkpoint-analysis notebook for a run folder or checkpoint to HTML."""
    from .analysis import resolve_checkpoint

    run = Path(run).expanduser().resolve()
    resolve_checkpoint(run)  # a missing run or checkpoint fails here, in one line
    if not Path(notebook).is_file():
        raise FileNotFoundError(f"notebook {notebook} not found; pass --notebook PATH")
    executed = execute_notebook(notebook, {"checkpoint": str(run), **parameters})
    return to_html(executed, output or default_output(run))


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m selab.report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("run", help="a run folder (logs/<experiment>/version_N) or a .ckpt file")
    parser.add_argument("-o", "--output", help="the HTML file (default: <run>/report.html)")
    parser.add_argument("--notebook", default=str(ANALYZE_NOTEBOOK))
    parser.add_argument(
        "-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
        help="another notebook parameter, e.g. data_root=data/ or batch_size=512",
    )  # fmt: skip
    args = parser.parse_args(argv)
    bad = [item for item in args.parameter if "=" not in item]
    if bad:
        parser.error(f"-p {bad[0]!r}: write NAME=VALUE, e.g. batch_size=512")
    extra = dict(item.split("=", 1) for item in args.parameter)
    try:
        path = report(
            args.run, args.output, args.notebook, **{k: _value(v) for k, v in extra.items()}
        )
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"report written to {path}")


if __name__ == "__main__":
    main()
