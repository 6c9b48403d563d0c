"""``trainwise export`` and ``trainwise predict ARTIFACT`` as a person calls them, on a digits MLP
(BatchNorm in its hidden layer): every format written, reloaded, verified, and predicting the same
classes as the run folder; every mistake one ``error:`` line, nothing half-written left behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import cli_in_process
from test_cli import DIGITS, trainwise
from test_cli_inference import assert_one_error

ARTIFACTS = ("model.onnx", "model.pt", "model.pt2", "model.safetensors", "model.int8.onnx")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A digits MLP run, exported with --format all; raw inputs of 200 test-like samples."""
    work = tmp_path_factory.mktemp("export")
    proc = trainwise("train", DIGITS, "train.epochs=3", "model.hidden=[32]", "model.norm=batch", "optimizer.lr=0.01",
                     "train.report=false", "--run-dir", "run", "--quiet", cwd=work)
    assert proc.returncode == 0, proc.stderr
    proc = trainwise("export", "run", "--format", "all", cwd=work)
    assert proc.returncode == 0, proc.stderr
    (work / "stdout.txt").write_text(proc.stdout)
    from sklearn.datasets import load_digits

    np.savez(work / "inputs.npz", x=load_digits().data[:200])
    return work


def test_all_formats_written_verified_and_tabled(exported):
    folder = exported / "run" / "export"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*ARTIFACTS, "export.json"])  # no temporary files
    figures = json.loads((folder / "export.json").read_text())
    formats = figures["formats"]
    assert set(formats) == {"onnx", "torchscript", "pt2", "safetensors", "int8"}
    assert figures["source"]["verified_on"] == "test" and figures["source"]["samples"] == 359
    summary = json.loads((exported / "run" / "summary.json").read_text())
    for name in ("onnx", "torchscript", "pt2", "safetensors"):
        row = formats[name]
        assert row["max_abs_diff"] <= 1e-4
        assert row["pytorch_accuracy"] == pytest.approx(100 * summary["test_accuracy"], abs=0.01)
        assert abs(row["artifact_accuracy"] - row["pytorch_accuracy"]) <= 0.1
    assert formats["onnx"]["batchnorm_nodes"] == 0 and formats["torchscript"]["batchnorm_folded"] == 1
    int8 = formats["int8"]
    assert int8["int8_bytes"] < int8["fp32_bytes"]
    assert abs(int8["accuracy_delta"]) <= 1.0
    assert int8["accuracy_delta"] == pytest.approx(int8["int8_accuracy"] - int8["fp32_accuracy"], abs=1e-3)
    for key in ("fp32_ms_batch1", "int8_ms_batch1", "fp32_ms_batch64", "int8_ms_batch64"):
        assert int8[key] > 0
    table = (exported / "stdout.txt").read_text()
    for fragment in ("max abs diff", "model.int8.onnx", "latency batch 64", "delta"):
        assert fragment in table


def test_onnx_is_one_self_contained_file_with_a_dynamic_batch_axis(exported):
    import onnx

    model = onnx.load(str(exported / "run" / "export" / "model.onnx"), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert not (exported / "run" / "export" / "model.onnx.data").exists()
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]] == [1, 8, 8]


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_predict_with_an_artifact_gives_the_run_folders_classes(exported, artifact):
    out = f"run-{artifact}.npz"
    if not (exported / "from-run.npz").exists():
        proc = trainwise("predict", "run", "inputs.npz", "--out", "from-run.npz", cwd=exported)
        assert proc.returncode == 0, proc.stderr
    code = {".pt": ["--format", "torchscript"], ".pt2": ["--format", "pt2"]}.get(Path(artifact).suffix, [])
    if code:  # a program: loaded only when its format is named
        assert_one_error(trainwise("predict", f"run/export/{artifact}", "inputs.npz", "--out", out, cwd=exported),
                         "runs code", f"--format {code[1]}")
    proc = trainwise("predict", f"run/export/{artifact}", "inputs.npz", "--out", out, *code, cwd=exported)
    assert proc.returncode == 0, proc.stderr
    with np.load(exported / "from-run.npz") as want, np.load(exported / out) as got:
        assert got["predictions"].dtype.kind == "U"  # class names travel in the artifact
        if "int8" in artifact:  # quantized: nearly, not exactly, the same classes
            assert (got["class_index"] == want["class_index"]).mean() >= 0.95
        else:
            np.testing.assert_array_equal(got["class_index"], want["class_index"])
            np.testing.assert_allclose(got["outputs"], want["outputs"], atol=1e-4)


def test_no_best_checkpoint_is_one_clear_error(exported, tmp_path):
    shutil.copytree(exported / "run", tmp_path / "run", ignore=shutil.ignore_patterns("export"))
    (tmp_path / "run" / "checkpoints" / "best.pt").unlink()
    proc = cli_in_process("export", "run", "--format", "onnx", cwd=tmp_path)
    assert_one_error(proc, "no best.pt", "--checkpoint last.pt")
    assert not (tmp_path / "run" / "export").exists()


def test_output_in_a_missing_folder_is_one_clear_error(exported):
    proc = cli_in_process("export", "run", "--format", "onnx", "--out", "nowhere/model.onnx", cwd=exported)
    assert_one_error(proc, "does not exist", "nowhere")
    assert not (exported / "nowhere").exists()


@pytest.mark.parametrize("args, fragments", [
    (["--format", "onxx"], ["onxx", "did you mean 'onnx'"]),
    (["--format", "onnx", "--out", "model.pt"], ["must end in .onnx"]),
    (["--format", "onnx", "--atol", "-1"], ["atol must be a number >= 0"]),
])
def test_argument_mistakes_are_one_clear_error(exported, args, fragments):
    proc = cli_in_process("export", "run", *args, cwd=exported)
    assert_one_error(proc, *fragments)


def test_a_folder_that_is_not_a_run_is_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = cli_in_process("export", "empty", cwd=tmp_path)
    assert_one_error(proc, "not a trainwise run folder")


def test_export_help_states_the_choices_and_the_deprecation():
    proc = trainwise("export", "--help", cwd=Path.cwd())
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for fragment in ("TorchScript is deprecated", "folded into the graph", "pip install 'trainwise[export]'",
                     "pt2", "no pickle", "quantize_dynamic"):
        assert fragment in text


def test_a_regression_run_exports_in_original_units(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 3))
    price = 1000 + 100 * x[:, 0]
    lines = [f"{a:.4f},{b:.4f},{c:.4f},{p:.3f}" for (a, b, c), p in zip(x, price)]
    (tmp_path / "houses.csv").write_text("rooms,age,size,price\n" + "\n".join(lines) + "\n")
    proc = trainwise("train", DIGITS, "data.dataset=csv", "data.path=houses.csv", "data.target=price",
                     "model.hidden=[16]", "model.dropout=0", "train.epochs=10", "optimizer.lr=0.01",
                     "train.early_stopping.monitor=val_loss", "train.report=false", "--run-dir", "reg", "--quiet",
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    import trainwise as tw

    result = tw.export(tmp_path / "reg", format="onnx")
    row = result.rows["onnx"]
    summary = json.loads((tmp_path / "reg" / "summary.json").read_text())
    assert row["pytorch_rmse"] == pytest.approx(summary["test_rmse"], rel=1e-4)
    assert row["artifact_rmse"] == pytest.approx(row["pytorch_rmse"], rel=1e-5)
    assert "rmse torch" in result.table()
    proc = trainwise("predict", "reg/export/model.onnx", "houses.csv", "--out", "p.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    header, first = (tmp_path / "p.csv").read_text().splitlines()[:2]
    assert header == "prediction" and 800 < float(first) < 1200
