"""The TensorBoard dashboards, read back from the event files of a real (tiny) CLI run."""

import io
from pathlib import Path

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

from conftest import QUIET, SE_ARGS
from selab import analysis
from selab.callbacks import HP_METRICS
from selab.cli import run

EVERYTHING = {"scalars": 0, "histograms": 0, "images": 0, "tensors": 0}


@pytest.fixture(scope="module")
def events(tiny_run):
    accumulator = EventAccumulator(str(tiny_run.log_dir), size_guidance=EVERYTHING)
    accumulator.Reload()
    return accumulator


def values(events, tag):
    return [e.value for e in events.Scalars(tag)]


def test_test_logs_into_the_run_that_trained_the_checkpoint(tiny_run):
    assert Path(tiny_run.test.trainer.log_dir) == tiny_run.log_dir
    assert (tiny_run.log_dir / "config.yaml").is_file()  # the fit's config is kept
    assert len(list(tiny_run.log_dir.glob("config.test-*.yaml"))) == 1


def test_scalars_hp_metrics_throughput_and_lr(tiny_run, events):
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "val/acc_top1", "test/acc_top1", "test/acc_class/cat"} <= tags
    assert any(tag.startswith("lr-") for tag in tags)
    assert "hp_metric" not in tags  # Lightning's placeholder is off
    val = values(events, "val/acc_top1")
    assert len(val) == 2  # two epochs; the sanity check logs nothing
    assert values(events, "hp/best_val_acc_top1") == pytest.approx(
        [max(val[:1]), max(val)]
    )  # running best
    metrics = tiny_run.test.trainer.callback_metrics
    assert values(events, "hp/test_acc_top1") == pytest.approx([float(metrics["test/acc_top1"])])
    assert values(events, "hp/test_acc_top5") == pytest.approx([float(metrics["test/acc_top5"])])
    throughput = values(events, "throughput/train_images_per_s")
    assert len(throughput) >= 2 and all(v > 0 for v in throughput)
    assert len(values(events, "throughput/val_images_per_s")) == 2
    elapsed = values(events, "time/fit_elapsed_s")
    assert len(elapsed) == 2 and 0 < elapsed[0] < elapsed[1]


def hparams_events(log_dir: Path) -> list:
    found = []
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == analysis.HPARAMS_TAG:
                    found.append(value.metadata.plugin_data.content)
    return found


def test_hparams_tab_has_the_run_and_real_metrics(tiny_run, events):
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metric_tags = [info.name.tag for info in experiment.experiment.metric_infos]
    assert metric_tags == list(HP_METRICS)
    # One session per run folder: the test logged into the run and did not write another.
    sessions = hparams_events(tiny_run.log_dir)
    assert len(sessions) == 1
    info = plugin_data_pb2.HParamsPluginData.FromString(sessions[0]).session_start_info
    hparams = {k: analysis._hparam_value(v) for k, v in info.hparams.items()}
    params = analysis.count_params(tiny_run.fit.model.backbone)
    assert hparams == {
        "backbone": "resnet20",
        "attention": "se",
        "reduction": 16,
        "optimizer": "SGD",
        "lr": 0.1,
        "batch_size": 20,
        "epochs": 2,
        "dataset": "imagefolder",
        "params": params,
        "macs": 40_556_416,  # closed form in test_analysis
    }


def png(events, tag) -> Image.Image:
    image = events.Images(tag)[-1]
    assert image.width > 100 and image.height > 100
    return Image.open(io.BytesIO(image.encoded_image_string))


def test_figures_are_drawn(events):
    for tag in ("test/confusion_matrix", "test/per_class_accuracy", "excitation/per_class"):
        image = png(events, tag).convert("L")
        low, high = image.getextrema()
        assert high - low > 100, tag  # not a blank canvas
        assert sum(count > 0 for count in image.histogram()) > 10, tag  # many grey levels
    assert len(events.Images("excitation/per_class")) == 2  # figure_every_n_epochs=1


def test_excitation_histograms_per_stage_and_block(events):
    tags = set(events.Tags()["histograms"])
    widths = {1: 16, 2: 32, 3: 64}
    for stage, width in widths.items():
        for block in range(3):
            tag = f"excitation/stage{stage}/stages.{stage - 1}.{block}"
            assert tag in tags
            histograms = events.Histograms(tag)
            assert len(histograms) == 2  # one per validation epoch
            histogram = histograms[-1].histogram_value
            assert histogram.num == width  # one mean gate per channel
            assert 0.0 <= histogram.min <= histogram.max <= 1.0  # sigmoid gates
        assert (
            events.Histograms(f"excitation/stage{stage}/all")[-1].histogram_value.num == 3 * width
        )


def markdown_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``text``, stripped."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|") and not set(line) <= set("|:- ")
    ]


def test_model_summary_text_and_graph(events):
    text = tensor_util.make_ndarray(events.Tensors("model/summary/text_summary")[0].tensor_proto)
    text = text.item().decode()
    assert "MACs = FLOPs / 2" in text
    rows = markdown_rows(text)
    assert ["attention (9 blocks)", "se", "5,784", "5,376"] in rows  # 9 SE blocks, by hand
    assert ["without attention", "269,722", "40,551,040"] == rows[
        rows.index(next(r for r in rows if r[0] == "without attention"))
    ][:3]  # ResNet-20: He et al.'s 0.27M; MACs closed form in test_analysis
    assert events.Tags()["graph"]
    graph = events.Graph()
    assert any("conv" in node.op.lower() or "conv" in node.name.lower() for node in graph.node)


def test_dashboard_parts_switch_off_from_yaml_and_flags(in_tmp, imagefolder_root):
    switches = in_tmp / "quiet_dashboard.yaml"
    switches.write_text("excitation:\n  enabled: false\ngraph:\n  enabled: false\n")
    cli = run([
        "fit", *SE_ARGS, "--config", str(switches), "--data.dataset=imagefolder",
        f"--data.root={imagefolder_root}", "--data.num_workers=0", "--data.batch_size=20",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
        "--hparams.enabled=false", "--throughput.enabled=false", "--timer.enabled=false", *QUIET,
    ])  # fmt: skip
    accumulator = EventAccumulator(cli.trainer.log_dir)
    accumulator.Reload()
    tags = accumulator.Tags()
    assert tags["histograms"] == [] and tags["images"] == [] and not tags["graph"]
    assert not any(t.startswith(("throughput/", "time/", "hp")) for t in tags["scalars"])
    assert hparams_events(Path(cli.trainer.log_dir)) == []
    assert tags["tensors"] == ["model/summary/text_summary"]


def test_max_time_reaches_the_fit_timer(in_tmp, imagefolder_root):
    """Lightning ignores ``trainer.max_time`` when a Timer is among the callbacks; the CLI hands
    it to selab's FitTimer, which enforces it."""
    from selab.callbacks import FitTimer

    cli = run([
        *SE_ARGS, "--data.dataset=imagefolder", f"--data.root={imagefolder_root}",
        "--trainer.max_time=00:00:02:30", *QUIET,
    ], run=False)  # fmt: skip
    timers = [c for c in cli.trainer.callbacks if isinstance(c, FitTimer)]
    assert len(timers) == 1 and timers[0]._duration == 150.0
