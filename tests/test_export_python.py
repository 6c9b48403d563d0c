"""``trainwise.export`` and ``trainwise.load_model`` from Python, on users' own modules: a module
with an example batch, normalization folded into the graph, scripting where tracing would bake in
control flow, safetensors loading with no pickle, and the failures (a disagreeing artifact is
removed, a pure conv net cannot be int8, a missing extra names its pip install)."""

from __future__ import annotations

import pickle
import sys

import pytest
import torch
from torch import nn

import trainwise
from trainwise.errors import ConfigError, ExportError
from trainwise.export import load_artifact, load_model, pipeline


def trusted_format(path) -> str | None:
    """The format to name for a file these tests wrote themselves (programs load only when named)."""
    return pipeline.CODE_FORMATS.get(path.suffix.lower())


class SmallNet(nn.Module):
    """Conv → BatchNorm → ReLU → Linear: an importable user class with no constructor arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(4 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Branchy(nn.Module):
    """Control flow on the batch size: a trace bakes one branch in, a script keeps both."""

    def __init__(self) -> None:
        super().__init__()
        self.small, self.large = nn.Linear(4, 2), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 4:
            return self.large(x)
        return self.small(x)


@pytest.fixture()
def net_and_data():
    torch.manual_seed(0)
    net = SmallNet()
    net.train()
    for _ in range(3):  # non-trivial BatchNorm statistics
        net(torch.randn(16, 2, 6) * 3 + 1)
    net.eval()
    x = torch.randn(40, 2, 6) * 3 + 1
    with torch.no_grad():
        y = net((x - 1.0) / 3.0).argmax(1)
    return net, x, y


NORMALIZATION = {"mean": [1.0, 1.0], "std": [3.0, 3.0]}


def test_a_user_module_exports_to_every_format_with_normalization_inside(net_and_data, tmp_path):
    net, x, y = net_and_data
    result = trainwise.export(net, format="all", example=x[:8], data=(x, y), out=tmp_path / "out",
                              normalization=NORMALIZATION, class_names=["a", "b", "c"])
    assert set(result.paths) == {"onnx", "torchscript", "pt2", "safetensors", "int8"}
    assert net.training is False and isinstance(net.features[1], nn.BatchNorm1d)  # the user's module untouched
    with torch.no_grad():
        want = net((x - 1.0) / 3.0)
    for format, path in result.paths.items():
        user_class = SmallNet() if path.suffix == ".safetensors" else None  # named by the user, not the file
        runner, meta = load_artifact(path, format=trusted_format(path), model=user_class)
        assert meta["data"]["class_names"] == ["a", "b", "c"]
        with torch.no_grad():
            got = runner(x)
        if format != "int8":
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3)
            assert result.rows[format]["artifact_accuracy"] == 100.0
    assert result.rows["torchscript"]["batchnorm_folded"] == 1
    assert result.rows["torchscript"]["method"] == "trace"


def test_load_model_reads_no_pickle(net_and_data, tmp_path, monkeypatch):
    net, x, _ = net_and_data
    path = tmp_path / "net.safetensors"
    trainwise.export(net, format="safetensors", example=x[:8], out=path, normalization=NORMALIZATION)

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded = load_model(path, model=SmallNet())  # the class the metadata names is never imported from it
    monkeypatch.undo()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net((x - 1.0) / 3.0))
    assert not loaded.training


def test_load_model_into_a_given_instance(net_and_data, tmp_path):
    net, x, _ = net_and_data
    path = tmp_path / "net.safetensors"
    trainwise.export(net, format="safetensors", example=x[:8], out=path)
    loaded = load_model(path, model=SmallNet())
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    with pytest.raises(ConfigError, match="never imports code a file names.*model=YourNet"):
        load_model(path)  # the metadata names test_export_python:SmallNet: data, not an import


def test_tracing_that_misses_control_flow_is_replaced_by_scripting(tmp_path):
    torch.manual_seed(0)
    model = Branchy()
    result = trainwise.export(model, format="torchscript", example=torch.randn(8, 4), out=tmp_path / "b.pt")
    assert result.rows["torchscript"]["method"] == "script"
    runner, _ = load_artifact(tmp_path / "b.pt", format="torchscript")
    small = torch.randn(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(runner(small), model(small))


def test_a_disagreeing_artifact_fails_and_is_removed(net_and_data, tmp_path, monkeypatch):
    net, x, _ = net_and_data
    writer, loader = pipeline.WRITERS["onnx"]

    def off_by_a_bit(path):
        runner, meta = loader(path)
        return (lambda batch: runner(batch) + 1e-2), meta

    monkeypatch.setitem(pipeline.WRITERS, "onnx", (writer, off_by_a_bit))
    with pytest.raises(ExportError, match=r"disagrees with the PyTorch model: max abs diff 0\.01.*removed"):
        trainwise.export(net, format="onnx", example=x[:8], out=tmp_path / "net.onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_pure_conv_net_cannot_be_int8_and_the_message_names_its_layers(tmp_path):
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ExportError, match=r"Sequential has none \(its layers: Conv2d x2, ReLU x1.*onnx or torchscript"):
        trainwise.export(conv, format="int8", example=torch.randn(4, 1, 8, 8), out=tmp_path / "m.int8.onnx")
    assert list(tmp_path.iterdir()) == []
    result = trainwise.export(conv, format="all", example=torch.randn(4, 1, 8, 8), out=tmp_path / "all")
    assert "int8" not in result.paths and "Conv2d" in result.skipped["int8"]


def test_a_missing_extra_names_the_pip_install(net_and_data, tmp_path, monkeypatch):
    net, x, _ = net_and_data
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ConfigError, match=r"needs the 'onnxscript' package.*pip install 'trainwise\[export\]'"):
        trainwise.export(net, format="onnx", example=x[:8], out=tmp_path / "net.onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_module_needs_an_example(net_and_data):
    net, x, _ = net_and_data
    with pytest.raises(ConfigError, match="example="):
        trainwise.export(net, format="onnx")
    with pytest.raises(ConfigError, match="float tensor batch"):
        trainwise.export(net, format="onnx", example=x[0].long())


def test_the_cli_prints_one_error_for_an_export_failure(net_and_data, tmp_path, monkeypatch, capsys):
    from trainwise.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["export", "missing-run", "--format", "onnx"]) == 2
    assert capsys.readouterr().err.strip() == ("error: run folder not found: missing-run; "
                                               "pass the folder a training run wrote")


def test_an_external_data_sidecar_is_folded_into_one_file(net_and_data, tmp_path, monkeypatch):
    import onnx

    net, x, _ = net_and_data
    original = torch.onnx.ONNXProgram.save

    def save_with_sidecar(self, destination, **kwargs):
        original(self, destination, external_data=True)
        assert (tmp_path / f"{destination.rsplit('/', 1)[-1]}.data").exists()

    monkeypatch.setattr(torch.onnx.ONNXProgram, "save", save_with_sidecar)
    trainwise.export(net, format="onnx", example=x[:8], out=tmp_path / "net.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json", "net.onnx"]
    model = onnx.load(str(tmp_path / "net.onnx"), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
