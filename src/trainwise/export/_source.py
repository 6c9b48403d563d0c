"""What an export starts from: the model to ship (eval mode, input normalization folded in), a real
example batch, the data it is verified on, and the metadata every artifact carries.

Normalization is folded into the graph (``Deployable``): every artifact takes raw inputs, shaped
like the training data, so a consumer in another runtime needs nothing beside the file and cannot
forget (or mis-apply) the statistics of data.json, the classic silent bug of shipped models. A
language model (a gpt run on text) takes int64 token ids ``(N, T)``, ``T`` up to its block size,
and gives logits ``(N, T, vocab_size)``; its tokenizer travels in the metadata.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from trainwise.errors import CheckpointError, ConfigError, DataError

EXAMPLE_BATCH = 8  # >= 2: torch.export specializes a batch of 1 to a constant
COMPARE_BATCH = 64  # the real batch whose outputs are compared element by element
VERIFY_SAMPLES = 256  # samples taken, evenly spread, from a split read from disk (image files, token windows)


def takes_token_ids(description: dict[str, Any]) -> bool:
    """Whether data.json (or an artifact's copy of it) is a text corpus's: the model takes integer
    token ids ``(N, T)``, nothing to normalize."""
    return bool(description.get("tokenizer")) and "vocab_size" in description


class Deployable(nn.Module):
    """Raw inputs in, the model's outputs out: ``model((x - mean) / std)``.

    Without normalization statistics mean is 0 and std 1, so every artifact has the same
    structure (and the same state-dict keys for safetensors). ``token_ids``: the model takes
    integer token ids, passed to it as they are.
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...],
                 normalization: Optional[dict[str, list[float]]] = None, *, token_ids: bool = False) -> None:
        super().__init__()
        self.model = model
        self.token_ids = token_ids
        mean = torch.tensor((normalization or {}).get("mean", [0.0]), dtype=torch.float32)
        std = torch.tensor((normalization or {}).get("std", [1.0]), dtype=torch.float32)
        shape = [1, mean.numel()] + [1] * max(len(input_shape) - 1, 0) if mean.numel() > 1 else [1]
        self.register_buffer("mean", mean.view(shape))
        self.register_buffer("std", std.view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.token_ids:
            return self.model(x)
        # Buffers read as Tensor | Module to mypy; a class-level annotation would break scripting.
        return self.model((x - self.mean) / self.std)  # type: ignore[operator]


@dataclass
class ExportSource:
    """The model to export and what it is checked against.

    ``module`` takes raw inputs; ``eval_x``/``eval_y`` are raw inputs and targets (a test split,
    or the user's data); ``meta`` goes into every artifact as ``trainwise.json``.
    """

    module: nn.Module
    example: torch.Tensor
    eval_x: torch.Tensor
    eval_y: Optional[torch.Tensor]
    task: str
    meta: dict[str, Any] = field(default_factory=dict)
    name: str = "model"
    eval_split: str = "test"
    user_model: Optional[nn.Module] = None  # a user's module: safetensors are verified by loading into a copy

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.example.shape[1:])

    def meta_json(self) -> str:
        """What travels inside each artifact (no local paths: ``source`` stays in export.json)."""
        return json.dumps({key: value for key, value in self.meta.items() if key != "source"}, sort_keys=True)


def from_run(run_dir: str | Path, *, checkpoint: str = "best.pt", model_spec: Optional[str] = None,
             data: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> ExportSource:
    """The run's best checkpoint as a Deployable, verified on its test split (or ``data``: raw
    inputs, or token ids for a language model, and targets).

    Raises:
        CheckpointError: the checkpoint is missing (no fallback to last.pt: the export ships the
            checkpoint it names).
    """
    from trainwise.runfolder.saved import load_saved_run, rebuild_model, training_columns

    folder = Path(run_dir)
    if not (folder / "checkpoints" / checkpoint).is_file() and (folder / "config.yaml").is_file():
        others = sorted(p.name for p in (folder / "checkpoints").glob("*.pt"))
        raise CheckpointError(f"no {checkpoint} in {folder / 'checkpoints'} (found: {', '.join(others) or 'none'}); "
                              "export ships the best checkpoint of a finished run; pass --checkpoint last.pt "
                              "(checkpoint='last.pt' in Python) to export another one")
    run = load_saved_run(str(folder), checkpoint)
    model = rebuild_model(run, model_spec)
    tokens = takes_token_ids(run.description)
    normalization = None if tokens else run.description.get("normalization") or None
    module = Deployable(model, run.input_shape, normalization, token_ids=tokens).eval()
    split = "data"
    if data is None:
        split, data = _run_split(run)
    x, y = data
    x = _token_ids(x, run) if tokens else x.float()
    description = dict(run.description)
    columns, target = training_columns(run)
    if columns:  # a CSV run: predict matches columns by name
        description.update(feature_names=columns, target=target)
    # No data paths in the artifact: it ships to other machines.
    meta = {"name": run.cfg.name, "config": {"model": run.cfg.to_dict()["model"]}, "data": description,
            "checkpoint": run.checkpoint.name, "source": str(folder.resolve())}
    if tokens:  # ids mean nothing without the tokenizer; the token cache and the corpus are local paths
        description.pop("token_file", None)
        if isinstance(description.get("corpus"), dict):
            description["corpus"] = {key: value for key, value in description["corpus"].items() if key != "source"}
        if (folder / "tokenizer.json").is_file():
            meta["tokenizer"] = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    return ExportSource(module, x[:EXAMPLE_BATCH].clone(), x, y, run.task, meta, run.cfg.name, split)


def from_module(model: nn.Module, example: torch.Tensor, *, data: Optional[tuple[Any, Any]] = None,
                normalization: Optional[dict[str, list[float]]] = None,
                class_names: Optional[list[str]] = None, task: str = "classification") -> ExportSource:
    """A user's own module: verified on ``data`` when given, else on ``example``."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"export needs a torch.nn.Module or a run folder, got {type(model).__name__}")
    if not isinstance(example, torch.Tensor) or example.dim() < 2 or not example.is_floating_point():
        raise ConfigError("example must be a float tensor batch shaped (N, *input_shape), got "
                          f"{_describe(example)}; pass example=x[:8] of your inputs")
    model = copy.deepcopy(model).cpu().eval()
    example = example.detach().cpu().float()
    shape = tuple(example.shape[1:])
    module = Deployable(model, shape, normalization).eval()
    if len(example) < 2:
        example = example.repeat(2, *[1] * len(shape))
    x, y = (example, None) if data is None else _as_tensors(data)
    from trainwise.engine.python_run import model_spec

    with torch.no_grad():
        outputs = module(example[:2])
    num_outputs = int(outputs.shape[1]) if outputs.dim() == 2 else 1
    description = {"task": task, "input_shape": list(shape), "num_outputs": num_outputs,
                   "class_names": class_names, "normalization": normalization}
    meta = {"config": {"model": model_spec(model)}, "data": description}
    return ExportSource(module, example[:EXAMPLE_BATCH], x, y, task, meta, type(model).__name__,
                        "data" if data is not None else "example", user_model=model)


def fold_batchnorm(module: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``module`` with each BatchNorm that directly follows a Conv/Linear inside an
    ``nn.Sequential`` folded into it (eval-mode statistics). Returns the copy and the count."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    folded = copy.deepcopy(module).eval()
    count = 0
    for parent in folded.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            layer, norm = parent._modules[first], parent._modules[second]
            if not isinstance(norm, nn.modules.batchnorm._BatchNorm) or not norm.track_running_stats:
                continue
            if isinstance(layer, nn.modules.conv._ConvNd) and not isinstance(layer, nn.modules.conv._ConvTransposeNd):
                parent._modules[first] = fuse_conv_bn_eval(layer, norm)
            elif isinstance(layer, nn.Linear) and isinstance(norm, nn.BatchNorm1d):
                parent._modules[first] = fuse_linear_bn_eval(layer, norm)
            else:
                continue
            parent._modules[second] = nn.Identity()
            count += 1
    return folded, count


def _run_split(run: Any) -> tuple[str, tuple[torch.Tensor, torch.Tensor]]:
    """The run's test split (its val split when it has none) as raw inputs, and its name."""
    if run.cfg.data.dataset == "python":
        raise ConfigError(f"{run.folder} was trained from Python on data trainwise cannot reload; "
                          "pass --data FILE (.npz with x and y) to verify the export on it")
    from trainwise.config import build

    bundle = build.load_bundle(run.cfg)
    trained_on = (run.description.get("corpus") or {}).get("sha256")
    if trained_on and trained_on != (bundle.details.get("corpus") or {}).get("sha256"):
        raise DataError(f"the text at {run.cfg.data.path} changed since this run trained on it; pass --data FILE "
                        "(.npz with x and y: token ids shaped (N, T)) to verify the export on")
    split, pair = ("test", bundle.test) if bundle.test is not None else ("val", bundle.val)
    if pair is None:
        raise DataError(f"the run {run.folder} has no test or val split to verify the export on; "
                        "pass --data FILE (.npz with x and y)")
    x, y = pair if isinstance(pair, tuple) else _samples(pair)
    if bundle.target_normalization:  # regression targets in original units, as the model's outputs are
        from trainwise.data import denormalize_target

        y = denormalize_target(y, bundle.target_normalization)
    normalization = run.description.get("normalization")
    if normalization:
        shape = [1, len(normalization["mean"])] + [1] * (x.dim() - 2)
        x = x * torch.tensor(normalization["std"]).view(shape) + torch.tensor(normalization["mean"]).view(shape)
    return split, (x, y)


def _samples(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``VERIFY_SAMPLES`` samples of a split read from disk, evenly spread over it, stacked."""
    count = len(dataset)
    picks = sorted(set(torch.linspace(0, count - 1, min(count, VERIFY_SAMPLES)).long().tolist()))
    items = [dataset[index] for index in picks]
    return (torch.stack([torch.as_tensor(x) for x, _ in items]),
            torch.stack([torch.as_tensor(y) for _, y in items]))


def _token_ids(x: torch.Tensor, run: Any) -> torch.Tensor:
    """A language model's inputs as int64 ids ``(N, T)``, checked against its vocabulary and block size."""
    vocab, block = int(run.description["vocab_size"]), run.input_shape[0]
    whole = not x.is_floating_point() or bool((x == x.round()).all())
    if x.dim() != 2 or not 1 <= x.shape[1] <= block or not whole or x.numel() == 0 or not (
            0 <= int(x.min()) and int(x.max()) < vocab):
        raise DataError(f"a language model's inputs are token ids: integers in [0, {vocab}) shaped (N, T) with "
                        f"1 <= T <= {block}, got {_describe(x)}; pass --data FILE (.npz with x and y) holding such ids")
    return x.long()


def _as_tensors(data: tuple[Any, Any]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(inputs, targets)`` as tensors; targets may be None (unlabelled data: outputs are still compared)."""
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ConfigError(f"data must be a pair (inputs, targets), got {_describe(data)}") from None
    return torch.as_tensor(x).float(), None if y is None else torch.as_tensor(y)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"
