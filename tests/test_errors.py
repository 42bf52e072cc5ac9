"""Bad input gets one line that says what to do, exit status 2, and changes nothing on disk.

``BAD_INPUTS`` is the table: each row is a command a user could type (run in-process through the
console entry point, ``selab.cli.main``), the pattern its one ``error:`` line must match, and the
data it needs. Every command points at the logs of an existing run (the session's ``tiny_run``),
whose files must be byte-for-byte the same afterwards, with no new (empty) run folder beside them.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from conftest import QUIET, REPO, SE_ARGS
from fakedata import write_image, write_imagefolder, write_truncated_jpeg
from selab.cli import main

RESNET20 = str(REPO / "configs/cifar10/resnet20.yaml")
MOBILENET_STUDY = str(REPO / "configs/studies/mobilenetv1_stl10/recipe.yaml")


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (path -> sha1) and every folder (path -> "dir")."""
    state = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        state[key] = "dir" if path.is_dir() else hashlib.sha1(path.read_bytes()).hexdigest()
    return state


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Image folders: a good one and one broken in each way the data layer must name."""
    root = tmp_path_factory.mktemp("bad_data")
    good = root / "good"
    write_imagefolder(good, n_train=40, n_test=20)
    corrupt = root / "corrupt"
    shutil.copytree(good, corrupt)
    write_truncated_jpeg(corrupt / "train" / "cat" / "broken.jpg")
    empty_class = root / "empty_class"
    shutil.copytree(good, empty_class)
    (empty_class / "train" / "zebra").mkdir()
    (empty_class / "test" / "zebra").mkdir()
    mixed = root / "mixed"
    shutil.copytree(good, mixed)
    write_image(mixed / "train" / "cat" / "large.png", 40, 48)
    not_a_folder = root / "file_not_folder"
    not_a_folder.write_text("logs should be a folder")
    bad_ckpt = root / "bad.ckpt"
    bad_ckpt.write_bytes(b"PK\x03\x04 not really a checkpoint")
    bad_key = root / "bad_key.yaml"
    bad_key.write_text("model:\n  backbone:\n    init_args:\n      reduction_ratio: 8\n")
    return {
        "good": good,
        "corrupt": corrupt,
        "empty_class": empty_class,
        "mixed": mixed,
        "file": not_a_folder,
        "bad_ckpt": bad_ckpt,
        "bad_key": bad_key,
        "missing": root / "no_such_dir",
    }


def data_args(root) -> list[str]:
    return ["--data.dataset=imagefolder", f"--data.root={root}", "--data.batch_size=10"]


# (id, command builder, expected one-line message). Builders get (datasets, run) where ``run`` is
# the session's trained tiny SE-ResNet-20 run (its logs folder is where every command logs).
BAD_INPUTS = [
    (
        "test-without-checkpoint",
        lambda d, r: ["test", *SE_ARGS, *data_args(d["good"])],
        r"test needs a trained network: pass --ckpt_path .* or --allow_untrained true",
    ),
    (
        "validate-without-checkpoint",
        lambda d, r: ["validate", *SE_ARGS, *data_args(d["good"])],
        r"validate needs a trained network",
    ),
    (
        "predict-without-checkpoint",
        lambda d, r: ["predict", *SE_ARGS, *data_args(d["good"])],
        r"predict needs a trained network",
    ),
    (
        "test-last-without-a-run",
        lambda d, r: [
            "test",
            *SE_ARGS,
            *data_args(d["good"]),
            "--ckpt_path=last",
            "--trainer.logger.init_args.name=never_trained",
        ],  # fmt: skip
        r"--ckpt_path last: no run of 'never_trained' .* has a checkpoint",
    ),
    (
        "checkpoint-of-another-network",
        lambda d, r: ["test", "--config", RESNET20, *data_args(d["good"]), f"--ckpt_path={r.ckpt}"],
        r"was trained with model\.backbone\.init_args\.attention.*'se'.* but the config gives",
    ),
    (
        "checkpoint-with-another-optimizer-on-resume",
        lambda d, r: [
            "fit",
            *SE_ARGS,
            *data_args(d["good"]),
            f"--ckpt_path={r.ckpt}",
            "--model.optimizer.init_args.lr=0.5",
        ],  # fmt: skip
        r"was trained with model\.optimizer\.init_args\.lr=0\.1 but the config gives 0\.5",
    ),
    (
        "missing-checkpoint",
        lambda d, r: ["test", *SE_ARGS, *data_args(d["good"]), "--ckpt_path=nowhere.ckpt"],
        r"checkpoint nowhere\.ckpt does not exist",
    ),
    (
        "corrupt-checkpoint",
        lambda d, r: ["test", *SE_ARGS, *data_args(d["good"]), f"--ckpt_path={d['bad_ckpt']}"],
        r"bad\.ckpt (is not a readable|could not be loaded)",
    ),
    (
        "top-level-optimizer",
        lambda d, r: ["fit", *SE_ARGS, *data_args(d["good"]), "--optimizer=torch.optim.Adam"],
        r"--optimizer is not an option: .* pass --model\.optimizer torch\.optim\.Adam",
    ),
    (
        "debug-limit-on-a-small-folder",  # Lightning's check, after the run folder was claimed
        lambda d, r: [
            "fit",
            *SE_ARGS,
            "--config",
            str(REPO / "configs/debug/limit.yaml"),
            *data_args(d["good"]),
            "--data.val_size=10",
        ],  # fmt: skip
        r"0\.05 \* 1 < 1\. Please increase the `limit_val_batches`",
    ),
    (
        "abbreviated-option",
        lambda d, r: ["fit", *SE_ARGS, *data_args(d["good"]), "--trainer.max_ep=1"],
        r"unrecognized arguments: --trainer\.max_ep",
    ),
    (
        "misspelt-config-key",
        lambda d, r: ["fit", *SE_ARGS, "--config", str(d["bad_key"]), *data_args(d["good"])],
        r"reduction_ratio",
    ),
    (
        "unknown-attention",
        lambda d, r: [
            "fit",
            *SE_ARGS,
            *data_args(d["good"]),
            "--model.backbone.init_args.attention=sse",
        ],  # fmt: skip
        r"unknown attention 'sse'; choose one of none, ca_conv, cbam",
    ),
    (
        "zero-reduction",
        lambda d, r: [
            "fit",
            *SE_ARGS,
            *data_args(d["good"]),
            "--model.backbone.init_args.attention={name: se, reduction: 0}",
        ],  # fmt: skip
        r"reduction must be >= 1, got 0",
    ),
    (
        "val-size-larger-than-the-training-set",
        lambda d, r: ["fit", *SE_ARGS, *data_args(d["good"]), "--data.val_size=100000"],
        r"val_size",
    ),
    (
        "empty-class-folder",
        lambda d, r: ["fit", *SE_ARGS, *data_args(d["empty_class"])],
        r"zebra",
    ),
    (
        "undecodable-image",
        lambda d, r: ["fit", *SE_ARGS, *data_args(d["corrupt"])],
        r"broken\.jpg.*(skip_bad_files|delete)",
    ),
    (
        "images-of-mixed-sizes",
        lambda d, r: ["fit", *SE_ARGS, *data_args(d["mixed"]), "--data.loader=memory"],
        r"image_size",
    ),
    (
        "image-size-the-backbone-cannot-take",
        lambda d, r: [
            "fit",
            "--config",
            MOBILENET_STUDY,
            *data_args(d["good"]),
            "--data.image_size=32",
            "--data.val_size=10",
        ],  # fmt: skip
        r"MobileNetV1 cannot take the data's 32x32 images",
    ),
    (
        "missing-dataset-offline",
        lambda d, r: ["fit", *SE_ARGS, f"--data.root={d['missing']}", "--data.download=false"],
        r"cifar10 was not found in .*no_such_dir",
    ),
    (
        "logs-in-a-file",
        lambda d, r: [
            "fit",
            *SE_ARGS,
            *data_args(d["good"]),
            f"--trainer.logger.init_args.save_dir={d['file']}",
        ],  # fmt: skip
        r"file_not_folder",
    ),
]


@pytest.mark.parametrize(
    "build, expected", [row[1:] for row in BAD_INPUTS], ids=[r[0] for r in BAD_INPUTS]
)
def test_bad_input_is_one_line_and_changes_nothing(
    build, expected, datasets, tiny_run, in_tmp, capsys, monkeypatch
):
    monkeypatch.delenv("SELAB_DEBUG", raising=False)
    args = build(datasets, tiny_run)
    if not any(a.startswith("--trainer.logger.init_args.save_dir") for a in args):
        args.append(f"--trainer.logger.init_args.save_dir={tiny_run.logs}")
    before = snapshot(tiny_run.logs)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([*args, *QUIET])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert re.search(expected, errors[0]), errors[0]
    assert "Traceback" not in "\n".join(err)
    assert snapshot(tiny_run.logs) == before  # nothing written, nothing removed
    assert not (in_tmp / "logs").exists() or not any((in_tmp / "logs").rglob("version_*"))


def test_selab_debug_shows_the_traceback(datasets, tiny_run, in_tmp, monkeypatch):
    monkeypatch.setenv("SELAB_DEBUG", "1")
    with pytest.raises(ValueError, match="unknown attention 'sse'"):
        main(
            [
                "fit",
                *SE_ARGS,
                *data_args(datasets["good"]),
                *QUIET,
                "--model.backbone.init_args.attention=sse",
            ]  # fmt: skip
        )


def test_allow_untrained_evaluates_the_initial_weights(datasets, in_tmp):
    from selab.cli import run

    cli = run(
        [
            "test",
            *SE_ARGS,
            *data_args(datasets["good"]),
            *QUIET,
            "--allow_untrained=true",
            "--trainer.limit_test_batches=1",
        ]  # fmt: skip
    )
    assert "test/acc_top1" in cli.trainer.callback_metrics


def test_runs_started_together_get_their_own_folders(in_tmp):
    from concurrent.futures import ThreadPoolExecutor

    from selab import runs

    with ThreadPoolExecutor(8) as pool:
        numbers = list(pool.map(lambda _: runs.claim_version(in_tmp / "logs", "x"), range(8)))
    assert sorted(numbers) == list(range(8))
    runs.release_unused()  # all empty: removed again, with the folders created for them
    assert not (in_tmp / "logs").exists()
