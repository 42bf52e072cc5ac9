"""selab.analysis on hand-checkable cases."""

import math

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from selab import analysis, models
from selab import runs as selab_runs
from selab.models import SqueezeExcite


def se_resnet20(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    return models.resnet20(attention="se", **kwargs).eval()


# -- evaluation --------------------------------------------------------------------------------


def test_most_confused_pairs_by_hand():
    confusion = torch.tensor([[5, 2, 0], [3, 4, 1], [0, 0, 6]])
    assert analysis.most_confused(confusion, ["a", "b", "c"], k=5) == [
        ("b", "a", 3),
        ("a", "b", 2),
        ("b", "c", 1),
    ]  # zero counts are not pairs
    assert analysis.most_confused(confusion, ["a", "b", "c"], k=1) == [("b", "a", 3)]


def test_evaluation_numbers_by_hand():
    probs = torch.tensor(
        [
            [0.7, 0.2, 0.1],  # true 0, predicted 0
            [0.1, 0.6, 0.3],  # true 0, predicted 1
            [0.2, 0.5, 0.3],  # true 0, predicted 1 (less confident)
            [0.1, 0.1, 0.8],  # true 2, predicted 2
            [0.5, 0.1, 0.4],  # true 2, predicted 0; true class second
        ]
    )
    targets = torch.tensor([0, 0, 0, 2, 2])
    ev = analysis.Evaluation(probs, targets, ["a", "b", "c"])
    assert ev.top1 == pytest.approx(2 / 5)
    assert ev.topk(2) == pytest.approx(3 / 5)  # rows 1 and 2 have "a" third
    assert ev.top5 == 1.0  # k is capped at the number of classes
    assert ev.confusion.tolist() == [[1, 2, 0], [0, 0, 0], [1, 0, 1]]
    per_class = ev.per_class
    assert per_class["a"] == pytest.approx(1 / 3) and per_class["c"] == 0.5
    assert math.isnan(per_class["b"])  # no image of class b
    assert ev.most_confused() == [("a", "b", 2), ("c", "a", 1)]
    assert ev.examples("a", "b") == [1, 2]  # the most confident mistake first
    assert ev.examples("a", "c") == []
    table = ev.per_class_table()
    assert table["images"].tolist() == [3, 0, 2]
    text = " ".join(analysis.to_markdown(table).split())
    assert "| a | 3 | 0.3333 |" in text and "| b | 0 | - |" in text  # NaN shown as "-"
    assert ev.most_confused_table(1).values.tolist() == [["a", "b", 2]]


def test_evaluate_runs_a_model_over_a_loader():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    images = torch.randn(10, 1, 2, 2)
    targets = torch.randint(0, 3, (10,))
    loader = DataLoader(TensorDataset(images, targets), batch_size=4)
    ev = analysis.evaluate(model, loader, class_names=["x", "y", "z"], device="cpu")
    with torch.no_grad():
        expected = model(images).softmax(1)
    torch.testing.assert_close(ev.probs, expected)
    assert ev.top1 == pytest.approx(float((expected.argmax(1) == targets).float().mean()))
    assert ev.gates is None


# -- attention blocks, gates, ablation ---------------------------------------------------------


def test_attention_blocks_and_their_stages():
    model = se_resnet20()
    blocks = analysis.attention_blocks(model, torch.randn(1, 3, 32, 32))
    assert [b.stage for b in blocks] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [b.shape for b in blocks[::3]] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert blocks[0].name == "stages.0.0.attention" and blocks[0].kind == "se"
    assert analysis.default_class_blocks(blocks) == [
        "stages.0.2.attention",
        "stages.1.2.attention",
        "stages.2.2.attention",
    ]
    # Stages come from the module path when it has one: SE only in stages 1 and 3.
    partial = models.resnet20(attention={"name": "se", "stages": [1, 3]})
    stages = [b.stage for b in analysis.attention_blocks(partial, torch.randn(1, 3, 32, 32))]
    assert stages == [1, 1, 1, 3, 3, 3]
    assert analysis.attention_blocks(models.resnet20(), torch.randn(1, 3, 32, 32)) == []


def test_stages_by_resolution_when_the_path_has_none():
    model = nn.Sequential(
        SqueezeExcite(8),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        SqueezeExcite(8),
        SqueezeExcite(8),
    )
    blocks = analysis.attention_blocks(model, torch.randn(1, 8, 16, 16))
    assert [(b.name, b.stage) for b in blocks] == [("0", 1), ("2", 2), ("3", 2)]


def test_gate_hooks_read_the_excitation_and_leave_no_trace():
    model = se_resnet20()
    x = torch.randn(3, 3, 16, 16)
    blocks = analysis.attention_blocks(model, x[:1])
    seen = {}
    inputs = {}
    handles = [  # what each block really received, to recompute its gate by hand
        b.module.register_forward_pre_hook(
            lambda m, args, name=b.name: inputs.__setitem__(name, args[0].clone())
        )
        for b in blocks
    ]
    with torch.no_grad():
        reference = model(x)
        with analysis.GateHooks(blocks, lambda b, g: seen.__setitem__(b.name, g)) as hooks:
            torch.testing.assert_close(model(x), reference)  # reading gates changes nothing
    for handle in handles:
        handle.remove()
    assert hooks.skipped == []
    for block in blocks:
        expected = block.module.excitation(inputs[block.name]).flatten(1)
        torch.testing.assert_close(seen[block.name], expected)
        assert seen[block.name].shape == (3, block.channels)
        assert "excitation" not in block.module.__dict__  # the instance wrapper is gone


def test_gate_hooks_fall_back_to_a_gate_submodule():
    class GateOnly(nn.Module):  # no excitation(): the gate sub-module's output is read
        def __init__(self):
            super().__init__()
            self.gate = nn.Sigmoid()

        def forward(self, x):
            return x * self.gate(x.mean((2, 3), keepdim=True))

    class Opaque(nn.Module):
        def forward(self, x):
            return x

    x = torch.randn(2, 4, 5, 5)
    blocks = [
        analysis.AttentionBlock("g", GateOnly(), 1, (4, 5, 5)),
        analysis.AttentionBlock("o", Opaque(), 1, (4, 5, 5)),
    ]
    seen = {}
    with analysis.GateHooks(blocks, lambda b, g: seen.__setitem__(b.name, g)) as hooks:
        blocks[0].module(x)
        blocks[1].module(x)
    torch.testing.assert_close(seen["g"], torch.sigmoid(x.mean((2, 3))))
    assert hooks.skipped == ["o"] and "o" not in seen
    assert not blocks[0].module.gate._forward_hooks


def test_gate_stats_by_hand():
    block = analysis.AttentionBlock("b", nn.Identity(), 1, (2, 1, 1))
    stats = analysis.GateStats([block], num_classes=3, class_names=["a", "b", "c"], bins=4)
    stats.targets = torch.tensor([0, 0, 1])
    stats.update(block, torch.tensor([[0.1, 0.9], [0.3, 0.7], [0.5, 0.5]]))
    stats.targets = torch.tensor([1])
    stats.update(block, torch.tensor([[0.9, 1.2]]))  # 1.2 lands in the last bin
    torch.testing.assert_close(stats.mean("b"), torch.tensor([0.45, 0.825]))
    per_class = stats.class_mean("b")
    torch.testing.assert_close(per_class[0], torch.tensor([0.2, 0.8]))
    torch.testing.assert_close(per_class[1], torch.tensor([0.7, 0.85]))
    assert per_class[2].isnan().all()  # class c never seen
    # bins of width 0.25 over [0, 1]: 0.1 | 0.3 | 0.5 0.5 0.7 | 0.9 0.9 1.2
    assert stats.histogram("b").tolist() == [1, 1, 3, 3]
    summary = stats.stage_summary()
    assert summary.loc[0, "channels"] == 2 and summary.loc[0, "mean gate"] == pytest.approx(0.6375)


def test_without_attention_swaps_blocks_for_identity_and_restores_them():
    model = se_resnet20()
    x = torch.randn(2, 3, 16, 16)
    originals = dict(analysis.find_attention(model))
    last = [name for name in originals if name.startswith("stages.2.")]
    with torch.no_grad():
        reference = model(x)
        with analysis.without_attention(model, last):
            for name, module in originals.items():
                current = model.get_submodule(name)
                if name in last:
                    assert isinstance(current, nn.Identity)
                else:
                    assert current is module
            assert not torch.allclose(model(x), reference)
        assert all(model.get_submodule(n) is m for n, m in originals.items())
        torch.testing.assert_close(model(x), reference)
        with pytest.raises(RuntimeError), analysis.without_attention(model):
            assert analysis.find_attention(model) == []
            raise RuntimeError("restored even after an error")
    assert all(model.get_submodule(n) is m for n, m in originals.items())


def test_stage_ablation_evaluates_with_the_blocks_removed():
    model = se_resnet20(num_classes=10)
    images, targets = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    loader = DataLoader(TensorDataset(images, targets), batch_size=4)
    table = analysis.stage_ablation(model, loader, device="cpu")
    assert table["attention removed"].tolist() == ["none", "stage 3"]
    assert table["blocks removed"].tolist() == [0, 3]
    full = analysis.evaluate(model, loader, device="cpu")
    last = [n for n, _ in analysis.find_attention(model) if n.startswith("stages.2.")]
    with analysis.without_attention(model, last):
        ablated = analysis.evaluate(model, loader, device="cpu")
    assert table.loc[0, "top-1"] == full.top1 and table.loc[1, "top-1"] == ablated.top1
    assert table.loc[1, "Δ top-1"] == pytest.approx(ablated.top1 - full.top1)
    shown = analysis.to_markdown(table)  # the change is printed with its sign
    assert f"{ablated.top1 - full.top1:+.4f}" in shown and "+0.0000" in shown
    every = analysis.stage_ablation(model, loader, stages="all", device="cpu")
    assert every["attention removed"].tolist() == [
        "none",
        "stage 1",
        "stage 2",
        "stage 3",
        "all stages",
    ]
    assert every["blocks removed"].tolist() == [0, 3, 3, 3, 9]


# -- parameters and MACs -----------------------------------------------------------------------


def test_macs_of_a_convolution_by_hand():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert analysis.count_macs(conv, torch.randn(1, 3, 10, 10)) == 8 * 3 * 9 * 10 * 10


def test_resnet20_macs_with_and_without_se_closed_form():
    # Convolutions per 32x32 image: stem, then 16-, 32- and 64-channel stages at 32, 16, 8 px.
    stem = 3 * 16 * 9 * 32 * 32
    stage1 = 6 * 16 * 16 * 9 * 32 * 32
    stage2 = 16 * 32 * 9 * 16 * 16 + 5 * 32 * 32 * 9 * 16 * 16
    stage3 = 32 * 64 * 9 * 8 * 8 + 5 * 64 * 64 * 9 * 8 * 8
    plain = stem + stage1 + stage2 + stage3 + 64 * 10
    assert plain == 40_551_040
    se = 3 * sum(2 * c * 8 for c in (16, 32, 64))  # two C x 8 FCs per block
    example = torch.randn(1, 3, 32, 32)
    assert analysis.count_macs(models.resnet20(), example) == plain
    model = se_resnet20()
    assert analysis.count_macs(model, example) == plain + se == 40_556_416
    table = analysis.complexity(model, example).set_index("model")
    assert table.loc["with attention", ["params", "MACs"]].tolist() == [275_506, plain + se]
    assert table.loc["without attention", ["params", "MACs"]].tolist() == [269_722, plain]
    assert table.loc["attention", ["params", "MACs"]].tolist() == [275_506 - 269_722, se]
    assert table.loc["attention", "params %"] == pytest.approx(100 * 5_784 / 275_506)
    parts = analysis.module_table(model, example)
    assert parts["MACs"].iloc[-1] == plain + se  # the last row is the whole model
    rows = parts.set_index("module").to_dict("index")
    assert rows["attention (9 blocks)"]["MACs"] == se
    assert rows["total"]["MACs"] == plain + se
    assert sum(rows[n]["MACs"] for n in ("stem", "stages", "pool", "fc")) == plain + se
    assert sum(rows[n]["params"] for n in ("stem", "stages", "pool", "fc")) == 275_506


# -- runs --------------------------------------------------------------------------------------


def write_run(folder, val, test=None, elapsed=None, hparams=None):
    writer = SummaryWriter(str(folder))
    for step, value in enumerate(val):
        writer.add_scalar("val/acc_top1", value, step)
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
    if test is not None:
        writer.add_scalar("test/acc_top1", test, len(val))
    if elapsed is not None:
        writer.add_scalar("time/fit_elapsed_s", elapsed, len(val))
    if hparams:
        for summary in hparams_summary(hparams, {"hp/test_acc_top1": 0.0}):
            writer._get_file_writer().add_summary(summary)
    writer.close()


def test_results_table_from_event_files(tmp_path):
    logs = tmp_path / "logs"
    write_run(
        logs / "exp/version_10",
        [0.2, 0.6, 0.5],
        test=0.55,
        elapsed=3725.0,
        hparams={"backbone": "resnet20", "attention": "se", "params": 275506, "macs": 40556416},
    )
    write_run(logs / "exp/version_2", [0.1, 0.3])
    runs = analysis.read_runs(logs)
    assert [r.name for r in runs] == ["exp/version_2", "exp/version_10"]  # natural order
    assert runs[1].hparams == {
        "backbone": "resnet20",
        "attention": "se",
        "params": 275506,
        "macs": 40556416,
    }
    table = analysis.results_table(runs)
    row = table.iloc[1]
    assert row["best val top-1"] == pytest.approx(0.6) and row["test top-1"] == pytest.approx(0.55)
    assert row["params"] == 275506 and row["MACs"] == 40556416
    assert row["wall time"] == "1:02:05"
    assert pd.isna(table.loc[0, "test top-1"]) and pd.isna(table.loc[0, "backbone"])
    text = " ".join(analysis.to_markdown(table).split())
    assert "| exp/version_2 | - | - | 0.3000 | - | - | - | - | - |" in text
    assert "| 275,506 | 40,556,416 | 1:02:05 |" in text
    assert [r.name for r in analysis.read_runs(logs, "exp/version_1*")] == ["exp/version_10"]
    figure = analysis.plot_learning_curves(runs, ["val/acc_top1", "train/loss"])
    assert len(figure.axes) == 2 and len(figure.axes[0].lines) == 2


def test_a_run_with_a_metrics_csv_is_read_from_it(tmp_path):
    """The CSV logger's file wins over the event files; training time comes from status.json."""
    run = tmp_path / "logs/exp/version_0"
    write_run(run, [0.9, 0.9])  # TensorBoard says otherwise: not read
    rows = [
        {"epoch": 0, "step": 9, "val/acc_top1": 0.25},
        {"epoch": 1, "step": 19, "val/acc_top1": 0.75},
        {"epoch": 1, "step": 19, "val/acc_top1": 0.5},  # epoch 1 again after a resume
        {"epoch": 2, "step": 20, "test/acc_top1": 0.5, "test/acc_top5": 0.875},
    ]
    pd.DataFrame(rows).to_csv(run / "metrics.csv", index=False)
    selab_runs.update_status(run, "fit", state="finished", seconds=61.0)
    (read,) = analysis.read_runs(tmp_path / "logs")
    assert read.values("val/acc_top1") == [0.25, 0.75, 0.5]
    assert selab_runs.epoch_values(read.metrics, "val/acc_top1").tolist() == [0.25, 0.5]
    row = analysis.results_table([read]).iloc[0]
    # the superseded 0.75 of the resumed epoch does not count, as in `selab runs`
    assert row["best val top-1"] == 0.5 and row["test top-5"] == 0.875
    assert selab_runs.describe(run)["best val/acc_top1"] == 0.5
    assert row["wall time"] == "0:01:01"


def test_a_running_run_shows_the_time_it_still_needs(tmp_path):
    """2 of 5 epochs in 100 s: 150 s left. Only while it runs."""
    import os
    import socket

    run = tmp_path / "logs/exp/version_0"
    write_run(run, [0.2, 0.3])
    running = {"state": "running", "host": socket.gethostname(), "pid": os.getpid()}
    selab_runs.update_status(run, "fit", **running, max_epochs=5, epochs=2, seconds=100.0)
    row = selab_runs.describe(run)
    assert row["status"] == "running" and row["time left"] == "0:02:30"
    selab_runs.update_status(run, "fit", state="finished", epochs=5, seconds=250.0)
    assert selab_runs.describe(run)["time left"] is None


# -- checkpoints -------------------------------------------------------------------------------


def test_checkpoint_helpers_on_a_real_run(tiny_run):
    best = analysis.resolve_checkpoint(tiny_run.log_dir)
    assert best.parent == tiny_run.log_dir / "checkpoints" and best.name.startswith("epoch")
    assert analysis.resolve_checkpoint(tiny_run.ckpt) == tiny_run.ckpt
    model = analysis.load_checkpoint(tiny_run.ckpt)
    assert not model.training and model.class_names == tiny_run.fit.model.class_names
    datamodule = analysis.datamodule_for(tiny_run.ckpt, batch_size=7)
    assert datamodule.root == tiny_run.images and datamodule.batch_size == 7
    assert len(datamodule.test_set) == 20
    ev = analysis.evaluate(model, datamodule.test_dataloader(), device="cpu", gates=True)
    metrics = tiny_run.test.trainer.callback_metrics
    assert ev.top1 == pytest.approx(float(metrics["test/acc_top1"]))
    assert ev.top5 == pytest.approx(float(metrics["test/acc_top5"]))
    assert ev.confusion.tolist() == tiny_run.test.model.confusion_matrix.tolist()
    assert len(ev.gates.names) == 9 and ev.gates.histogram(ev.gates.names[0]).sum() == 20 * 16
    with pytest.raises(FileNotFoundError):
        analysis.resolve_checkpoint(tiny_run.base / "missing")


def test_a_model_without_attention_is_analysed_too():
    model = models.resnet20(num_classes=10).eval()
    loader = DataLoader(TensorDataset(torch.randn(4, 3, 16, 16), torch.arange(4)), batch_size=4)
    ev = analysis.evaluate(model, loader, device="cpu", gates=True)
    assert ev.gates.names == [] and len(ev.gates.stage_summary()) == 0
    assert analysis.plot_gate_distributions(ev.gates) is None
    assert analysis.plot_class_gates(ev.gates) is None
    with pytest.raises(ValueError, match="no attention blocks"):
        analysis.stage_ablation(model, loader, device="cpu")
    table = analysis.complexity(model, torch.randn(1, 3, 32, 32))
    assert table["MACs"].tolist() == [40_551_040, 40_551_040, 0]
    assert table["params %"].tolist() == [100.0, 100.0, 0.0]
