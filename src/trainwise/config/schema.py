"""The typed run config: YAML load, ``a.b=value`` overrides, validation with did-you-mean.

Only the CLI turns a config into objects; library classes take explicit keyword arguments.

Example:
    >>> cfg = load_config("examples/digits.yaml", ["optimizer.lr=0.01"])
    >>> cfg.optimizer.lr
    0.01
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainwise.checks import OTHER_TOOLS_NAMES, closest, did_you_mean
from trainwise.errors import ConfigError

PositiveInt = int
GPT_WARMUP = 0.05  # a gpt's default warmup: the first 5% of the steps


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    dataset: str = "digits"
    root: Optional[str] = None
    path: Optional[str] = None
    target: Optional[str] = None
    drop_columns: list[str] = Field(default_factory=list)  # csv: columns that are not features (an id, a date)
    missing: Literal["refuse", "fill"] = "refuse"  # csv: fill a feature's gaps (training median + indicator)
    task: Optional[Literal["classification", "regression"]] = None
    batch_size: Union[int, Literal["auto"]] = 64  # "auto": the batch-size finder (trainwise.engine.batch_size)
    effective_batch_size: Optional[int] = Field(None, gt=0)  # with batch_size auto: kept by accumulation
    eval_batch_size: Optional[int] = Field(None, gt=0)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    normalize: bool = True
    standardize_target: bool = True
    augment: Union[str, dict[str, Union[bool, float, None]], None] = None
    class_weights: Optional[Literal["balanced"]] = None  # kept; loss.class_weights is the full form
    sampler: Optional[Literal["balanced"]] = None  # balanced: draw each class equally often (with replacement)
    # text (data.path: a .txt file, a folder of them, or builtin:pydoc)
    tokenizer: Literal["char", "byte"] = "char"
    block_size: int = Field(128, gt=0)
    # imagefolder (data.root: one folder per class)
    image_size: Optional[Union[int, tuple[int, int]]] = None  # [H, W] (or one side): resize every image
    channels: Optional[Literal[1, 3]] = None  # 1 grayscale, 3 colour; default: 3 when any image has colour
    strict: bool = False  # refuse a corrupt image instead of skipping it
    num_workers: Union[int, Literal["auto"]] = "auto"  # DataLoader workers decoding images; auto: from the cores
    cache: Union[bool, Literal["auto"]] = "auto"  # decoded images in memory; auto: when they fit (1 GiB)

    @field_validator("num_workers")
    @classmethod
    def _workers_not_negative(cls, value: Union[int, str]) -> Union[int, str]:
        if not isinstance(value, str) and value < 0:
            raise ValueError(f"must be >= 0 or 'auto', got {value}")
        return value

    @field_validator("batch_size")
    @classmethod
    def _batch_size_positive(cls, value: Union[int, str]) -> Union[int, str]:
        if not isinstance(value, str) and value <= 0:
            raise ValueError(f"must be > 0 or 'auto', got {value}")
        return value


class LossConfig(_Section):
    """``name`` (default: train.loss, else cross_entropy or mse by task), per-class weights
    (``balanced`` or a list, one per class) and the focal loss's ``gamma``."""

    name: Optional[Literal["cross_entropy", "mse", "mae", "huber", "focal"]] = None
    class_weights: Union[Literal["balanced"], list[float], None] = None
    gamma: float = Field(2.0, ge=0.0)

    @field_validator("class_weights")
    @classmethod
    def _weights_positive(cls, value: Any) -> Any:
        if isinstance(value, list) and any(not w > 0 for w in value):
            raise ValueError(f"every class weight must be > 0, got {value}")
        return value


class ModelConfig(_Section):
    name: str = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [128])
    norm: str = "none"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    activation: str = "relu"
    init: str = "auto"
    channels: Optional[list[int]] = None
    kernel_size: int = Field(3, gt=0)
    pool: str = "max"
    checkpointing: bool = False  # gradient checkpointing (mlp, cnn, resnet): less activation memory, more compute
    # gpt: blocks, attention heads, embedding width, LayerNorm before (pre) or after (post) each branch
    layers: int = Field(4, gt=0)
    heads: int = Field(4, gt=0)
    width: int = Field(128, gt=0)
    norm_position: Literal["pre", "post"] = "pre"
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("hidden")
    @classmethod
    def _hidden_positive(cls, value: list[int]) -> list[int]:
        if any(h <= 0 for h in value):
            raise ValueError(f"every hidden size must be > 0, got {value}")
        return value


class OptimizerConfig(_Section):
    name: str = "adamw"
    # Defaults measured by benchmarks/defaults.py (see benchmarks/README.md): the LR range test
    # picks the lr, AdamW decays weights by 1e-2, gradients are clipped to norm 1.
    lr: Union[float, Literal["auto"]] = "auto"
    weight_decay: float = Field(1.0e-2, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1.0e-8, gt=0.0)
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    base_batch_size: Optional[int] = Field(None, gt=0)
    layer_lr_decay: Optional[float] = Field(None, gt=0.0, le=1.0)
    param_groups: Optional[list[dict[str, Any]]] = None
    freeze: Optional[dict[str, int]] = None

    @field_validator("lr")
    @classmethod
    def _lr_positive(cls, value: Union[float, str]) -> Union[float, str]:
        if not isinstance(value, str) and not value > 0:
            raise ValueError(f"must be > 0 or 'auto', got {value}")
        return value


class ScheduleConfig(BaseModel):
    """``name`` and warmup are fixed keys; any other key is a parameter of the schedule
    (``step_size``, ``gamma``, ``min_lr`` ...), checked by ``build_schedule``."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    name: str = "onecycle"
    warmup: float = Field(0, ge=0)
    warmup_mode: Literal["linear", "exponential"] = "linear"
    warmup_start_factor: float = Field(0.0, ge=0.0, le=1.0)
    monitor: str = "val_loss"

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class EarlyStoppingConfig(_Section):
    enabled: bool = True
    monitor: str = "val_loss"
    mode: Literal["auto", "min", "max"] = "auto"
    patience: int = Field(5, ge=0)
    min_delta: float = Field(0.0, ge=0.0)
    restore_best: bool = True


class CheckpointConfig(_Section):
    keep_last: int = Field(3, ge=1)
    every_n_steps: Optional[int] = Field(None, gt=0)
    every_epoch: bool = True


class LRFindConfig(_Section):
    start_lr: float = Field(1.0e-7, gt=0.0)
    end_lr: float = Field(10.0, gt=0.0)
    num_steps: int = Field(100, ge=10)
    rule: str = "edge"
    retry_repeats: int = Field(1, ge=1)  # retried tests averaged over other batch orders (lr/finder.py RETRY_REPEATS)


class MLflowConfig(_Section):
    tracking_uri: Optional[str] = None  # default $MLFLOW_TRACKING_URI, else sqlite:///<runs root>/mlflow.db
    experiment: Optional[str] = None  # default "trainwise"


class WandbConfig(_Section):
    project: Optional[str] = None  # default $WANDB_PROJECT, else "trainwise"
    mode: Optional[Literal["online", "offline", "disabled"]] = None  # default: online with a key and a network
    entity: Optional[str] = None


class TrainConfig(_Section):
    epochs: int = Field(10, gt=0)
    max_steps: Optional[int] = Field(None, gt=0)
    val_every_n_steps: Optional[int] = Field(None, gt=0)  # validate every N optimizer steps (None: each epoch)
    grad_clip: Optional[float] = Field(1.0, gt=0.0)
    grad_clip_mode: Literal["norm", "value"] = "norm"
    accumulate: int = Field(1, gt=0)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = "auto"
    loss: Optional[Literal["cross_entropy", "mse", "mae", "huber", "focal"]] = None
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    shift_labels: Union[bool, Literal["auto"]] = "auto"  # score output t against target t + 1 (labels = input_ids)
    on_nonfinite: Literal["skip", "rollback", "stop"] = "rollback"
    max_rollbacks: int = Field(3, ge=0)
    rollback_lr_factor: float = Field(0.5, gt=0.0, lt=1.0)
    spike_factor: float = Field(10.0, gt=1.0)
    log_every_n_steps: int = Field(50, gt=0)
    report: bool = True
    threads: Optional[int] = Field(None, gt=0)
    sync_batchnorm: bool = False  # DDP (--nproc N / torchrun): BatchNorm statistics over the global batch
    dist_timeout: float = Field(120.0, gt=0.0)  # DDP: seconds a rank waits for the others before the job fails
    compile: bool = False  # torch.compile (benchmarks/speed_options.py: off by default, see its table)
    channels_last: bool = False  # NHWC memory format for convolutional models
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    lr_find: LRFindConfig = Field(default_factory=LRFindConfig)
    loggers: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(default_factory=list)
    mlflow: MLflowConfig = Field(default_factory=MLflowConfig)
    wandb: WandbConfig = Field(default_factory=WandbConfig)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value.split(":")[0] not in ("auto", "cpu", "cuda", "mps"):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got {value!r}")
        return value


class RunConfig(_Section):
    name: str = "run"
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    # The search's settings and space (``trainwise tune``; checked by trainwise.tune). Not part of a
    # run: left out of config.yaml, so a trial's and a plain run's configs compare equal.
    tune: Optional[dict[str, Any]] = Field(None, exclude=True)

    @model_validator(mode="after")
    def _gpt_schedule(self) -> "RunConfig":
        # gpt trains with warmup then cosine (nanoGPT's get_lr) unless the config names a schedule.
        given = self.schedule.model_fields_set
        if self.model.name == "gpt" and "name" not in given:
            self.schedule.name = "cosine"
            if "warmup" not in given:
                self.schedule.warmup = GPT_WARMUP
        return self

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> "RunConfig":
        if self.data.val_fraction + self.data.test_fraction >= 1.0:
            raise ValueError(
                "data.val_fraction + data.test_fraction must be < 1, got "
                f"{self.data.val_fraction} + {self.data.test_fraction}; leave some data to train on"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# Config keys that name files or folders; relative ones are made absolute on load.
DATA_PATH_KEYS = ("root", "path")


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (or start from defaults when ``path`` is None), apply
    ``a.b=value`` overrides and validate.

    ``data.root`` and ``data.path`` become absolute: a relative path written in the config
    file is taken from the config file's folder, one given as an override from the working
    directory; ``~`` is expanded. The resolved config (the run's config.yaml) therefore works
    from any folder.

    Raises:
        ConfigError: one message naming the bad key, the value given and what is valid.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
        resolve_data_paths(raw, Path(path).absolute().parent)
    for override in overrides or []:
        if _apply_override(raw, override) == "data":
            resolve_data_paths(raw, Path.cwd())  # the config file's paths are absolute already
    return config_from_dict(raw)


def resolve_data_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the relative ``data.root`` / ``data.path`` of a raw config absolute against ``base``."""
    data = raw.get("data")
    if not isinstance(data, dict):
        return
    for key in DATA_PATH_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value and not value.startswith("builtin:"):
            data[key] = os.path.abspath(base / Path(value).expanduser())


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    _batch_size_alias(raw)
    _check_unknown_keys(raw, RunConfig, prefix="")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc)) from None


BATCH_SIZE_ALIASES = {"train.batch_size": "data.batch_size"}


def _batch_size_alias(raw: dict[str, Any]) -> None:
    """``train.batch_size`` (the issue's spelling, ``train.batch_size=auto``) is ``data.batch_size``."""
    train = raw.get("train")
    if not isinstance(train, dict) or "batch_size" not in train:
        return
    value = train.pop("batch_size")
    data = raw.setdefault("data", {})
    if not isinstance(data, dict):
        return
    if "batch_size" in data and data["batch_size"] != value:
        raise ConfigError(f"train.batch_size={value!r} and data.batch_size={data['batch_size']!r} disagree; they "
                          "are the same setting: give one")
    data["batch_size"] = value


def _read_yaml(path: Path) -> dict[str, Any]:
    from trainwise.config.yaml_file import read_yaml_mapping

    if not path.is_file():
        raise ConfigError(f"config file not found: {path}; pass the path of a YAML file such as examples/digits.yaml")
    return read_yaml_mapping(path, empty=EMPTY_CONFIG_FIX)


# An empty config file is a mistake (the wrong file, an unsaved editor): it would train the defaults.
EMPTY_CONFIG_FIX = ("write its sections (data:, model:, optimizer:, train:) as in examples/digits.yaml; "
                    "examples/ holds one config per data set")


def _apply_override(raw: dict[str, Any], override: str) -> str:
    """Set one ``a.b=value`` override in ``raw``; return its section (``a``)."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override must look like section.key=value, got {override!r}")
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        value = text
    node = raw
    key = BATCH_SIZE_ALIASES.get(key.strip(), key)  # an override of the alias overrides the file's key
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value
    return parts[0]


def _check_unknown_keys(raw: Any, model: type[BaseModel], prefix: str) -> None:
    if not isinstance(raw, dict):
        return
    fields = model.model_fields
    for key, value in raw.items():
        if key not in fields:
            if model.model_config.get("extra") == "allow":
                continue
            where = f"{prefix}{key}".encode("unicode_escape").decode("ascii")  # a newline in a key stays one line
            ours, note = OTHER_TOOLS_NAMES.get(str(key), (None, None))  # Lightning's max_epochs, Keras' learning_rate
            hint = ours if ours in fields else closest(str(key), fields)
            suggestion = f"; did you mean '{prefix}{hint}'?" if hint else f"; valid keys: {', '.join(fields)}"
            suggestion += f" ({note})" if ours == hint and note else ""
            raise ConfigError(f"unknown key '{where}' in config{suggestion}")
        annotation = fields[key].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _check_unknown_keys(value, annotation, prefix=f"{prefix}{key}.")


_UNION_BRANCH = re.compile(r"^(float|int|str|bool|none|literal\[.*\]|list\[.*\]|dict\[.*\]|tuple\[.*\])$")
_BRANCH_WORDS = {"float": "a number", "int": "an integer", "str": "a string", "bool": "true or false", "none": "null"}


def _branch_phrase(tag: str) -> str:
    if tag.startswith("literal["):
        return " or ".join(re.findall(r"'[^']*'", tag)) or tag
    return _BRANCH_WORDS.get(tag, "a list" if tag.startswith(("list[", "tuple[")) else tag)


def _merged_unions(errors: list[dict[str, Any]]) -> tuple[list[str], set[int]]:
    """One message per field whose every union branch failed (``lr: must be a number or 'auto'``), not
    one per branch; and the indices of the errors merged."""
    groups: dict[tuple, list[int]] = {}
    for index, error in enumerate(errors):
        loc = [str(part) for part in error["loc"] if not str(part).startswith("function-")]
        if len(loc) > 1 and _UNION_BRANCH.match(loc[-1]):
            groups.setdefault(tuple(loc[:-1]), []).append(index)
    messages, merged = [], set()
    for where, members in groups.items():
        if len(members) < 2:
            continue
        phrases = [_branch_phrase(str(errors[i]["loc"][-1])) for i in members]
        messages.append(f"{'.'.join(where)}: must be {' or '.join(phrases)}, got {errors[members[0]].get('input')!r}")
        merged.update(members)
    return messages, merged


def _describe_validation_error(exc: ValidationError) -> str:
    errors = exc.errors()
    messages, merged = _merged_unions(errors)
    for index, error in enumerate(errors):
        if index in merged:
            continue
        where = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
        message = error["msg"].removeprefix("Value error, ")
        given = error.get("input")
        if error["type"] == "literal_error" or "got" not in message:
            message = f"{message}, got {given!r}"
        if error["type"] == "literal_error" and isinstance(given, str):
            message += did_you_mean(given, re.findall(r"'([^']*)'", error["ctx"]["expected"]))
        messages.append(f"{where}: {message}" if where else message)
    return "invalid config: " + "; ".join(messages)
