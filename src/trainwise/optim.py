"""Optimizers with the parameter groups every fine-tuning guide recommends.

``build_optimizer`` never applies weight decay to biases, normalization parameters and embeddings,
scales the lr of earlier layers down on request (layer-wise lr decay), and lets named
groups pick their parameters by regular expression. Every group carries ``name`` and
``lr_scale``; ``set_lr`` writes ``lr * lr_scale`` into each, so one schedule drives all
groups. Frozen parameters stay in the optimizer: they get no gradient, so no optimizer
touches them, and unfreezing them later (``freeze_schedule``) needs no new optimizer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from trainwise.errors import ConfigError
from trainwise.checks import (
    check_bool,
    check_choice,
    check_int,
    check_range,
    did_you_mean,
)

OPTIMIZER_NAMES = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
SCALE_RULES = ("linear", "sqrt", "none")
GROUP_KEYS = ("name", "params", "lr_scale", "weight_decay")
# norm layers whose parameters never decay, whatever their shape: LayerNorm((2, 4)) has a 2-D weight
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
    nn.LayerNorm,
    nn.GroupNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def build_optimizer(
    model: nn.Module,
    name: str,
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    layer_lr_decay: float | None = None,
    param_groups: Sequence[Mapping[str, Any]] | None = None,
) -> torch.optim.Optimizer:
    """Build an optimizer over all of ``model``'s parameters, split into named groups.

    Args:
        model: the model; frozen parameters are included (see the module docstring).
        name: one of ``OPTIMIZER_NAMES``.
        lr: the base learning rate; each group gets ``lr * lr_scale``.
        weight_decay: decay for weights; biases, other 1-D parameters and every parameter
            of a normalization layer get none. AdamW decouples it; SGD, Adam, RMSprop and
            Adagrad add it to the gradient (L2).
        momentum: SGD's and RMSprop's momentum; unused by the others.
        nesterov: Nesterov momentum, for ``sgd`` with ``momentum > 0`` only.
        betas: Adam's and AdamW's coefficients.
        eps: the term added to denominators (Adam, AdamW, RMSprop, Adagrad).
        layer_lr_decay: when set, the last block gets ``lr`` and each earlier one
            ``layer_lr_decay`` times its successor's; see ``parameter_groups``.
        param_groups: named groups ``{"name", "params": regex, "lr_scale", "weight_decay"}``.

    Raises:
        ConfigError: an unknown name, an out-of-range value, nesterov without SGD momentum.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
        >>> opt = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.05)
        >>> [(g["name"], len(g["params"]), g["weight_decay"]) for g in opt.param_groups]
        [('decay', 2, 0.05), ('no_decay', 4, 0.0)]
    """
    check_choice("optimizer", name, OPTIMIZER_NAMES)
    check_range("lr", lr, 0, low_open=True)
    check_range("momentum", momentum, 0, 1, high_open=True)
    if not isinstance(betas, Sequence) or len(betas) != 2:
        raise ConfigError(f"betas must be a pair of numbers, got {betas!r}")
    check_range("betas[0]", betas[0], 0, 1, high_open=True)
    check_range("betas[1]", betas[1], 0, 1, high_open=True)
    check_range("eps", eps, 0, low_open=True)
    check_bool("nesterov", nesterov)
    if nesterov and name != "sgd":
        raise ConfigError(f"nesterov is only for sgd, got optimizer {name!r}")
    if nesterov and momentum == 0:
        raise ConfigError(f"nesterov needs momentum > 0, got {momentum}")
    groups = parameter_groups(
        model, weight_decay=weight_decay, layer_lr_decay=layer_lr_decay, param_groups=param_groups
    )
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov,
                               weight_decay=weight_decay)
    if name in ("adam", "adamw"):
        factory = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return factory(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, momentum=momentum, eps=eps,
                                   weight_decay=weight_decay)
    return torch.optim.Adagrad(groups, lr=lr, eps=eps, weight_decay=weight_decay)


def parameter_groups(
    model: nn.Module,
    *,
    weight_decay: float = 0.0,
    layer_lr_decay: float | None = None,
    param_groups: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Split ``model``'s parameters into the groups ``build_optimizer`` uses (without ``lr``).

    Each owner of parameters gets up to two groups, ``<owner>.decay`` and
    ``<owner>.no_decay`` (plain ``decay`` and ``no_decay`` for the default owner); empty
    ones are left out. Owners, in order:

    - each entry of ``param_groups``: the parameters whose name ``re.search``-matches its
      ``params`` regex and no earlier entry claimed, with its ``lr_scale`` (default 1)
      and ``weight_decay`` (default ``weight_decay``);
    - without ``layer_lr_decay``, the default owner for the rest;
    - with it, one owner per block, named by module path. The blocks are the children
      that hold parameters of the first module, from the model down through single-child
      wrappers, that has more than one; parameters held directly by that module (a class
      token, a position embedding) join the first block. Block ``i`` of ``n`` gets
      ``lr_scale = layer_lr_decay ** (n - 1 - i)``: the last block trains at ``lr``. Blocks
      count even when a named group claimed all their parameters, so a head moved into
      its own group leaves the depth of the blocks before it unchanged.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        >>> [(g["name"], g["lr_scale"]) for g in parameter_groups(model, layer_lr_decay=0.5)]
        [('0.decay', 0.5), ('0.no_decay', 0.5), ('1.decay', 1.0), ('1.no_decay', 1.0)]
    """
    check_range("weight_decay", weight_decay, 0)
    named = dict(model.named_parameters())
    if not named:
        raise ConfigError(f"model {type(model).__name__} has no parameters to optimize")
    no_decay = _no_decay_names(model)
    owners: list[tuple[str, float, float]] = []  # (label, lr_scale, weight_decay), in order
    owner_of: dict[str, int] = {}  # parameter name -> index into owners
    for spec in param_groups or ():
        label, lr_scale, decay, pattern = _check_group_spec(spec, weight_decay, owners)
        claimed = [p for p in named if p not in owner_of and pattern.search(p)]
        if not claimed:
            raise ConfigError(
                f"param group {label!r} regex {pattern.pattern!r} matches no parameter "
                f"not claimed by an earlier group; parameter names look like {list(named)[:5]}"
            )
        owner_of.update(dict.fromkeys(claimed, len(owners)))
        owners.append((label, lr_scale, decay))
    unclaimed = [p for p in named if p not in owner_of]
    if layer_lr_decay is None:
        owner_of.update(dict.fromkeys(unclaimed, len(owners)))
        owners.append(("", 1.0, weight_decay))
    else:
        check_range("layer_lr_decay", layer_lr_decay, 0, 1, low_open=True)
        blocks = _blocks(model, unclaimed)
        for depth, (block, members) in enumerate(blocks):
            owner_of.update(dict.fromkeys(members, len(owners)))
            owners.append((block, layer_lr_decay ** (len(blocks) - 1 - depth), weight_decay))
    kind_of = {n: "no_decay" if n in no_decay else "decay" for n in named}
    groups = []
    for index, (owner, lr_scale, decay) in enumerate(owners):
        for kind in ("decay", "no_decay"):
            params = [p for n, p in named.items() if owner_of[n] == index and kind_of[n] == kind]
            if params:
                groups.append({
                    "name": f"{owner}.{kind}" if owner else kind,
                    "params": params,
                    "lr_scale": lr_scale,
                    "weight_decay": decay if kind == "decay" else 0.0,
                })
    return groups


def _no_decay_names(model: nn.Module) -> set[str]:
    """Names of parameters that never decay: 1-D ones (biases, scales), norm layers' and embeddings'
    (a table row is a lookup, not a weight to shrink: minGPT's rule; a head tied to an embedding
    shares its parameter and therefore its group)."""
    names = {name for name, param in model.named_parameters() if param.ndim <= 1}
    for module_name, module in model.named_modules():
        if isinstance(module, (*NORM_LAYERS, nn.Embedding)):
            prefix = f"{module_name}." if module_name else ""
            names.update(prefix + name for name, _ in module.named_parameters(recurse=False))
    return names


def _check_group_spec(
    spec: Mapping[str, Any], weight_decay: float, earlier: Sequence[tuple[str, float, float]]
) -> tuple[str, float, float, re.Pattern[str]]:
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"each param group must be a mapping with keys {list(GROUP_KEYS)}, got {spec!r}"
        )
    unknown = sorted(set(spec) - set(GROUP_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in param group{did_you_mean(unknown[0], GROUP_KEYS)} "
            f"(valid: {', '.join(GROUP_KEYS)})"
        )
    name = spec.get("name")
    if not isinstance(name, str) or not name or name in [label for label, _, _ in earlier]:
        raise ConfigError(f"each param group needs a unique non-empty 'name', got {name!r}")
    regex = spec.get("params")
    if not isinstance(regex, str):
        raise ConfigError(
            f"param group {name!r} needs 'params', a regex on parameter names, got {regex!r}"
        )
    try:
        pattern = re.compile(regex)
    except re.error as error:
        raise ConfigError(
            f"param group {name!r} has an invalid regex {regex!r}: {error}"
        ) from error
    of_group = f"of param group {name!r}"
    lr_scale = check_range(f"lr_scale {of_group}", spec.get("lr_scale", 1.0), 0, low_open=True)
    decay = check_range(f"weight_decay {of_group}", spec.get("weight_decay", weight_decay), 0)
    return name, lr_scale, decay, pattern


def _blocks(model: nn.Module, names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Sort parameter ``names`` into the model's blocks, earliest first (``parameter_groups``)."""
    prefix, module = "", model
    while True:
        children = [(n, c) for n, c in module.named_children() if any(True for _ in c.parameters())]
        if len(children) != 1 or any(True for _ in module.parameters(recurse=False)):
            break
        prefix, module = f"{prefix}{children[0][0]}.", children[0][1]
    if not children:
        return [(prefix.rstrip(".") or "model", list(names))]
    blocks: list[tuple[str, list[str]]] = [(f"{prefix}{child}", []) for child, _ in children]
    for name in names:
        index = next((i for i, (block, _) in enumerate(blocks) if name.startswith(f"{block}.")), 0)
        blocks[index][1].append(name)
    return blocks


def scale_lr(lr: float, *, batch_size: int, base_batch_size: int, rule: str) -> float:
    """Scale a learning rate tuned at ``base_batch_size`` to ``batch_size``.

    ``linear`` (Goyal et al. 2017, for SGD) multiplies by ``batch_size / base_batch_size``;
    ``sqrt`` (often better for Adam) by its square root; ``none`` keeps ``lr``.

    Example:
        >>> scale_lr(0.1, batch_size=512, base_batch_size=256, rule="linear")
        0.2
    """
    check_range("lr", lr, 0, low_open=True)
    check_int("batch_size", batch_size, 1)
    check_int("base_batch_size", base_batch_size, 1)
    check_choice("lr scaling rule", rule, SCALE_RULES)
    if rule == "linear":
        return lr * batch_size / base_batch_size
    if rule == "sqrt":
        return lr * math.sqrt(batch_size / base_batch_size)
    return lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr to ``lr * group["lr_scale"]`` (scale 1 for groups without one)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def set_momentum(optimizer: torch.optim.Optimizer, momentum: float) -> None:
    """Set SGD's and RMSprop's ``momentum``, or beta1 of the Adam family, in every group.

    Raises:
        ConfigError: the optimizer has neither (Adagrad): turn off momentum cycling.
    """
    for group in optimizer.param_groups:
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        elif "momentum" in group:
            group["momentum"] = momentum
        else:
            raise ConfigError(
                f"{type(optimizer).__name__} has no momentum or beta1 to set; "
                "use cycle_momentum=false with this optimizer"
            )


def apply_freeze(model: nn.Module, frozen: Iterable[str]) -> None:
    """Stop gradients to every parameter of the named modules (names as in ``named_modules()``).

    Only parameters freeze: a norm layer in train mode still updates its running statistics.
    """
    for module in _find_modules(model, frozen).values():
        module.requires_grad_(False)


def freeze_schedule(model: nn.Module, unfreeze_at: Mapping[str, int], epoch: int) -> list[str]:
    """Freeze each named module before its epoch in ``unfreeze_at``, unfreeze it from then on.

    A pure function of ``epoch`` (0-based), like the lr schedules: call it at the start of
    every epoch, and a resumed run is right with nothing saved. Nested names apply
    outermost first, so ``{"backbone": 2, "backbone.stem": 5}`` keeps the stem frozen
    until epoch 5. Returns the names frozen during ``epoch``.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
        >>> freeze_schedule(model, {"0": 3}, epoch=0)
        ['0']
        >>> freeze_schedule(model, {"0": 3}, epoch=3)
        []
    """
    check_int("epoch", epoch, 0)
    modules = _find_modules(model, unfreeze_at)
    for name in modules:
        check_int(f"unfreeze epoch of {name!r}", unfreeze_at[name], 0)
    frozen = []
    for name in sorted(modules, key=lambda n: n.count(".")):
        modules[name].requires_grad_(epoch >= unfreeze_at[name])
        if epoch < unfreeze_at[name]:
            frozen.append(name)
    return sorted(frozen)


def _find_modules(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    if isinstance(names, str):
        raise ConfigError(f"module names must be a list, got the string {names!r}")
    available = dict(model.named_modules())
    found = {}
    for name in names:
        if not name or name not in available:
            top_level = [n for n, _ in model.named_children()]
            hint = did_you_mean(name, [n for n in available if n])
            raise ConfigError(
                f"unknown module {name!r} to freeze{hint} "
                f"(top-level modules: {', '.join(top_level)})"
            )
        found[name] = available[name]
    return found
