"""Every format of the built-in models the guides ship: the MNIST CNN with BatchNorm, the MNIST-1D
CNN and a GRU (digits rows as sequences), each trained briefly by the CLI, exported with
``trainwise.export(run, format="all")``, reloaded from disk, within tolerance of PyTorch and with
PyTorch's test accuracy (within 0.1 point; int8 within 1 point, its delta reported)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from test_cli import DIGITS, ROOT, trainwise
from test_export_python import trusted_format

MNIST_CANDIDATES = (ROOT.parent / "shared" / "data" / "mnist", ROOT.parents[1] / "shared" / "data" / "mnist")
MNIST_ROOT = next((path for path in MNIST_CANDIDATES if (path / "t10k-images-idx3-ubyte.gz").is_file()), None)
MNIST1D = str(ROOT / "examples" / "mnist1d.yaml")
MNIST = str(ROOT / "examples" / "mnist.yaml")

RUNS = {
    "mnist-cnn": [MNIST, f"data.root={MNIST_ROOT}", "model.channels=[4,8]", "model.hidden=[16]", "train.max_steps=40"],
    "mnist1d-cnn": [MNIST1D, "model.channels=[8,8]", "model.hidden=[16]", "train.epochs=3"],
    "digits-gru": [DIGITS, "model.name=gru", "model.hidden=[32]", "model.dropout=0", "train.epochs=3"],
}
INT8_SUFFIX = {"mnist-cnn": ".onnx", "mnist1d-cnn": ".onnx", "digits-gru": ".pt"}


@pytest.fixture(scope="module", params=list(RUNS))
def exported(request, tmp_path_factory):
    name = request.param
    if name == "mnist-cnn" and MNIST_ROOT is None:
        pytest.skip(f"the MNIST IDX files are not in {MNIST_CANDIDATES[0]}")
    work = tmp_path_factory.mktemp(name)
    proc = trainwise("train", *RUNS[name], "optimizer.lr=0.01", "train.report=false", "--run-dir", "run", "--quiet",
                     cwd=work)
    assert proc.returncode == 0, proc.stderr
    import trainwise as tw

    result = tw.export(work / "run", format="all")
    return name, work / "run", result


@pytest.mark.slow
def test_every_format_matches_pytorch(exported):
    name, run, result = exported
    assert set(result.paths) == {"onnx", "torchscript", "pt2", "safetensors", "int8"}
    assert result.paths["int8"].name == "model.int8" + INT8_SUFFIX[name]
    test_accuracy = 100 * json.loads((run / "summary.json").read_text())["test_accuracy"]
    for format, row in result.rows.items():
        assert result.paths[format].is_file()
        if format == "int8":
            assert abs(row["accuracy_delta"]) <= 1.0
            assert row["fp32_accuracy"] == pytest.approx(test_accuracy, abs=0.01)
            continue
        assert row["max_abs_diff"] <= 1e-4, format
        assert row["pytorch_accuracy"] == pytest.approx(test_accuracy, abs=0.01)
        assert abs(row["artifact_accuracy"] - row["pytorch_accuracy"]) <= 0.1, format
    if name != "digits-gru":  # the CNNs' BatchNorm is folded away
        assert result.rows["torchscript"]["batchnorm_folded"] == 2
        assert result.rows["onnx"]["batchnorm_nodes"] == 0
    assert json.loads(result.json_path.read_text())["formats"].keys() == result.rows.keys()


@pytest.mark.slow
def test_artifacts_take_raw_inputs_and_give_the_run_models_classes(exported):
    from trainwise.export import load_artifact, load_model
    from trainwise.runfolder.saved import load_saved_run, rebuild_model
    from trainwise.data import apply_normalization

    _, run_dir, result = exported
    run = load_saved_run(str(run_dir), "best.pt")
    raw = torch.rand(64, *run.input_shape, generator=torch.Generator().manual_seed(0)) * 2
    with torch.no_grad():
        want = rebuild_model(run)(apply_normalization(raw, run.description["normalization"]))
    for format, path in result.paths.items():
        runner, meta = load_artifact(path, format=trusted_format(path))
        assert meta["data"]["input_shape"] == list(run.input_shape)
        with torch.no_grad():
            got = runner(raw)
        if format == "int8":  # random inputs lie far from the data: many sit near a class boundary,
            # where int8's rounding may flip the class; on the quarter fp32 is surest of, int8 must agree
            top2 = want.topk(2, dim=1).values
            clear = (top2[:, 0] - top2[:, 1]).argsort(descending=True)[: len(raw) // 4]
            assert torch.equal(got.argmax(1)[clear], want.argmax(1)[clear])
        else:
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3)
    with torch.no_grad():
        torch.testing.assert_close(load_model(result.paths["safetensors"])(raw), want)
