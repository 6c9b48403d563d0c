"""A finished run folder, read back for ``evaluate`` and ``predict``: its config, data.json, a
checkpoint, and the model rebuilt with the trained weights.

Every mistake a person can make here (a folder that is not a run, a missing checkpoint, a model
that cannot be rebuilt, weights that do not fit) raises a ``TrainwiseError`` whose message names
the fix, so the CLI prints one ``error:`` line.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from trainwise import checkpoint as ckpt
from trainwise.config.schema import RunConfig, config_from_dict
from trainwise.config.yaml_file import read_yaml_mapping
from trainwise.errors import CheckpointError, ConfigError, DataError, DataNotFoundError
from trainwise.metrics import LOSS_NAMES
from trainwise.models import build_model
from trainwise.models.from_file import builtin_name_from_file
from trainwise.models.to_fit import build_to_fit, misfit, tensor_shapes, too_many_layers
from trainwise.runfolder.description import PYTHON_DATASET, description_problem

__all__ = ["PYTHON_DATASET", "OriginalUnits", "SavedRun", "load_saved_run", "rebuild_model", "training_columns"]


@dataclass
class SavedRun:
    """What ``evaluate`` and ``predict`` read from a run folder."""

    folder: Path
    cfg: RunConfig
    description: dict[str, Any]  # data.json: task, input_shape, class_names, normalization, ...
    checkpoint: Path

    @property
    def task(self) -> str:
        return str(self.description["task"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(size) for size in self.description["input_shape"])

    @property
    def class_names(self) -> Optional[list[str]]:
        names = self.description.get("class_names")
        return None if not names else [str(name) for name in names]

    @property
    def loss_name(self) -> str:
        """The run's loss when it is a built-in one, else the task's default."""
        if self.cfg.train.loss in LOSS_NAMES:
            return str(self.cfg.train.loss)
        return "cross_entropy" if self.task == "classification" else "mse"


def load_saved_run(run_dir: str, checkpoint_name: str) -> SavedRun:
    """Read config.yaml, data.json and find the checkpoint (best.pt falls back to last.pt).

    Both files are checked as data from a stranger: a config that does not validate, or a data.json
    field out of range (``description_problem``), is refused in one line naming the file and key.

    Raises:
        DataNotFoundError: the folder is not a run folder (config.yaml or data.json missing).
        ConfigError: config.yaml does not validate. DataError: data.json is damaged.
        CheckpointError: the checkpoint is not there.
    """
    folder = Path(run_dir)
    config_path, data_path = folder / "config.yaml", folder / "data.json"
    for path in (config_path, data_path):
        if not path.is_file():
            raise DataNotFoundError(f"{folder} is not a trainwise run folder: {path} is missing; "
                                    "pass the folder a training run wrote")
    raw_config = read_yaml_mapping(config_path, what="the run folder's config")
    try:
        cfg = config_from_dict(raw_config)
    except ConfigError as error:
        raise ConfigError(f"{config_path}: {error}; the run folder is damaged: restore the config.yaml the run "
                          "wrote") from None
    try:
        description = json.loads(data_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {data_path}: {' '.join(str(error).split())[:200]}; the run folder is "
                        "damaged") from None
    if not isinstance(description, dict):
        raise DataError(f"{data_path} is not a JSON object; the run folder is damaged")
    problem = description_problem(description, required=("task", "input_shape", "num_outputs"))
    if problem is not None:
        raise DataError(f"{data_path}: {problem}; the run folder is damaged: restore the data.json the run wrote")
    path = folder / "checkpoints" / checkpoint_name
    if not path.is_file() and checkpoint_name == "best.pt":
        path = folder / "checkpoints" / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint {checkpoint_name} (nor last.pt) in {folder / 'checkpoints'}; "
                              "pass --checkpoint with a file that is there")
    return SavedRun(folder, cfg, description, path)


def rebuild_model(run: SavedRun, model_spec: Optional[str] = None) -> nn.Module:
    """The run's model with the checkpoint's weights, in eval mode, on the CPU.

    The model named in the run's config.yaml is rebuilt only when it is a built-in one: a
    ``package.module:factory`` read from a file is never imported (the folder may come from
    anyone); the user names it with ``model_spec`` (``--model``), and then the config's
    ``model.args`` go with it when it is the same factory.

    A built-in model is first built on the meta device and its tensors' shapes compared with the
    checkpoint's (``trainwise.models.to_fit``): sizes edited into config.yaml or data.json
    allocate nothing; the first tensor that differs is named in one line.

    A regression run whose targets were standardized gets its outputs turned back into the
    original units (``output * std + mean`` from data.json's ``target_normalization``).

    Raises:
        ConfigError: the model cannot be rebuilt (a user model not named, an import error); the
            message names ``--model``.
        CheckpointError: the weights do not fit the model (expected and found shape of the first
            tensor that differs).
    """
    if model_spec is None:
        name = builtin_name_from_file(run.cfg.model.name, where=f"the run folder {run.folder}'s config.yaml",
                                      fix=f"pass --model {_user_spec_hint(run.cfg.model.name)} (Python: "
                                          "model_spec=...) naming the factory that builds this run's network")
    else:
        name = model_spec
    from_config = model_spec is None or model_spec == run.cfg.model.name
    options = _options(run, name, from_config=from_config)
    build = _builder(run, name, options)
    state = ckpt.load_checkpoint(run.checkpoint)["model"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{run.checkpoint} holds no state dict under 'model'; the checkpoint is damaged")
    found = tensor_shapes(state)
    built_from = f" from {run.folder / 'config.yaml'} and data.json" if from_config and ":" not in name else ""
    fix = ("restore the run's config.yaml and data.json, or pass --model package.module:factory" if built_from
           else "pass --model package.module:factory")

    def refuse(problem: str) -> CheckpointError:
        return CheckpointError(f"the weights in {run.checkpoint} do not fit the model built by {name!r}{built_from} "
                               f"({problem}); {fix} that builds the network this run trained")

    if ":" in name:  # a user's code may make tensors off the default device: built as it is, then compared
        model = build()
        problem = misfit(model, found)
        if problem is not None:
            raise refuse(problem)
    else:  # a size read from a file allocates nothing until the checkpoint's tensors confirm it
        problem = too_many_layers(name, options, len(found))
        if problem is not None:
            raise refuse(problem)
        model = build_to_fit(build, found, refuse=refuse)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        detail = " ".join(line.strip() for line in str(error).strip().splitlines()[:2])
        raise refuse(detail[:300]) from None
    model.eval()
    target_normalization = run.description.get("target_normalization")
    if run.task == "regression" and target_normalization:
        model = OriginalUnits(model, target_normalization)
    return model


def _user_spec_hint(name: Any) -> str:
    """The config's own spec when it looks like one the user could type, else the placeholder."""
    if isinstance(name, str) and ":" in name and not name.startswith("__main__:") and name.isprintable():
        return name if len(name) <= 80 else "package.module:factory"
    return "package.module:factory"


def _options(run: SavedRun, name: str, *, from_config: bool) -> dict[str, Any]:
    """The config's options for ``build_model``: a user factory's ``args``, a built-in model's sizes."""
    m = run.cfg.model
    if from_config and ":" in name:
        return dict(args=m.args)
    if from_config:
        return dict(hidden=m.hidden, norm=m.norm, dropout=m.dropout, activation=m.activation, channels=m.channels,
                    kernel_size=m.kernel_size, pool=m.pool, layers=m.layers, heads=m.heads, width=m.width,
                    norm_position=m.norm_position)
    return {}


def _builder(run: SavedRun, name: str, options: dict[str, Any]) -> Callable[[], nn.Module]:
    """What builds the run's model (a script's own class refused at once: it cannot be imported)."""
    if name.startswith("__main__:"):
        raise ConfigError(
            f"cannot rebuild model {name!r}: it was defined in the script that trained it, which "
            "trainwise cannot import; pass --model package.module:factory naming a function or class "
            "in an importable module that builds the same network"
        )

    def build() -> nn.Module:
        try:
            return build_model(name, input_shape=run.input_shape, num_outputs=int(run.description["num_outputs"]),
                               **options)
        except ConfigError as error:
            if ":" not in name:
                raise
            raise ConfigError(f"cannot rebuild the run's model: {error}; or pass --model "
                              "package.module:factory to rebuild it another way") from error

    return build


class OriginalUnits(nn.Module):
    """Wraps a regression model trained on standardized targets: outputs in the original units."""

    def __init__(self, model: nn.Module, target_normalization: dict[str, list[float]]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(target_normalization["mean"], dtype=torch.float32))
        self.register_buffer("std", torch.tensor(target_normalization["std"], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.std + self.mean


def training_columns(run: SavedRun) -> tuple[Optional[list[str]], Optional[str]]:
    """The feature columns the model was trained on, in order, and the target column.

    From data.json's ``feature_names`` when it has them, else from the header of the training
    CSV (config ``data.path``) when it is still there; ``(None, target)`` when unknown.
    """
    target = run.cfg.data.target or run.description.get("target")  # default: the last column, recorded
    names = run.description.get("feature_names")
    if names:
        return [str(name) for name in names], target
    path = run.cfg.data.path
    if run.cfg.data.dataset != "csv" or not path or not Path(path).is_file():
        return None, target
    from trainwise.data.tabular import csv_delimiter  # training's rule

    with open(path, newline="", encoding="utf-8-sig") as handle:
        delimiter = csv_delimiter(Path(path))
        header = next((row for row in csv.reader(handle, delimiter=delimiter) if any(row)), [])
    header = [name.strip() for name in header]
    target = target or (header[-1] if header else None)
    return [name for name in header if name != target], target
