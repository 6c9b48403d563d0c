"""Tests for trainwise.models: built-in models, option checks, user factories."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch
from torch import nn

from trainwise.errors import ConfigError
from trainwise.models import (
    ACTIVATIONS,
    CNN,
    MLP,
    MODEL_NAMES,
    BasicBlock,
    RecurrentNet,
    ResNet,
    activation_of,
    build_model,
)
from trainwise.models.layers import group_count

BATCH = 4


def run_forward(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    torch.manual_seed(0)
    return model(torch.randn(BATCH, *input_shape))


@pytest.mark.parametrize(
    ("name", "input_shape", "options"),
    [
        ("mlp", (64,), {}),
        ("mlp", (1, 8, 8), {"hidden": [16, 8], "norm": "batch", "dropout": 0.3}),
        ("mlp", (3, 5), {"hidden": [16], "norm": "layer", "activation": "gelu"}),
        ("mlp", (7,), {"hidden": []}),
        ("mlp", (7,), {"hidden": [], "dropout": 0.5}),
        ("cnn", (1, 40), {}),
        ("cnn", (40,), {"channels": [4, 8]}),
        ("cnn", (1, 8, 8), {"channels": [4, 8], "norm": "batch", "pool": "avg"}),
        ("cnn", (3, 16, 16), {"channels": [4], "norm": "group", "kernel_size": 5}),
        ("cnn", (2, 20), {"channels": [6, 6], "norm": "layer", "pool": "none", "hidden": []}),
        ("cnn", (1, 28, 28), {"dropout": 0.5, "activation": "selu"}),
        ("resnet", (1, 40), {}),
        ("resnet", (1, 8, 8), {"channels": [4, 4, 8], "norm": "batch"}),
        ("resnet", (3, 12, 12), {"channels": [4, 8], "norm": "group", "pool": "avg"}),
        ("resnet", (40,), {"channels": [4], "norm": "layer", "pool": "none", "hidden": [8]}),
        ("gru", (1, 40), {}),
        ("gru", (40,), {"hidden": [8, 8], "dropout": 0.2}),
        ("lstm", (2, 10), {"hidden": [8]}),
        ("lstm", (1, 8, 8), {"hidden": [8, 8, 8], "dropout": 0.1}),
    ],
)
def test_forward_shape_finite_and_backward(
    name: str, input_shape: tuple[int, ...], options: dict
) -> None:
    model = build_model(name, input_shape=input_shape, num_outputs=3, **options)
    output = run_forward(model, input_shape)
    assert output.shape == (BATCH, 3)
    assert torch.isfinite(output).all()
    output.square().mean().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet"])
def test_every_activation_builds_and_is_recorded(name: str, activation: str) -> None:
    model = build_model(
        name, input_shape=(1, 8), num_outputs=2, activation=activation, channels=[4]
    )
    assert activation_of(model) == activation
    assert torch.isfinite(run_forward(model, (1, 8))).all()


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_recurrent_models_report_tanh(name: str) -> None:
    assert activation_of(build_model(name, input_shape=(1, 5), num_outputs=2)) == "tanh"


def test_activation_of_user_models() -> None:
    model = nn.Linear(2, 2)
    assert activation_of(model) == "relu"
    model.trainwise_activation = "tanh"
    assert activation_of(model) == "tanh"


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet", "gru", "lstm"])
def test_dropout_is_off_in_eval_and_on_in_train(name: str) -> None:
    model = build_model(
        name, input_shape=(2, 16), num_outputs=3, dropout=0.5, hidden=[32, 32], channels=[4]
    )
    x = torch.randn(BATCH, 2, 16)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    first = model(x)
    assert not torch.equal(first, model(x))


def test_defaults() -> None:
    assert MODEL_NAMES == ("mlp", "cnn", "resnet", "gru", "lstm", "gpt")
    cnn = build_model("cnn", input_shape=(1, 28, 28), num_outputs=10)
    convs = [m for m in cnn.modules() if isinstance(m, nn.Conv2d)]
    assert [conv.out_channels for conv in convs] == [32, 64, 64]
    assert [conv.kernel_size for conv in convs] == [(3, 3)] * 3
    # 28 -> 14 -> 7 -> 3 after three poolings: 64 * 3 * 3 values are flattened into a 128 head.
    linears = [m for m in cnn.modules() if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(576, 128), (128, 10)]
    mlp = build_model("mlp", input_shape=(64,), num_outputs=10)
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [128, 10]
    gru = build_model("gru", input_shape=(1, 40), num_outputs=10)
    assert (gru.rnn.hidden_size, gru.rnn.num_layers) == (64, 1)


def test_cnn_conv_dims_follow_input_shape() -> None:
    one_d = build_model("cnn", input_shape=(1, 40), num_outputs=10)
    two_d = build_model("cnn", input_shape=(1, 8, 8), num_outputs=10)
    assert any(isinstance(m, nn.Conv1d) for m in one_d.modules())
    assert any(isinstance(m, nn.Conv2d) for m in two_d.modules())


def test_cnn_averages_large_feature_maps_and_flattens_small_ones() -> None:
    large = build_model("cnn", input_shape=(3, 64, 64), num_outputs=2, channels=[8], pool="none")
    small = build_model("cnn", input_shape=(3, 8, 8), num_outputs=2, channels=[8], pool="none")
    assert any(isinstance(m, nn.AdaptiveAvgPool2d) for m in large.modules())
    assert large.head[0].in_features == 8
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in small.modules())
    assert small.head[0].in_features == 8 * 8 * 8


def test_conv_bias_is_dropped_before_batch_norm() -> None:
    model = build_model("cnn", input_shape=(1, 8, 8), num_outputs=2, channels=[4], norm="batch")
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.bias is None


def test_resnet_blocks_skip_projection_and_residual_marks() -> None:
    model = build_model("resnet", input_shape=(1, 16, 16), num_outputs=2, channels=[4, 4, 8])
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 3
    assert isinstance(blocks[1].skip, nn.Identity)
    assert isinstance(blocks[2].skip[0], nn.Conv2d)
    assert blocks[2].skip[0].kernel_size == (1, 1)
    assert blocks[2].conv1.stride == (2, 2)
    assert all(block.conv2._residual_projection for block in blocks)


@pytest.mark.parametrize(
    ("channels", "groups"), [(1, 1), (2, 1), (6, 3), (25, 5), (32, 16), (64, 32)]
)
def test_group_count(channels: int, groups: int) -> None:
    assert group_count(channels) == groups


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "mpl"}, r"unknown model 'mpl'; did you mean 'mlp'\? \(valid: mlp, cnn"),
        ({"norm": "bach"}, r"unknown norm 'bach'; did you mean 'batch'\?"),
        (
            {"name": "mlp", "norm": "group"},
            r"unknown mlp norm 'group' \(valid: none, batch, layer\)",
        ),
        ({"activation": "rellu"}, r"unknown activation 'rellu'; did you mean 'relu'\?"),
        ({"pool": "maxx"}, r"unknown pool 'maxx'; did you mean 'max'\?"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\), got -0.1"),
        ({"dropout": "0.5"}, r"dropout must be a number in \[0, 1\), got '0.5'"),
        ({"hidden": [0]}, r"cnn hidden must hold integers > 0, got \[0\]"),
        ({"hidden": "64"}, r"cnn hidden must be a list of positive integers, got '64'"),
        ({"channels": []}, r"channels must name at least one size, got \[\]"),
        ({"name": "mlp", "channels": [0]}, r"channels must hold integers > 0, got \[0\]"),
        ({"channels": [8, 2.5]}, r"channels must hold integers > 0, got \[8, 2.5\]"),
        ({"kernel_size": 4}, r"kernel_size must be odd .* got 4; use 5"),
        ({"kernel_size": 0}, r"kernel_size must be a positive odd integer, got 0"),
        ({"input_shape": ()}, r"input_shape must be a non-empty tuple"),
        ({"input_shape": (1, 0)}, r"input_shape must be a non-empty tuple .* got \(1, 0\)"),
        ({"input_shape": (1, 2, 3, 4)}, r"cnn needs input_shape \(L,\), \(C, L\) or \(C, H, W\)"),
        (
            {"input_shape": (1, 2, 2)},
            r"cannot pool again; use fewer channels entries or pool 'none'",
        ),
        ({"num_outputs": 0}, r"num_outputs must be an integer >= 1, got 0"),
        ({"args": {"width": 3}}, r"built-in model 'cnn' takes none, got \{'width': 3\}"),
        ({"args": [1]}, r"model args must be a mapping of keyword arguments, got \[1\]"),
        ({"name": 3}, r"model name must be a string, got 3"),
        ({"name": "gru", "hidden": [32, 16]}, r"share one hidden size .* use e.g. \[32, 32\]"),
        ({"name": "lstm", "hidden": []}, r"lstm hidden must name at least one size"),
        ({"name": "lstm", "input_shape": (1, 2, 3, 4)}, r"lstm needs input_shape"),
    ],
)
def test_invalid_options_raise(options: dict, message: str) -> None:
    arguments = {"name": "cnn", "input_shape": (1, 8, 8), "num_outputs": 2, **options}
    name = arguments.pop("name")
    with pytest.raises(ConfigError, match=message):
        build_model(name, **arguments)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: CNN((1, 8, 8), 2, channels=[]), r"cnn channels must name at least one size"),
        (lambda: ResNet((1, 8, 8), 2, channels=[4, -4]), r"resnet channels must hold integers > 0"),
        (lambda: MLP((4,), 2, hidden=[8, 0]), r"mlp hidden must hold integers > 0, got \[8, 0\]"),
        (lambda: RecurrentNet((1, 4), 2, cell="rnn"), r"unknown recurrent cell 'rnn'"),
        (lambda: ResNet((1, 1, 1), 2), r"cannot pool again"),
    ],
)
def test_model_classes_check_their_arguments(build, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()


USER_MODULE = """
import torch
from torch import nn

def make_model(width=4, input_shape=None, num_outputs=None):
    layers = [nn.Flatten(), nn.Linear(input_shape[-1], width), nn.Linear(width, num_outputs)]
    return nn.Sequential(*layers)

class Net(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.layer = nn.Linear(3, width)

    def forward(self, x):
        return self.layer(x)

def not_a_model():
    return [1, 2]

def broken(width):
    raise ValueError("width is too odd")

LIMIT = 3
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a module to tmp_path, importable under a fresh name; return a writer."""

    def write(source: str) -> str:
        name = f"user_models_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    return write


def build_user(spec: str, args: dict | None = None) -> nn.Module:
    return build_model(spec, input_shape=(1, 3), num_outputs=2, args=args)


def test_user_factory_gets_args_and_data_shape(user_module) -> None:
    name = user_module(USER_MODULE)
    model = build_user(f"{name}:make_model", {"width": 7})
    assert model[1].out_features == 7
    assert model(torch.randn(5, 1, 3)).shape == (5, 2)
    net = build_user(f"{name}:Net", {"width": 5})
    assert net.layer.out_features == 5
    assert activation_of(net) == "relu"


def test_user_module_in_working_directory_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"cwd_models_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, name, raising=False)
    assert isinstance(build_user(f"{name}:make_model"), nn.Sequential)


@pytest.mark.parametrize(
    ("source", "attribute", "args", "message"),
    [
        (
            USER_MODULE,
            "mak_model",
            None,
            r"has no attribute 'mak_model'; did you mean 'make_model'\?",
        ),
        (USER_MODULE, "LIMIT", None, r":LIMIT is a int, not callable; name a function or class"),
        (USER_MODULE, "not_a_model", None, r"returned a list, not a torch.nn.Module"),
        (USER_MODULE, "make_model", {"wdth": 3}, r"do not fit .*make_model\(width=4.*wdth"),
        (USER_MODULE, "broken", {"width": 1}, r"raised ValueError: width is too odd"),
        ("def f(:\n", "f", None, r"failed with SyntaxError: .*; fix the error in user_models_"),
        ("import not_a_real_dependency_xyz\n", "f", None, r"it needs 'not_a_real_dependency_xyz'"),
    ],
)
def test_user_factory_errors(
    user_module, source: str, attribute: str, args: dict | None, message: str
) -> None:
    name = user_module(source)
    with pytest.raises(ConfigError, match=message):
        build_user(f"{name}:{attribute}", args)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "no_such_module_xyz:make",
            r"cannot import module 'no_such_module_xyz' .* run from the folder",
        ),
        ("no_such_pkg_xyz.sub:make", r"no module named 'no_such_pkg_xyz'"),
        ("module:", r"must look like 'package.module:factory'"),
        (":factory", r"must look like 'package.module:factory'"),
        ("a:b:c", r"must look like 'package.module:factory'"),
    ],
)
def test_user_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_user(spec)
