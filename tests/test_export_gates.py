"""Export verification that cannot be fooled: NaN/Inf outputs (PyTorch's or the artifact's),
outputs that ignore the input, any element out of tolerance, and int8 checked against fp32 with
no labels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import trainwise
from trainwise.errors import ExportError
from trainwise.export import gates, pipeline


class RareNaN(nn.Module):
    """A classifier whose outputs are NaN on the rows where the first feature is above 2.4."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x):
        return self.linear(x) + torch.log(2.4 - x[:, :1].clamp(max=2.4)) * 0 / (x[:, :1] < 2.4)


class GRUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 16, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.gru(x)[0][:, -1])


def test_a_model_with_rare_nan_outputs_fails_naming_the_rows(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(2000, 4)
    bad = int((x[:, 0] >= 2.4).sum())
    assert 0 < bad < 40
    with pytest.raises(ExportError, match=f"the PyTorch model gives NaN or Inf on {bad} of 2000 rows"):
        trainwise.export(RareNaN(), format="onnx", example=x[:8], data=(x, None), out=tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_an_artifact_with_nan_rows_beyond_the_batches_checked_fails(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model, x = nn.Linear(4, 3), torch.randn(500, 4).clamp(-1.9, 1.9)
    x[[100, 250, 499], 0] = 3.0  # past the batches of 1, 8 and 64 compare_outputs runs
    writer, loader = pipeline.WRITERS["torchscript"]

    def nan_on_late_rows(path):
        runner, meta = loader(path)

        def run(batch):
            out = runner(batch).clone()
            out[(batch[:, 0] > 2.0)] = float("nan")  # rows past the first 64 in this data
            return out
        return run, meta

    monkeypatch.setitem(pipeline.WRITERS, "torchscript", (writer, nan_on_late_rows))
    with pytest.raises(ExportError, match="the torchscript export gives NaN or Inf on 3 of 500 rows of the verification data "
                                          r"\(first: row 100\).*removed"):
        trainwise.export(model, format="torchscript", example=x[:8], data=(x, None), out=tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


def test_gates_refuse_constants_and_any_element_out_of_tolerance():
    x = torch.randn(10, 4)
    with pytest.raises(ExportError, match="the same output for all 10 distinct inputs"):
        gates.check_varies(x, torch.ones(10, 3), who="it gives", fix="fix")
    gates.check_varies(torch.ones(10, 4), torch.ones(10, 3), who="it gives", fix="fix")  # equal inputs: no verdict
    reference = torch.randn(10, 3)
    moved = reference.clone()
    moved[7, 1] += 0.5
    with pytest.raises(ExportError, match="on 1 of 10 rows.*worst at row 7"):
        gates.compare_all(reference, moved, atol=1e-4, rtol=1e-3, label="it")
    with_nan = reference.clone()
    with_nan[3, 0] = float("nan")
    with pytest.raises(ExportError, match="on 1 of 10 rows"):  # NaN is outside every tolerance
        gates.compare_all(reference, with_nan, atol=1e9, rtol=1e9, label="it")
    shifted = reference.double() + 1e-6
    figures = gates.compare_all(reference.double(), shifted, atol=1e-4, rtol=1e-3, label="it")
    assert figures["max_abs_diff"] == pytest.approx(float((shifted - reference.double()).abs().max()))
    assert gates.int8_agreement(reference, reference * 1.01 + 0.01, "regression")["int8_relative_rmse"] < 0.05


def test_the_int8_gate_works_without_labels(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model, x = GRUNet().eval(), torch.randn(300, 5, 3)
    result = trainwise.export(model, format="int8", example=x[:8], data=(x, None), out=tmp_path / "a.int8.pt")
    assert result.rows["int8"]["int8_agreement"] >= gates.INT8_MIN_AGREEMENT
    assert "int8_accuracy" not in result.rows["int8"]  # no labels: the agreement is the gate

    quantize = torch.ao.quantization.quantize_dynamic

    def scrambled(module, *args, **kwargs):  # a broken quantizer: classes rotated
        inner = quantize(module, *args, **kwargs)
        return nn.Sequential(inner, Rotate())

    monkeypatch.setattr(torch.ao.quantization, "quantize_dynamic", scrambled)
    with pytest.raises(ExportError, match=r"int8 keeps the fp32 model's top-1 class on \d+\.\d+% of the verification"):
        trainwise.export(model, format="int8", example=x[:8], data=(x, None), out=tmp_path / "b.int8.pt")
    assert not (tmp_path / "b.int8.pt").exists()


class Rotate(nn.Module):
    def forward(self, x):
        return torch.roll(x, 1, dims=1)
