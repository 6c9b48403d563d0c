"""Tests for trainwise.models.init: each scheme's variance formula, recurrent rules, GPT and LSUV."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainwise.errors import ConfigError
from trainwise.models.init import (
    GPT_STD,
    INIT_SCHEMES,
    count_residual_blocks,
    initialize,
    resolve_scheme,
)
from trainwise.models import activation_of, build_model

FAN_IN, FAN_OUT = 1024, 256  # different, so fan_in and fan_out formulas cannot be confused
# A variance estimated from 262,144 draws has a relative standard error below 0.3%.
REL_TOL = 0.03
RELU_GAIN2 = 2.0
LEAKY_GAIN2 = 2.0 / (1 + 0.01**2)
TANH_GAIN2 = (5.0 / 3.0) ** 2


def big_linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(FAN_IN, FAN_OUT)


@pytest.mark.parametrize(
    ("scheme", "activation", "variance", "uniform"),
    [
        ("xavier", "relu", 2 / (FAN_IN + FAN_OUT), True),
        ("xavier_uniform", "tanh", 2 / (FAN_IN + FAN_OUT), True),
        ("xavier_normal", "sigmoid", 2 / (FAN_IN + FAN_OUT), False),
        ("he", "relu", RELU_GAIN2 / FAN_IN, False),
        ("kaiming_normal", "gelu", RELU_GAIN2 / FAN_IN, False),
        ("kaiming_normal", "leaky_relu", LEAKY_GAIN2 / FAN_IN, False),
        ("kaiming_normal", "tanh", TANH_GAIN2 / FAN_IN, False),
        ("kaiming_uniform", "relu", RELU_GAIN2 / FAN_IN, True),
        ("he_fan_out", "relu", RELU_GAIN2 / FAN_OUT, False),
        ("kaiming_normal_fan_out", "silu", RELU_GAIN2 / FAN_OUT, False),
        ("lecun", "selu", 1 / FAN_IN, False),
        ("gpt", "gelu", GPT_STD**2, False),
        ("auto", "relu", RELU_GAIN2 / FAN_IN, False),
        ("auto", "elu", RELU_GAIN2 / FAN_IN, False),
        ("auto", "tanh", 2 / (FAN_IN + FAN_OUT), True),
        ("auto", "sigmoid", 2 / (FAN_IN + FAN_OUT), True),
        ("auto", "selu", 1 / FAN_IN, False),
    ],
)
def test_weight_variance_matches_formula(
    scheme: str, activation: str, variance: float, uniform: bool
) -> None:
    layer = big_linear()
    initialize(layer, scheme, activation=activation)
    weight = layer.weight.detach()
    assert weight.var().item() == pytest.approx(variance, rel=REL_TOL)
    assert abs(weight.mean().item()) < 0.01 * math.sqrt(variance)
    # A uniform draw never exceeds sqrt(3 var); a normal one of this size always does.
    exceeds_uniform_bound = weight.abs().max().item() > math.sqrt(3 * variance) * 1.0001
    assert exceeds_uniform_bound is not uniform
    assert torch.count_nonzero(layer.bias) == 0


def test_conv_fan_counts_the_receptive_field() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 128, 3)
    initialize(conv, "he")
    assert conv.weight.var().item() == pytest.approx(2 / (64 * 9), rel=REL_TOL)
    conv1d = nn.Conv1d(64, 512, 5)
    initialize(conv1d, "he_fan_out")
    assert conv1d.weight.var().item() == pytest.approx(2 / (512 * 5), rel=REL_TOL)


@pytest.mark.parametrize(
    ("shape", "activation", "gain2"),
    [
        ((512, 512), "relu", RELU_GAIN2),
        ((256, 1024), "tanh", TANH_GAIN2),
        ((300, 100), "sigmoid", 1.0),
    ],
)
def test_orthogonal_rows_or_columns_are_orthonormal_times_gain(
    shape: tuple[int, int], activation: str, gain2: float
) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(shape[1], shape[0])
    initialize(layer, "orthogonal", activation=activation)
    weight = layer.weight.detach().double()
    gram = weight @ weight.T if shape[0] <= shape[1] else weight.T @ weight
    identity = torch.eye(min(shape), dtype=torch.float64)
    torch.testing.assert_close(gram, gain2 * identity, atol=1e-5, rtol=0)


def model_with_norms() -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.GroupNorm(2, 8),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 6),
        nn.LayerNorm(6),
    )
    with torch.no_grad():
        for param in model.parameters():
            param.uniform_(0.5, 1.5)  # nothing starts at its target value
    return model


@pytest.mark.parametrize("scheme", [s for s in INIT_SCHEMES if s not in ("default", "lsuv")])
def test_every_scheme_zeroes_biases_and_resets_norms(scheme: str) -> None:
    model = model_with_norms()
    report = initialize(model, scheme)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            assert torch.all(module.weight == 1)
        if getattr(module, "bias", None) is not None:
            assert torch.count_nonzero(module.bias) == 0
    assert report["layers"] == {
        "0": report["scheme"],
        "1": "norm",
        "2": "norm",
        "4": "head normal(0, 0.1/sqrt(fan_in))" if scheme == "auto" else report["scheme"],
        "5": "norm",
    }


def test_default_leaves_everything_untouched() -> None:
    model = model_with_norms()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    report = initialize(model, "default")
    assert report == {
        "scheme": "default",
        "requested": "default",
        "activation": "relu",
        "layers": {},
    }
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize(
    ("activation", "expected"),
    [
        ("relu", "kaiming_normal"),
        ("leaky_relu", "kaiming_normal"),
        ("gelu", "kaiming_normal"),
        ("silu", "kaiming_normal"),
        ("elu", "kaiming_normal"),
        ("tanh", "xavier_uniform"),
        ("sigmoid", "xavier_uniform"),
        ("selu", "lecun"),
    ],
)
def test_auto_picks_scheme_by_activation(activation: str, expected: str) -> None:
    assert resolve_scheme("auto", activation) == expected
    report = initialize(nn.Linear(4, 4), "auto", activation=activation)
    assert (report["scheme"], report["requested"]) == (expected, "auto")


@pytest.mark.parametrize(
    ("alias", "scheme"),
    [
        ("xavier", "xavier_uniform"),
        ("he", "kaiming_normal"),
        ("he_fan_out", "kaiming_normal_fan_out"),
    ],
)
def test_aliases(alias: str, scheme: str) -> None:
    assert resolve_scheme(alias, "relu") == scheme


@pytest.mark.parametrize("scheme", ["he", "gpt", "orthogonal", "lsuv", "auto"])
def test_recurrent_layers_orthogonal_hidden_xavier_input_forget_bias(scheme: str) -> None:
    torch.manual_seed(0)
    model = build_model("lstm", input_shape=(32, 10), num_outputs=3, hidden=[64, 64])
    initialize(model, scheme, activation=activation_of(model), sample_input=torch.randn(8, 32, 10))
    lstm = model.rnn
    for layer in range(2):
        for gate in getattr(lstm, f"weight_hh_l{layer}").detach().double().split(64):
            torch.testing.assert_close(
                gate @ gate.T, torch.eye(64, dtype=torch.float64), atol=1e-5, rtol=0
            )
        fan_in = 32 if layer == 0 else 64
        input_weight = getattr(lstm, f"weight_ih_l{layer}").detach()
        assert input_weight.var().item() == pytest.approx(2 / (fan_in + 64), rel=0.1)
        bias_ih = getattr(lstm, f"bias_ih_l{layer}")
        expected = torch.zeros(4 * 64)
        expected[64:128] = 1.0  # gate order i, f, g, o: the forget gate starts open
        assert torch.equal(bias_ih, expected)
        assert torch.count_nonzero(getattr(lstm, f"bias_hh_l{layer}")) == 0


def test_gru_biases_all_zero() -> None:
    gru = nn.GRU(4, 8, num_layers=2, bidirectional=True)
    report = initialize(gru, "he")
    assert report["layers"] == {"": "recurrent"}
    for name, param in gru.named_parameters():
        if name.startswith("bias"):
            assert torch.count_nonzero(param) == 0, name


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.attn = nn.Module()
        self.attn.c_proj = nn.Linear(width, width)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(width, width)
        self.mlp.c_proj = nn.Linear(width, width)


class TinyGPT(nn.Module):
    def __init__(self, width: int = 512, depth: int = 3) -> None:
        super().__init__()
        self.wte = nn.Embedding(1000, width)
        self.h = nn.ModuleList(Block(width) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)


def test_gpt_scales_residual_projections_by_depth() -> None:
    torch.manual_seed(0)
    model = TinyGPT(depth=3)
    report = initialize(model, "gpt")
    residual_std = GPT_STD / math.sqrt(2 * 3)
    assert report["residual_std"] == pytest.approx(residual_std)
    for block in model.h:
        assert block.mlp.c_fc.weight.std().item() == pytest.approx(GPT_STD, rel=REL_TOL)
        for projection in (block.attn.c_proj, block.mlp.c_proj):
            assert projection.weight.std().item() == pytest.approx(residual_std, rel=REL_TOL)
    assert model.wte.weight.std().item() == pytest.approx(GPT_STD, rel=REL_TOL)


def test_gpt_embeddings_only_set_by_gpt() -> None:
    torch.manual_seed(0)
    embedding = nn.Embedding(1000, 256)
    initialize(embedding, "he")
    assert embedding.weight.std().item() == pytest.approx(1.0, rel=REL_TOL)  # PyTorch's N(0, 1)


def test_gpt_reaches_attention_and_flagged_modules() -> None:
    torch.manual_seed(0)
    encoder = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(256, 4, 512, batch_first=True),
        num_layers=2,
        enable_nested_tensor=False,
    )
    initialize(encoder, "gpt")
    attention = encoder.layers[0].self_attn
    assert attention.in_proj_weight.std().item() == pytest.approx(GPT_STD, rel=REL_TOL)
    assert torch.count_nonzero(attention.in_proj_bias) == 0
    assert attention.out_proj.weight.std().item() == pytest.approx(GPT_STD / 2, rel=REL_TOL)
    resnet = build_model("resnet", input_shape=(64, 16, 16), num_outputs=2, channels=[64, 64])
    report = initialize(resnet, "gpt")
    assert report["residual_std"] == pytest.approx(GPT_STD / 2)


@pytest.mark.parametrize(
    ("names", "blocks"),
    [
        (["h.0.attn.c_proj", "h.0.mlp.c_proj", "h.1.attn.c_proj", "h.1.mlp.c_proj"], 2),
        (["attn.c_proj", "mlp.c_proj"], 1),
        (["blocks.0.conv2", "blocks.1.conv2", "blocks.2.conv2"], 3),
    ],
)
def test_count_residual_blocks(names: list[str], blocks: int) -> None:
    assert count_residual_blocks(names) == blocks


def output_variances(model: nn.Module, sample: torch.Tensor) -> dict[str, float]:
    variances: dict[str, float] = {}

    def hook_for(name: str):
        def record(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
            variances.setdefault(name, output.var().item())

        return record

    handles = [
        module.register_forward_hook(hook_for(name))
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d))
    ]
    model.eval()
    with torch.no_grad():
        model(sample)
    for handle in handles:
        handle.remove()
    return variances


@pytest.mark.parametrize(
    ("name", "input_shape", "options"),
    [
        ("mlp", (32,), {"hidden": [64] * 8, "activation": "tanh"}),
        ("mlp", (32,), {"hidden": [64] * 8, "activation": "relu", "norm": "layer"}),
        ("cnn", (1, 16, 16), {"channels": [8, 16, 16], "norm": "batch"}),
        ("resnet", (2, 24), {"channels": [8, 16], "dropout": 0.5}),
    ],
)
def test_lsuv_gives_unit_output_variance_at_every_layer(
    name: str, input_shape: tuple[int, ...], options: dict
) -> None:
    torch.manual_seed(0)
    model = build_model(name, input_shape=input_shape, num_outputs=5, **options)
    sample = torch.randn(128, *input_shape) * 3 + 1
    report = initialize(model, "lsuv", sample_input=sample, lsuv_tol=0.02)
    variances = output_variances(model, sample)
    assert set(variances) == set(report["lsuv"])
    assert len(variances) >= 4
    for layer, variance in variances.items():
        assert variance == pytest.approx(1.0, abs=0.02), layer
        assert report["lsuv"][layer]["std"] == pytest.approx(math.sqrt(variance), rel=1e-4)


def test_lsuv_restores_training_mode_and_counts_rounds() -> None:
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    model.train()
    report = initialize(model, "lsuv", sample_input=3 * torch.randn(64, 16), lsuv_max_iters=1)
    assert model.training
    assert [entry["iterations"] for entry in report["lsuv"].values()] == [1, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scheme": "xavir"}, r"unknown init scheme 'xavir'; did you mean 'xavier'\?"),
        (
            {"scheme": "he", "activation": "reluu"},
            r"unknown activation 'reluu'; did you mean 'relu'\?",
        ),
        ({"scheme": "lsuv"}, r"'lsuv' needs sample_input, got None; pass one training batch"),
        (
            {"scheme": "lsuv", "sample_input": [1.0]},
            r"sample_input must be a torch.Tensor, got list",
        ),
        (
            {"scheme": "lsuv", "sample_input": torch.randn(2, 4), "lsuv_tol": 0},
            r"lsuv_tol must be in \(0, 1\), got 0",
        ),
        (
            {"scheme": "lsuv", "sample_input": torch.randn(2, 4), "lsuv_max_iters": 0},
            r"lsuv_max_iters must be an integer >= 1, got 0",
        ),
        (
            {"scheme": "lsuv", "sample_input": torch.randn(2, 5)},
            r"lsuv could not run the model on sample_input of shape \(2, 5\)",
        ),
    ],
)
def test_invalid_arguments_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        initialize(nn.Linear(4, 3), **kwargs)


def test_auto_starts_the_output_layer_small_so_the_loss_at_init_is_ln_classes() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    report = initialize(model, "auto", activation="relu")
    assert report["layers"]["0"] == "kaiming_normal" and report["layers"]["2"].startswith("head normal")
    assert model[2].weight.std().item() == pytest.approx(0.1 / math.sqrt(256), rel=0.05)
    x = torch.randn(2048, 64)
    y = torch.randint(0, 10, (2048,))
    loss = nn.functional.cross_entropy(model(x), y).item()
    assert loss == pytest.approx(math.log(10), rel=0.02)
    initialize(model, "he", activation="relu")  # an explicit scheme applies to every layer
    assert model[2].weight.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.05)
