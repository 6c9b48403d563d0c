"""The Ray backend's settings and PBT's rules, without starting Ray: which keys a running trial may
change, perturbed values kept in range, a parent's checkpoint given the child's values, and the
settings' one-line errors."""

from __future__ import annotations

import pytest
import torch
import trainwise
from trainwise.errors import ConfigError
from trainwise.optim import build_optimizer
from trainwise.tune.pbt import KeepInRange, check_mutable, give_new_values
from trainwise.tune.settings import parse_settings
from trainwise.tune.space import parse_space

SPACE = {"optimizer.lr": {"log_uniform": [1e-4, 1e-1]}}


@pytest.mark.parametrize("raw, message", [
    ({"backend": "rey"}, "unknown tune.backend 'rey'; did you mean 'ray'"),
    ({"backend": "ray", "resources": {"cpus": 1}}, "unknown tune.resources key 'cpus'; did you mean 'cpu'"),
    ({"backend": "ray", "resources": {"cpu": 0}}, r"tune.resources.cpu must be > 0 .*got 0"),
    ({"backend": "ray", "resources": {"gpu": -1}}, r"tune.resources.gpu must be"),
    ({"backend": "ray", "resources": 2}, r"tune.resources must map cpu and gpu"),
    ({"scheduler": "pbt"}, "tune.scheduler needs the Ray backend: add tune.backend: ray"),
    ({"resources": {"cpu": 1}}, "tune.resources needs the Ray backend"),
    ({"backend": "ray", "scheduler": "pbt", "pruner": "asha"}, "tune.scheduler pbt replaces the pruner"),
    ({"backend": "ray", "scheduler": "pbt", "sampler": "tpe"}, "pbt samples its first population at random"),
    ({"backend": "ray", "scheduler": "pbd"}, "unknown tune.scheduler 'pbd'; did you mean 'pbt'"),
    ({"backend": "ray", "scheduler": "pbt", "perturbation_interval": 0}, "tune.perturbation_interval must be"),
])
def test_ray_settings_errors(raw, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings({"space": SPACE, **raw})


def test_the_ray_backend_without_ray_is_one_line(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ConfigError, match=r"tune.backend ray needs the 'ray' package.*pip install 'trainwise\[ray\]'"):
        parse_settings({"space": SPACE, "backend": "ray"})


def test_ray_settings_defaults() -> None:
    s = parse_settings({"space": SPACE, "backend": "ray", "scheduler": "pbt", "resources": {"gpu": 0.5}})
    assert s.resources == {"cpu": 1, "gpu": 0.5} and s.pruner == "none" and s.sampler == "random"
    assert parse_settings({"space": SPACE}).backend == "optuna"


def test_pbt_refuses_what_cannot_change_mid_run() -> None:
    config = trainwise.load_config(None).to_dict()
    for key, spec in (("model.hidden", {"choice": [[8], [32]]}), ("data.batch_size", {"int": [32, 64]})):
        with pytest.raises(ConfigError, match=f"tune.scheduler pbt cannot change {key} mid-run"):
            check_mutable(parse_space({key: spec}), config)
    with pytest.raises(ConfigError, match="needs a fixed optimizer.lr"):
        check_mutable(parse_space({"model.dropout": {"uniform": [0.0, 0.5]}}), config)  # default lr: auto
    check_mutable(parse_space({"optimizer.lr": {"log_uniform": [1e-4, 1e-1]},
                               "model.dropout": {"uniform": [0.0, 0.5]}}), config)


def test_perturbed_values_stay_in_their_ranges() -> None:
    keep = KeepInRange(parse_space({"model.dropout": {"uniform": [0.0, 0.5]},
                                    "optimizer.lr": {"log_uniform": [1e-4, 1e-1]},
                                    "train.grad_clip": {"int": [1, 5]}}))
    assert keep({"model.dropout": 0.6, "optimizer.lr": 1.2e-1, "train.grad_clip": 5.6}) == \
        {"model.dropout": 0.5, "optimizer.lr": 1e-1, "train.grad_clip": 5}
    assert keep({"model.dropout": 0.24, "optimizer.lr": 5e-5, "train.grad_clip": 0.8}) == \
        {"model.dropout": 0.24, "optimizer.lr": 1e-4, "train.grad_clip": 1}


def test_a_parents_checkpoint_gets_the_childs_values() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    optimizer = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.01)
    state = {"optimizer": optimizer.state_dict(),
             "config": {"optimizer": {"lr": 1e-3, "weight_decay": 0.01, "momentum": 0.9}, "model": {"dropout": 0.1}}}
    changes = give_new_values(state, {"optimizer.lr": 2e-3, "optimizer.weight_decay": 0.05, "model.dropout": 0.1,
                                      "optimizer.momentum": 0.8})
    assert changes == ["optimizer.lr: 0.001 -> 0.002", "optimizer.weight_decay: 0.01 -> 0.05",
                       "optimizer.momentum: 0.9 -> 0.8"]
    assert state["config"]["optimizer"] == {"lr": 2e-3, "weight_decay": 0.05, "momentum": 0.8}
    decays = sorted(g["weight_decay"] for g in state["optimizer"]["param_groups"])
    assert decays == [0.0, 0.05]  # biases and norms keep no decay
    assert all(g["betas"] == (0.9, 0.999) for g in state["optimizer"]["param_groups"])  # Adam: optimizer.betas
    sgd = build_optimizer(model, "sgd", lr=1e-3, momentum=0.9, weight_decay=0.01)
    state = {"optimizer": sgd.state_dict(), "config": {"optimizer": {"momentum": 0.9}}}
    give_new_values(state, {"optimizer.momentum": 0.8})
    assert [g["momentum"] for g in state["optimizer"]["param_groups"]] == [0.8, 0.8]


def test_lineage_files(tmp_path) -> None:
    import json

    from trainwise.tune.pbt import write_lineage

    trials = {0: {"reports": [{"epoch": 1, "value": 0.5, "segment": 0, "sha256": "a"},
                              {"epoch": 2, "value": 0.6, "segment": 0, "sha256": "b"}],
                  "perturbations": [], "restores": []},
              1: {"reports": [{"epoch": 1, "value": 0.3, "segment": 0, "sha256": "c"},
                              {"epoch": 2, "value": 0.62, "segment": 1, "sha256": "d"}],
                  "perturbations": [{"segment": 1, "parent": 0, "parent_epoch": 1, "parent_sha256": "a",
                                     "changes": "optimizer.lr: 0.01 -> 0.012", "params": {"optimizer.lr": 0.012}}],
                  "restores": []}}
    write_lineage(trials, tmp_path, "val_accuracy")
    data = json.loads((tmp_path / "lineage.json").read_text())
    assert data["metric"] == "val_accuracy" and data["trials"]["1"]["perturbations"][0]["parent_sha256"] == "a"
    assert (tmp_path / "lineage.png").read_bytes()[:4] == b"\x89PNG"
