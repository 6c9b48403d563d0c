"""Multi-label figures (K logits per sample, BCE on logits) and the report of binary runs: the meter
against a hand computation, one end-to-end fit, one-logit binary unchanged, report.html and
curves.svg for binary and multi-label runs, and a report that fails to render reaching the warnings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from trainwise import Trainer
from trainwise.engine import python_run
from trainwise.engine.evaluation import _meter_for
from trainwise.metrics import BinaryMeter, MultiLabelMeter
from trainwise.report.series import main_metric

CPU = torch.device("cpu")
SRC = Path(__file__).resolve().parents[1] / "src"

# Four samples, three labels. Predictions (logit > 0):  targets:   right?
#   [ 2, -1, -3] -> 1 0 0                                1 0 0      all
#   [ 1,  1, -1] -> 1 1 0                                0 1 0      label 0 wrong
#   [-1,  2, -2] -> 0 1 0                                1 1 0      label 0 wrong
#   [-2, -1,  0] -> 0 0 0 (a logit of 0 is negative)     0 0 0      all
# accuracy 10/12 labels; exact match 2/4 samples; F1 label 0: tp 1, 2 predicted, 2 actual -> 0.5;
# label 1: tp 2, 2 predicted, 2 actual -> 1.0; label 2 positive nowhere -> skipped; macro F1 0.75.
OUTPUTS = torch.tensor([[2.0, -1.0, -3.0], [1.0, 1.0, -1.0], [-1.0, 2.0, -2.0], [-2.0, -1.0, 0.0]])
TARGETS = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
EXPECTED = {"loss": 0.5, "accuracy": 10 / 12, "exact_match": 0.5, "macro_f1": 0.75}


def _fed(meter: MultiLabelMeter, split: int) -> MultiLabelMeter:
    """The four samples in two batches (split at ``split``), loss sums 0.5 per sample."""
    for part in (slice(0, split), slice(split, 4)):
        n = len(OUTPUTS[part])
        meter.update(OUTPUTS[part], TARGETS[part], torch.tensor(0.5 * n), n)
    return meter


@pytest.mark.parametrize("split", [1, 2, 4])
def test_multilabel_meter_matches_a_hand_computation_whatever_the_batches(split):
    assert _fed(MultiLabelMeter(3, CPU), split).compute() == pytest.approx(EXPECTED, abs=1e-12)


def test_multilabel_meter_reads_targets_at_half_as_positive_and_has_no_confusion_matrix():
    meter = MultiLabelMeter(2, CPU)
    meter.update(torch.tensor([[1.0, -1.0]]), torch.tensor([[0.5, 0.49]]), torch.tensor(0.0), 1)
    assert meter.compute()["accuracy"] == 1.0 and meter.compute()["exact_match"] == 1.0
    assert not hasattr(meter, "confusion_matrix")


def test_macro_f1_is_zero_when_no_label_is_positive_anywhere():
    meter = MultiLabelMeter(2, CPU)
    meter.update(torch.tensor([[-1.0, -1.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor(0.0), 1)
    assert meter.compute()["macro_f1"] == 0.0 and meter.compute()["accuracy"] == 1.0


class _BinaryRule:
    task, positions = "binary", False


@pytest.mark.parametrize("shape, meter", [((4, 1), BinaryMeter), ((4,), BinaryMeter), ((4, 3), MultiLabelMeter),
                                          ((4, 2, 2), MultiLabelMeter)])
def test_one_logit_is_binary_and_several_are_labels(shape, meter):
    assert isinstance(_meter_for(_BinaryRule(), torch.zeros(shape), torch.zeros(shape), CPU, None), meter)


_RANK_SCRIPT = """
import sys, torch, torch.distributed as dist, torch.multiprocessing as mp
from trainwise.distributed.ops import all_reduce_sums
from trainwise.metrics import MultiLabelMeter

OUT = torch.tensor({outputs}); TARGETS = torch.tensor({targets})

def rank(r, path):
    dist.init_process_group("gloo", init_method="file://" + path, rank=r, world_size=2)
    meter = MultiLabelMeter(3, torch.device("cpu"))
    part = slice(0, 1) if r == 0 else slice(1, 4)  # uneven shares
    n = len(OUT[part])
    meter.update(OUT[part], TARGETS[part], torch.tensor(0.5 * n), n)
    all_reduce_sums(meter)
    figures = meter.compute()
    assert meter.true_positive.numel() == 3 and meter.count == 4, (meter.true_positive, meter.count)
    print(r, repr(figures), flush=True)
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(rank, args=(sys.argv[1],), nprocs=2)
"""


def test_multilabel_sums_all_reduce_across_two_processes_to_the_whole_split(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(textwrap.dedent(_RANK_SCRIPT).format(outputs=OUTPUTS.tolist(), targets=TARGETS.tolist()))
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "rendezvous")], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    lines = sorted(done.stdout.strip().splitlines())
    assert len(lines) == 2
    for line in lines:
        assert eval(line.split(" ", 1)[1]) == pytest.approx(EXPECTED, abs=1e-12)  # noqa: S307 - our own output


def _labels_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 6, generator=g)
    y = ((x @ torch.randn(6, 3, generator=g)) > 0.5).float()
    return x, y


def test_a_multilabel_fit_reports_every_label_as_a_hand_computation_over_the_predictions(tmp_path):
    x, y = _labels_data()
    torch.manual_seed(0)
    trainer = Trainer(nn.Linear(6, 3), loss=nn.BCEWithLogitsLoss(), optimizer="adam", lr=1e-2, epochs=2,
                      batch_size=32, run_dir=tmp_path / "run", progress=False)
    result = trainer.fit((x[:64], y[:64]), (x[64:], y[64:]), test=(x[64:], y[64:]))
    predicted, truth = trainer.predict(x[64:]) > 0, y[64:] > 0.5
    tp = (predicted & truth).sum(0).double()
    positives = (predicted.sum(0) + truth.sum(0)).double()
    f1 = (2 * tp / positives.clamp(min=1))[positives > 0].mean().item()
    expected = {"accuracy": (predicted == truth).float().mean().item(),
                "exact_match": (predicted == truth).all(1).float().mean().item(), "macro_f1": f1}
    figures = {k: result.test_metrics[k] for k in expected}
    assert figures == pytest.approx(expected, abs=1e-6)
    assert figures["accuracy"] != pytest.approx((predicted[:, 0] == truth[:, 0]).float().mean().item())
    last = result.history[-1]
    assert {"val_accuracy", "val_exact_match", "val_macro_f1"} <= set(last)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "confusion_matrix" not in summary and summary["task"] == "binary"
    assert summary["test_exact_match"] == pytest.approx(expected["exact_match"], abs=1e-6)
    assert summary["best_val_exact_match"] == last["val_exact_match"]
    page = (tmp_path / "run" / "report.html").read_text()
    curves = (tmp_path / "run" / "curves.svg").read_text()
    assert "Test exact match" in page and "exact_match" in page and "macro_f1" in page
    assert ">accuracy<" in curves and '<table class="confusion">' not in page
    assert not any("report" in w for w in result.warnings)


def test_one_logit_binary_keeps_its_figures_and_its_two_by_two_confusion_matrix(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(96, 5)
    y = (x[:, :1] > 0).float()
    trainer = Trainer(nn.Linear(5, 1), loss=nn.BCEWithLogitsLoss(), optimizer="adam", lr=1e-2, epochs=2,
                      batch_size=32, run_dir=tmp_path / "run", progress=False)
    result = trainer.fit((x[:64], y[:64]), (x[64:], y[64:]), test=(x[64:], y[64:]))
    predicted, truth = (trainer.predict(x[64:]) > 0).long().flatten(), y[64:].long().flatten()
    matrix = [[int(((truth == t) & (predicted == p)).sum()) for p in (0, 1)] for t in (0, 1)]
    assert set(result.test_metrics) == {"loss", "accuracy", "macro_f1"}
    assert result.test_metrics["accuracy"] == pytest.approx((predicted == truth).float().mean().item())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["confusion_matrix"] == matrix
    page = (tmp_path / "run" / "report.html").read_text()
    assert '<table class="confusion">' in page and "Test accuracy" in page
    assert ">accuracy<" in (tmp_path / "run" / "curves.svg").read_text()
    assert not any("report" in w for w in result.warnings)


@pytest.mark.parametrize("labels", [1, 3])
def test_binary_and_multilabel_runs_draw_accuracy_curves_and_png_figures(tmp_path, labels):
    pytest.importorskip("matplotlib")
    from trainwise.cli import main as cli_main

    x, y = _labels_data()
    y = y[:, :labels]
    Trainer(nn.Linear(6, labels), loss=nn.BCEWithLogitsLoss(), optimizer="adam", lr=1e-2, epochs=2, batch_size=32,
            run_dir=tmp_path / "run", progress=False).fit((x[:64], y[:64]), (x[64:], y[64:]))
    curves = (tmp_path / "run" / "curves.svg").read_text()
    assert main_metric("binary") == "accuracy" and ">accuracy<" in curves and "(binary)" in curves
    assert cli_main(["report", str(tmp_path / "run"), "--png"]) == 0
    assert (tmp_path / "run" / "curves.png").is_file()
    assert 'href="curves.png"' in (tmp_path / "run" / "report.html").read_text()


def test_a_report_that_fails_to_render_is_one_line_in_the_warnings_and_summary(tmp_path, monkeypatch):
    from trainwise.report import html

    def broken(*args, **kwargs):
        raise RuntimeError("renderer exploded\non two lines")

    monkeypatch.setattr(html, "write_report", broken)
    x, y = _labels_data()
    result = Trainer(nn.Linear(6, 3), loss=nn.BCEWithLogitsLoss(), optimizer="adam", lr=1e-2, epochs=1,
                     batch_size=32, run_dir=tmp_path / "run", progress=False).fit((x[:64], y[:64]), (x[64:], y[64:]))
    failures = [w for w in result.warnings if "could not write report.html" in w]
    assert len(failures) == 1 and "\n" not in failures[0]
    assert "RuntimeError: renderer exploded on two lines" in failures[0]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["warnings"] == result.warnings == result.summary["warnings"]
    assert not (tmp_path / "run" / "report.html").exists()


def test_write_plots_and_report_without_a_trainer_logs_the_line(tmp_path, monkeypatch, caplog):
    from trainwise.report import html

    monkeypatch.setattr(html, "write_report", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with caplog.at_level("WARNING"):
        line = python_run.write_plots_and_report(tmp_path, "binary")
    assert line is not None and "OSError: disk full" in line
    assert line in caplog.text
