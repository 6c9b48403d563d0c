"""The search space: ``tune.space`` parsed and checked, and one trial's parameters sampled from it.

Each entry maps a config key (``optimizer.lr``) — or, for a Python objective, any name — to one
distribution::

    optimizer.lr:       {log_uniform: [1.0e-4, 1.0e-1]}
    model.dropout:      {uniform: [0.0, 0.5]}
    data.batch_size:    {int: [32, 256], step: 32}          # step optional (default 1); log: true
    optimizer.name:     {choice: [adamw, sgd]}
    optimizer.momentum: {uniform: [0.8, 0.99], when: {optimizer.name: sgd}}

``when`` makes a parameter conditional: it is sampled only when every named parameter (itself in
the space) took the given value, or one of a list of values; otherwise the config keeps its own.

Example:
    >>> space = parse_space({"optimizer.lr": {"log_uniform": [1e-4, 1e-1]}})
    >>> space["optimizer.lr"].kind
    'log_uniform'
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from trainwise.checks import closest
from trainwise.errors import ConfigError

KINDS = ("log_uniform", "uniform", "int", "choice")
_OPTIONS = (*KINDS, "step", "log", "when")


@dataclass(frozen=True)
class Param:
    """One dimension of the space. ``low``/``high`` for numbers, ``choices`` for a choice, ``when``
    the condition ``{parameter: (allowed values, ...)}`` (empty: always sampled)."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    step: Optional[float] = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def grid_values(self) -> list[Any]:
        """Every value of a discrete parameter (a choice, or an int range with its step)."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int" and not self.log:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        raise ConfigError(f"the grid sampler needs discrete values, got tune.space.{self.name} {self.kind}; "
                          "give {choice: [...]} or {int: [a, b], step: k} (no log), or use sampler random or tpe")

    def describe(self) -> dict[str, Any]:
        """Plain data, for the fingerprint that tells one study's space from another's."""
        return {"kind": self.kind, "low": self.low, "high": self.high, "step": self.step, "log": self.log,
                "choices": [encode(c) for c in self.choices],
                "when": {k: [encode(v) for v in vs] for k, vs in sorted(self.when.items())}}


def encode(value: Any) -> Any:
    """A choice as Optuna stores it: None, bools, numbers and strings as they are, anything else
    (a list such as ``model.hidden: [64, 64]``) as its JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return "json:" + json.dumps(value)


def decode(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("json:"):
        return json.loads(value[5:])
    return value


def parse_space(raw: Any) -> dict[str, Param]:
    """Check ``tune.space`` and return its parameters in sampling order (a condition's parameter
    before the parameters that depend on it).

    Raises:
        ConfigError: an empty space, an unknown distribution, an empty range, a log range that
            does not lie above zero, or a condition on a name that is not in the space.
    """
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"tune.space must map config keys to distributions, got {raw!r}; e.g. "
                          "space: {optimizer.lr: {log_uniform: [1.0e-4, 1.0e-1]}}")
    params = {str(name): _parse_param(str(name), spec) for name, spec in raw.items()}
    for param in params.values():
        for other in param.when:
            if other not in params:
                hint = closest(other, params)
                raise ConfigError(f"tune.space.{param.name}: 'when' names {other!r}, which is not a parameter of "
                                  f"tune.space" + (f"; did you mean {hint!r}?" if hint else ""))
    return _in_dependency_order(params)


def _parse_param(name: str, spec: Any) -> Param:
    where = f"tune.space.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping such as {{uniform: [0.0, 0.5]}}, got {spec!r}")
    kinds = [k for k in spec if k in KINDS]
    for key in spec:
        if key not in _OPTIONS:
            hint = closest(key, _OPTIONS)
            raise ConfigError(f"{where}: unknown option {key!r}" + (f"; did you mean {hint!r}?" if hint else "")
                              + f" (valid: {', '.join(_OPTIONS)})")
    if len(kinds) != 1:
        raise ConfigError(f"{where} needs exactly one of {', '.join(KINDS)}, got {sorted(spec)}")
    kind, value = kinds[0], spec[kinds[0]]
    when = _parse_when(where, spec.get("when"))
    if kind == "choice":
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where}: choice needs a non-empty list of values, got {value!r}")
        encoded = [encode(v) for v in value]
        if len(set(map(json.dumps, encoded))) != len(encoded):
            raise ConfigError(f"{where}: choice lists a value twice, got {value!r}")
        return Param(name, kind, choices=tuple(value), when=when)
    low, high = _bounds(where, kind, value)
    log = kind == "log_uniform" or bool(spec.get("log", False))
    step = spec.get("step")
    if kind == "int":
        if int(low) != low or int(high) != high:
            raise ConfigError(f"{where}: int needs whole-number bounds, got {value!r}")
        step = 1 if step is None else step
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ConfigError(f"{where}: step must be a whole number >= 1, got {step!r}")
        if log and step != 1:
            raise ConfigError(f"{where}: a log int range takes no step, got step {step}")
    elif step is not None and (not isinstance(step, (int, float)) or step <= 0 or log):
        raise ConfigError(f"{where}: step must be a number > 0 on a linear range, got {step!r}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range must lie above zero, got [{low:g}, {high:g}]; "
                          "use uniform for a range through zero")
    return Param(name, kind, low=low, high=high, step=step, log=log, when=when)


def _bounds(where: str, kind: str, value: Any) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        raise ConfigError(f"{where}: {kind} needs [low, high] with two finite numbers, got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not low < high:
        raise ConfigError(f"{where}: the range is empty, got [{value[0]}, {value[1]}]; low must be < high")
    return low, high


def _parse_when(where: str, when: Any) -> dict[str, tuple[Any, ...]]:
    if when is None:
        return {}
    if not isinstance(when, dict) or not when:
        raise ConfigError(f"{where}: when must map a parameter to its value(s), got {when!r}; "
                          "e.g. when: {optimizer.name: sgd}")
    return {str(k): tuple(v) if isinstance(v, list) else (v,) for k, v in when.items()}


def _in_dependency_order(params: dict[str, Param]) -> dict[str, Param]:
    ordered: dict[str, Param] = {}
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in ordered:
            return
        if name in visiting:
            raise ConfigError(f"tune.space: the conditions ('when') of {name!r} form a cycle")
        visiting.add(name)
        for other in params[name].when:
            visit(other)
        ordered[name] = params[name]

    for name in params:
        visit(name)
    return ordered


def fingerprint(space: dict[str, Param]) -> str:
    """Canonical JSON of the space: two studies with the same name must have the same one."""
    return json.dumps({name: p.describe() for name, p in sorted(space.items())}, sort_keys=True)


def suggest(trial: Any, space: dict[str, Param]) -> dict[str, Any]:
    """Sample one value per active parameter from an Optuna trial (a retried trial gets its fixed
    values back). Returns ``{name: value}``, choices decoded."""
    values: dict[str, Any] = {}
    for name, p in space.items():
        if any(values.get(other, _ABSENT) not in allowed for other, allowed in p.when.items()):
            continue
        if p.kind == "choice":
            values[name] = decode(trial.suggest_categorical(name, [encode(c) for c in p.choices]))
        elif p.kind == "int":
            values[name] = trial.suggest_int(name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            values[name] = trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
    return values


_ABSENT = object()


def decoded(params: dict[str, Any]) -> dict[str, Any]:
    """A finished trial's stored params with choices decoded."""
    return {name: decode(value) for name, value in params.items()}


def check_against_config(space: dict[str, Param], config: dict[str, Any]) -> None:
    """Every key of the space must name a config key (``section.key``); a did-you-mean otherwise.
    ``schedule`` takes any parameter (its extra keys are the schedule's own)."""
    for name in space:
        node: Any = config
        path: list[str] = []
        for part in name.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
                path.append(part)
                continue
            if path == ["schedule"] or (path[:2] == ["model", "args"]):
                break
            choices = list(node) if isinstance(node, dict) else []
            prefix = ".".join(path)
            hint = closest(part, choices)
            full = f"{prefix}.{hint}" if prefix and hint else hint
            raise ConfigError(f"tune.space: unknown config key {name!r}" + (f"; did you mean {full!r}?" if full else "")
                              + ("" if choices else f"; {prefix!r} is a value, not a section"))
        else:
            if isinstance(node, dict):
                raise ConfigError(f"tune.space: {name!r} is a section; name one of its keys, e.g. "
                                  f"{name}.{next(iter(node), 'key')}")
