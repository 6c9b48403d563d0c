"""Tests for trainwise.optim: parameter groups, optimizers, lr scaling, momentum, freezing."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
import torch
from torch import nn

from trainwise.errors import ConfigError
from trainwise.optim import (
    OPTIMIZER_NAMES,
    apply_freeze,
    build_optimizer,
    freeze_schedule,
    parameter_groups,
    scale_lr,
    set_lr,
    set_momentum,
)


def small_net() -> nn.Sequential:
    """Conv, a LayerNorm with a 2-D weight, BatchNorm, Linear, LayerNorm, head; input (N, 1, 2, 4)."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(1, 2, 3, padding=1, bias=False),  # BatchNorm follows
        ln2d=nn.LayerNorm([2, 4]),
        bn=nn.BatchNorm2d(2),
        act=nn.ReLU(),
        flat=nn.Flatten(),
        linear=nn.Linear(16, 8),
        ln=nn.LayerNorm(8),
        head=nn.Linear(8, 3),
    ))


def names_by_group(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, set[str]]:
    name_of = {id(p): n for n, p in model.named_parameters()}
    return {g["name"]: {name_of[id(p)] for p in g["params"]} for g in optimizer.param_groups}


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    model(torch.randn(4, 1, 2, 4)).square().mean().backward()
    optimizer.step()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_decay_split_has_exact_membership() -> None:
    model = small_net()
    optimizer = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.1)
    assert names_by_group(model, optimizer) == {
        "decay": {"conv.weight", "linear.weight", "head.weight"},
        "no_decay": {"bn.weight", "bn.bias", "ln2d.weight", "ln2d.bias",
                     "linear.bias", "ln.weight", "ln.bias", "head.bias"},
    }
    assert [(g["weight_decay"], g["lr_scale"], g["lr"]) for g in optimizer.param_groups] == [
        (0.1, 1.0, 1e-3), (0.0, 1.0, 1e-3)
    ]


def test_weight_decay_shrinks_only_the_decay_group() -> None:
    model = small_net()
    optimizer = build_optimizer(model, "sgd", lr=0.1, weight_decay=0.5, momentum=0.0)
    before = snapshot(model)
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    optimizer.step()
    decayed = {"conv.weight", "linear.weight", "head.weight"}
    for name, param in model.named_parameters():
        if name in decayed:
            assert torch.allclose(param, before[name] * (1 - 0.1 * 0.5), rtol=1e-6, atol=0), name
        else:
            assert torch.equal(param, before[name]), name


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_every_optimizer_builds_and_steps(name: str) -> None:
    model = small_net()
    optimizer = build_optimizer(model, name, lr=0.01, weight_decay=1e-4)
    assert all(g["lr"] == 0.01 for g in optimizer.param_groups)
    before = snapshot(model)
    train_step(model, optimizer)
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_optimizer_arguments_reach_torch() -> None:
    model = small_net()
    sgd = build_optimizer(model, "sgd", lr=0.1, momentum=0.8, nesterov=True)
    assert (sgd.defaults["momentum"], sgd.defaults["nesterov"]) == (0.8, True)
    adam = build_optimizer(model, "adam", lr=0.1, betas=(0.8, 0.99), eps=1e-6)
    assert (adam.param_groups[0]["betas"], adam.defaults["eps"]) == ((0.8, 0.99), 1e-6)
    assert isinstance(build_optimizer(model, "adamw", lr=0.1), torch.optim.AdamW)


@pytest.mark.parametrize(
    ("rule", "batch_size", "expected"),
    [("linear", 512, 0.2), ("linear", 64, 0.025), ("sqrt", 1024, 0.2), ("sqrt", 64, 0.05), ("none", 4096, 0.1)],
)
def test_scale_lr_values(rule: str, batch_size: int, expected: float) -> None:
    assert scale_lr(0.1, batch_size=batch_size, base_batch_size=256, rule=rule) == pytest.approx(expected, rel=1e-15)


def test_layer_lr_decay_scales_blocks_from_the_last() -> None:
    model = nn.Sequential(*(nn.Linear(3, 3) for _ in range(4)))
    optimizer = build_optimizer(model, "sgd", lr=1.0, layer_lr_decay=0.5)
    scales = {g["name"]: g["lr_scale"] for g in optimizer.param_groups}
    assert scales == {f"{i}.{kind}": 0.5 ** (3 - i) for i in range(4) for kind in ("decay", "no_decay")}
    assert all(g["lr"] == g["lr_scale"] for g in optimizer.param_groups)


class Wrapped(nn.Module):
    """A single-child wrapper around the blocks, with a class token on the inner module."""

    def __init__(self) -> None:
        super().__init__()
        inner = nn.Module()
        inner.token = nn.Parameter(torch.zeros(1, 3))
        inner.embed = nn.Linear(3, 3)
        inner.act = nn.ReLU()
        inner.head = nn.Linear(3, 3)
        self.net = inner


def test_layer_lr_decay_descends_wrappers_and_puts_own_params_first() -> None:
    model = Wrapped()
    groups = parameter_groups(model, layer_lr_decay=0.1)
    by_name = {g["name"]: (g["lr_scale"], {id(p) for p in g["params"]}) for g in groups}
    net = model.net
    assert by_name == {
        "net.embed.decay": (0.1, {id(net.token), id(net.embed.weight)}),
        "net.embed.no_decay": (0.1, {id(net.embed.bias)}),
        "net.head.decay": (1.0, {id(net.head.weight)}),
        "net.head.no_decay": (1.0, {id(net.head.bias)}),
    }


def test_param_group_regex_and_defaults() -> None:
    model = small_net()
    optimizer = build_optimizer(
        model, "adamw", lr=0.01, weight_decay=0.1,
        param_groups=[{"name": "head", "params": r"^head\.", "lr_scale": 10.0, "weight_decay": 0.01},
                      {"name": "norms", "params": r"ln"}],
    )
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert names_by_group(model, optimizer) == {
        "head.decay": {"head.weight"},
        "head.no_decay": {"head.bias"},
        "norms.no_decay": {"ln2d.weight", "ln2d.bias", "ln.weight", "ln.bias"},
        "decay": {"conv.weight", "linear.weight"},
        "no_decay": {"bn.weight", "bn.bias", "linear.bias"},
    }
    assert (groups["head.decay"]["lr"], groups["head.decay"]["weight_decay"]) == (pytest.approx(0.1), 0.01)
    assert groups["head.no_decay"]["weight_decay"] == 0.0
    assert groups["norms.no_decay"]["lr_scale"] == 1.0


def test_param_groups_with_layer_decay_keep_block_depths() -> None:
    model = nn.Sequential(OrderedDict(a=nn.Linear(2, 2), b=nn.Linear(2, 2), head=nn.Linear(2, 2)))
    # a group may share its name with a block: they stay apart
    groups = parameter_groups(model, layer_lr_decay=0.5,
                              param_groups=[{"name": "head", "params": "head", "lr_scale": 3.0}])
    assert [(g["name"], g["lr_scale"]) for g in groups] == [
        ("head.decay", 3.0), ("head.no_decay", 3.0),
        ("a.decay", 0.25), ("a.no_decay", 0.25), ("b.decay", 0.5), ("b.no_decay", 0.5),
    ]


def test_set_lr_respects_lr_scale() -> None:
    model = small_net()
    optimizer = build_optimizer(model, "sgd", lr=0.1,
                                param_groups=[{"name": "head", "params": "head", "lr_scale": 4.0}])
    set_lr(optimizer, 0.5)
    assert {g["name"]: g["lr"] for g in optimizer.param_groups} == {
        "head.decay": 2.0, "head.no_decay": 2.0, "decay": 0.5, "no_decay": 0.5,
    }


@pytest.mark.parametrize(("name", "read"), [
    ("sgd", lambda g: g["momentum"]),
    ("rmsprop", lambda g: g["momentum"]),
    ("adam", lambda g: g["betas"]),
    ("adamw", lambda g: g["betas"]),
])
def test_set_momentum(name: str, read: Any) -> None:
    optimizer = build_optimizer(small_net(), name, lr=0.1, betas=(0.9, 0.95))
    set_momentum(optimizer, 0.85)
    expected = (0.85, 0.95) if name.startswith("adam") else 0.85
    assert [read(g) for g in optimizer.param_groups] == [expected, expected]


def test_set_momentum_on_adagrad_is_an_error() -> None:
    optimizer = build_optimizer(small_net(), "adagrad", lr=0.1)
    with pytest.raises(ConfigError, match=r"Adagrad has no momentum or beta1 to set; use cycle_momentum=false"):
        set_momentum(optimizer, 0.9)


def test_apply_freeze_stops_training_of_named_modules() -> None:
    model = small_net()
    optimizer = build_optimizer(model, "adamw", lr=0.1, weight_decay=0.1)
    apply_freeze(model, ["conv", "bn"])
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == {
        "conv.weight", "bn.weight", "bn.bias"
    }
    before = snapshot(model)
    train_step(model, optimizer)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(before) - {"conv.weight", "bn.weight", "bn.bias"}


def test_freeze_schedule_by_epoch() -> None:
    model = small_net()
    optimizer = build_optimizer(model, "sgd", lr=0.1)
    spec = {"conv": 2, "linear": 1}
    frozen_per_epoch = [freeze_schedule(model, spec, epoch) for epoch in range(3)]
    assert frozen_per_epoch == [["conv", "linear"], ["conv"], []]
    assert all(p.requires_grad for p in model.parameters())
    assert freeze_schedule(model, spec, epoch=1) == ["conv"]  # pure in the epoch: resume recomputes it
    before = snapshot(model)
    train_step(model, optimizer)
    assert torch.equal(model.conv.weight, before["conv.weight"])
    assert not torch.equal(model.linear.weight, before["linear.weight"])
    freeze_schedule(model, spec, epoch=2)
    train_step(model, optimizer)
    assert not torch.equal(model.conv.weight, before["conv.weight"])


def test_freeze_schedule_nested_names_apply_inner_last() -> None:
    model = nn.Sequential(OrderedDict(backbone=nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)),
                                      head=nn.Linear(2, 1)))
    spec = {"backbone.0": 5, "backbone": 2}
    assert freeze_schedule(model, spec, epoch=3) == ["backbone.0"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"backbone.1.weight", "backbone.1.bias", "head.weight", "head.bias"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "adam_w"}, r"unknown optimizer 'adam_w'; did you mean 'adamw'\?"),
        ({"lr": 0}, r"lr must be > 0, got 0"),
        ({"weight_decay": -0.1}, r"weight_decay must be >= 0, got -0.1"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
        ({"betas": (0.9, 1.0)}, r"betas\[1\] must be in \[0, 1\), got 1.0"),
        ({"betas": 0.9}, r"betas must be a pair of numbers, got 0.9"),
        ({"eps": 0.0}, r"eps must be > 0, got 0.0"),
        ({"nesterov": "true"}, r"nesterov must be true or false, got 'true'"),
        ({"name": "adam", "nesterov": True}, r"nesterov is only for sgd, got optimizer 'adam'"),
        ({"nesterov": True, "momentum": 0.0}, r"nesterov needs momentum > 0, got 0.0"),
        ({"layer_lr_decay": 0.0}, r"layer_lr_decay must be in \(0, 1\], got 0.0"),
        ({"layer_lr_decay": 1.5}, r"layer_lr_decay must be in \(0, 1\], got 1.5"),
        ({"param_groups": [{"name": "head", "params": "^classifier"}]},
         r"param group 'head' regex '\^classifier' matches no parameter"),
        ({"param_groups": [{"name": "a", "params": "head"}, {"name": "b", "params": "head"}]},
         r"param group 'b' regex 'head' matches no parameter not claimed by an earlier group"),
        ({"param_groups": [{"name": "head", "params": "("}]}, r"param group 'head' has an invalid regex '\('"),
        ({"param_groups": [{"name": "head", "params": "head", "lr_sclae": 2}]},
         r"unknown key 'lr_sclae' in param group; did you mean 'lr_scale'\?"),
        ({"param_groups": [{"params": "head"}]}, r"each param group needs a unique non-empty 'name', got None"),
        ({"param_groups": [{"name": "a", "params": "head"}, {"name": "a", "params": "conv"}]},
         r"each param group needs a unique non-empty 'name', got 'a'"),
        ({"param_groups": [{"name": "head", "params": "head", "lr_scale": -1}]},
         r"lr_scale of param group 'head' must be > 0, got -1"),
        ({"param_groups": ["head"]}, r"each param group must be a mapping"),
    ],
)
def test_build_optimizer_errors(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"name": "sgd", "lr": 0.1, **kwargs}
    with pytest.raises(ConfigError, match=message):
        build_optimizer(small_net(), arguments.pop("name"), **arguments)


def test_model_without_parameters_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"model ReLU has no parameters to optimize"):
        build_optimizer(nn.ReLU(), "sgd", lr=0.1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rule": "linaer"}, r"unknown lr scaling rule 'linaer'; did you mean 'linear'\?"),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
        ({"base_batch_size": 1.5}, r"base_batch_size must be an integer >= 1, got 1.5"),
        ({"lr": -1.0}, r"lr must be > 0, got -1.0"),
    ],
)
def test_scale_lr_errors(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"lr": 0.1, "batch_size": 64, "base_batch_size": 32, "rule": "linear", **kwargs}
    with pytest.raises(ConfigError, match=message):
        scale_lr(arguments.pop("lr"), **arguments)


def test_freeze_errors() -> None:
    model = small_net()
    with pytest.raises(ConfigError, match=r"unknown module 'lienar' to freeze; did you mean 'linear'\? \(top-level"):
        apply_freeze(model, ["lienar"])
    with pytest.raises(ConfigError, match=r"module names must be a list, got the string 'conv'"):
        apply_freeze(model, "conv")
    with pytest.raises(ConfigError, match=r"unfreeze epoch of 'conv' must be an integer >= 0, got -1"):
        freeze_schedule(model, {"conv": -1}, epoch=0)
    with pytest.raises(ConfigError, match=r"epoch must be an integer >= 0, got -1"):
        freeze_schedule(model, {"conv": 1}, epoch=-1)
