"""The notebooks: committed without outputs, and run end to end on a tiny real run."""

import re

import nbformat
import pytest

from conftest import REPO, SE_RUN_NAME
from selab import report

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_the_notebooks_exist_and_are_committed_without_outputs():
    assert {p.name for p in NOTEBOOKS} == {"analyze_checkpoint.ipynb", "compare_runs.ipynb"}
    assert not (REPO / "notebooks/.gitkeep").exists()
    for path in NOTEBOOKS:
        notebook = nbformat.read(str(path), as_version=4)
        nbformat.validate(notebook)
        assert notebook.metadata.kernelspec.name == "python3", path.name
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (path.name, cell.source)
        tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name  # one parameter cell, for papermill-style injection
        assert "widgets" not in notebook.metadata


def test_inject_parameters_adds_a_cell_after_the_parameter_cell():
    notebook = nbformat.read(str(REPO / "notebooks/analyze_checkpoint.ipynb"), as_version=4)
    index = next(
        i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])
    )
    report.inject_parameters(notebook, {"checkpoint": "/x/last.ckpt", "batch_size": 8})
    report.inject_parameters(notebook, {"checkpoint": "/y.ckpt"})  # replaces the earlier one
    injected = notebook.cells[index + 1]
    assert injected.metadata.tags == ["injected-parameters"]
    assert injected.source == "# Parameters\ncheckpoint = '/y.ckpt'\n"
    assert sum("injected-parameters" in c.metadata.get("tags", []) for c in notebook.cells) == 1
    with pytest.raises(ValueError, match="no cell tagged 'parameters'"):
        report.inject_parameters(nbformat.v4.new_notebook(), {"a": 1})


def outputs(notebook) -> tuple[str, int]:
    """All text and Markdown the cells showed (runs of spaces squeezed, so Markdown tables read
    ``| a | b |`` whatever their column widths), and how many images."""
    text, images = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", output
            text.append(output.get("text", ""))
            data = output.get("data", {})
            text.append(data.get("text/markdown", ""))
            images += "image/png" in data
    lines = "\n".join(text).splitlines()
    return "\n".join(" ".join(line.split()) for line in lines), images


def test_analyze_checkpoint_report_end_to_end(tiny_run, kernel_env, tmp_path, monkeypatch, capfd):
    """`make report` (python -m selab.report) on the tiny run's last checkpoint."""
    monkeypatch.chdir(tmp_path)
    html = tmp_path / "report.html"
    executed = {}
    execute = report.execute_notebook
    monkeypatch.setattr(  # keep the executed notebook to look at its outputs
        report, "execute_notebook", lambda *a, **k: executed.setdefault("nb", execute(*a, **k))
    )
    report.main([
        str(tiny_run.ckpt), "-o", str(html), "--notebook", str(REPO / "notebooks/analyze_checkpoint.ipynb"),
        "-p", "num_workers=0", "-p", "batch_size=8", "-p", "ablation_stages='all'",
    ])  # fmt: skip
    text, images = outputs(executed["nb"])
    assert images == 4  # confusion matrix, confused examples, gate distributions, class gates
    metrics = tiny_run.test.trainer.callback_metrics
    top1, top5 = float(metrics["test/acc_top1"]), float(metrics["test/acc_top5"])
    assert f"| 20 | {top1:.4f} | {top5:.4f} |" in text  # the same numbers as `lightning test`
    assert "| stage 3 | 3 |" in text and "| all stages | 9 |" in text  # the ablation ran
    assert "| without attention | 269,722 | 40,551,040 |" in text
    assert re.search(r"\| 3 \| 3 \| 192 \| 0\.\d{4} \|", text)  # stage 3 gates: 3 blocks x 64
    page = html.read_text()
    assert page.count("<img") == 4 and "Most-confused pairs" in page
    err = capfd.readouterr().err  # the kernel's own output included
    assert "[IPKernelApp] WARNING" not in err, err


def test_compare_runs_notebook(tiny_run, kernel_env, tmp_path):
    notebook = report.execute_notebook(
        REPO / "notebooks/compare_runs.ipynb", {"logs": str(tiny_run.logs)}, cwd=tmp_path
    )
    text, images = outputs(notebook)
    assert images == 1  # the learning curves
    assert "1 runs under" in text
    # The status table of `selab runs`: finished, config (the logger's name), seed, epochs.
    run = f"{SE_RUN_NAME}/version_0"
    assert f"| {run} | finished | {SE_RUN_NAME} | 0 | 2 |" in text
    top1 = float(tiny_run.test.trainer.callback_metrics["test/acc_top1"])
    row = re.search(rf"\| {re.escape(run)} \| resnet20 \| se \|(.*)\|", text)
    assert row, text
    cells = [c.strip() for c in row.group(1).split("|")]
    assert cells[1] == f"{top1:.4f}" and cells[4] == "40,556,416"
    assert re.fullmatch(r"0:00:\d\d", cells[-1])  # wall time


def test_report_of_a_missing_run_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # `make report` from another directory
    with pytest.raises(SystemExit) as exit_:
        report.main([str(tmp_path / "logs/nothing/version_0")])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "nothing/version_0" in line
    assert not (tmp_path / "logs").exists()


def test_analyze_checkpoint_default_is_the_run_make_train_writes():
    """The notebook opens, unchanged, the run that ``make train`` (the README's first command)
    writes: its default CONFIG named as selab names run folders."""
    from selab.cli import experiment_name

    makefile = (REPO / "Makefile").read_text()
    configs = re.search(r"^CONFIG \?= (.*)$", makefile, re.MULTILINE).group(1).split()
    notebook = nbformat.read(str(REPO / "notebooks/analyze_checkpoint.ipynb"), as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    parameters: dict = {}
    exec(cell.source, parameters)
    expected = f"logs/{experiment_name([REPO / c for c in configs])}/version_0"
    assert parameters["checkpoint"] == expected == "logs/cifar10/resnet20+se/version_0"
