"""bf16 on the CPU only where the processor has bfloat16 instructions."""

import pytest
import torch
import yaml

from selab import precision
from selab.cli import run
from test_cli import fit_args


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture(params=[True, False], ids=["native-bf16", "no-bf16"])
def native(request, monkeypatch, cpu_only):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: request.param)
    return request.param


@pytest.mark.parametrize("accelerator", ["auto", "cpu", None])
def test_bf16_on_a_cpu_without_bf16_instructions_trains_in_float32(native, accelerator):
    chosen, notice = precision.training_precision("bf16-mixed", accelerator)
    if native:
        assert (chosen, notice) == ("bf16-mixed", None)
    else:
        assert chosen == "32-true"
        assert "no native bfloat16" in notice and "--cpu_bf16 always" in notice


def test_always_float32_and_gpus_are_left_as_set(monkeypatch, cpu_only):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.training_precision("bf16-mixed", "cpu", "always") == ("bf16-mixed", None)
    assert precision.training_precision("32-true", "cpu") == ("32-true", None)
    assert precision.training_precision(32, "auto") == (32, None)
    assert precision.training_precision("bf16-true", "gpu") == ("bf16-true", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert precision.training_precision("bf16-mixed", "auto") == ("bf16-mixed", None)


def test_the_run_config_records_the_precision_used(in_tmp, imagefolder_root, monkeypatch, capsys):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cli = run(fit_args(imagefolder_root, "--trainer.precision=bf16-mixed"))
    assert cli.trainer.precision == "32-true"
    saved = yaml.safe_load((in_tmp / cli.trainer.log_dir / "config.yaml").read_text())
    assert saved["trainer"]["precision"] == "32-true" and saved["cpu_bf16"] == "native"
    err = capsys.readouterr().err
    assert err.count("bf16-mixed -> 32-true") == 1

    kept = run(fit_args(imagefolder_root, "--trainer.precision=bf16-mixed", "--cpu_bf16=always"))
    assert kept.trainer.precision == "bf16-mixed"
