"""``trainwise evaluate`` and ``trainwise predict``: a finished run's checkpoint on data.

Both work from any folder (the run's config.yaml holds absolute data paths) and on run folders
of the Python API, whose data is not on disk: ``evaluate --data FILE`` names the data, and
``--model package.module:factory`` rebuilds a model the run folder cannot rebuild by itself.
Metrics and predictions of a regression run are in the targets' original units.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from trainwise.runfolder.saved import PYTHON_DATASET, SavedRun, load_saved_run, rebuild_model
from trainwise.cli.table_io import check_output_path, read_inputs, read_labelled, write_predictions
from trainwise.errors import CheckpointError, ConfigError, DataError, DataNotFoundError

_CHUNK = 1024


def evaluate(args: argparse.Namespace) -> int:
    """Loss and metrics of the run's checkpoint on a split of its data set or on ``--data``."""
    if args.data and args.split:
        raise ConfigError(f"--split {args.split} and --data {args.data} cannot be combined; "
                          "--split picks a split of the run's own data set, --data evaluates on a file")
    run = load_saved_run(args.run_dir, args.checkpoint)
    if args.data:
        data, label = read_labelled(Path(args.data), run, args.target), Path(args.data).stem
    else:
        label = args.split or "test"
        data = _split_of_run(run, label)
    with cli_checkpoint_errors():
        model = rebuild_model(run, args.model)
    metrics = _metrics(run, model, data)
    print(f"{label} metrics of {run.checkpoint}:")
    for key, value in metrics.items():
        print(f"  {key:<15} {value:.6g}")
    source: dict[str, Any] = {"data": str(Path(args.data).resolve())} if args.data else {"split": label}
    out = run.folder / f"evaluate_{label}.json"
    out.write_text(json.dumps({"checkpoint": str(run.checkpoint), **source, **metrics}, indent=2) + "\n")
    return 0


def predict(args: argparse.Namespace) -> int:
    """Write the run's predictions for ``inputs`` to ``--out`` (.npz or .csv)."""
    out = check_output_path(args.out)
    if Path(args.run_dir).is_file():
        return _predict_artifact(args, out)
    run = load_saved_run(args.run_dir, args.checkpoint)
    _refuse_language_model(run.description, str(run.folder), artifact=False)
    x, files = _read_any(Path(args.inputs), run, image_model=run.cfg.data.dataset == "imagefolder")
    with cli_checkpoint_errors():
        model = rebuild_model(run, args.model)
    with torch.inference_mode():
        outputs = torch.cat([model(chunk) for chunk in x.split(_CHUNK)]).float()
    write_predictions(out, outputs, run, files=files)
    print(f"wrote {len(x)} predictions to {out}")
    return 0


def _read_any(path: Path, run: SavedRun, *, image_model: bool) -> tuple[torch.Tensor, Optional[list[str]]]:
    """Inputs as the model takes them (data.json's normalization applied when the run has it), and the
    image file of each row: a folder of images or an image file for an image model, else .npz/.csv."""
    from trainwise.data.images import IMAGE_SUFFIXES

    if not image_model:
        if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
            what = "a folder" if path.is_dir() else "an image file"
            raise ConfigError(f"{path} is {what}; images go to models trained on an image folder (data.dataset: "
                              "imagefolder), this one was not: give an .npz or .csv file")
        return read_inputs(path, run), None
    takes = f"a folder of images, an image file ({', '.join(IMAGE_SUFFIXES)}) or an .npz with x shaped (N, C, H, W)"
    if not path.exists():
        raise DataNotFoundError(f"input not found: {path}; pass {takes}")
    if path.is_file() and path.suffix.lower() not in (*IMAGE_SUFFIXES, ".npz"):
        raise ConfigError(f"this image model takes {takes}, got {path.name!r}")
    if path.suffix.lower() == ".npz":
        return read_inputs(path, run), None
    return _image_inputs(path, run)


def _image_inputs(path: Path, run: SavedRun) -> tuple[torch.Tensor, list[str]]:
    """A folder of images (or one image), decoded like the run's image folder (size, channels, normalization)."""
    from trainwise.data import apply_normalization
    from trainwise.data.images import decode_folder, decode_image

    channels, height, width = run.input_shape
    if path.is_dir():
        x, files = decode_folder(path, channels=channels, size=(height, width))
    else:
        x, files = decode_image(str(path), channels=channels, size=(height, width))[None].float().div_(255), [str(path)]
    if run.description.get("normalization"):
        x = apply_normalization(x, run.description["normalization"])
    return x, files


def _refuse_language_model(description: dict[str, Any], where: str, *, artifact: bool) -> None:
    """predict writes one row per input; a language model's outputs are logits per token (one line)."""
    from trainwise.export._source import takes_token_ids

    if not takes_token_ids(description):
        return
    if artifact:
        use = ("run it from Python on int64 token ids (N, T): trainwise.export.load_artifact(path); its "
               "trainwise.json metadata holds the tokenizer")
    else:
        use = f"continue text with trainwise generate {where} --prompt TEXT"
    raise ConfigError(f"{where} is a language model (token ids in, next-token logits out); predict takes rows of "
                      f"features or images: {use}")


def _predict_artifact(args: argparse.Namespace, out: Path) -> int:
    """Predictions of an exported artifact: raw inputs in (its normalization is in the graph)."""
    from trainwise.config.schema import config_from_dict
    from trainwise.export import load_artifact

    path = Path(args.run_dir)
    runner, meta = load_artifact(path, format=getattr(args, "format", None), model=_user_model_for(args, path))
    if not meta.get("data"):
        raise DataError(f"{path} carries no trainwise metadata (trainwise.json); predict with the tool that made it")
    description = {**meta["data"], "normalization": None}  # folded into the artifact
    _refuse_language_model(description, str(path), artifact=True)
    cfg = config_from_dict({"data": {"target": description.get("target")}})
    run = SavedRun(path.parent, cfg, description, path)
    x, files = _read_any(Path(args.inputs), run, image_model=_is_image_model(description))
    with torch.inference_mode():
        outputs = torch.cat([runner(chunk).float() for chunk in x.split(_CHUNK)])
    write_predictions(out, outputs, run, files=files)
    print(f"wrote {len(x)} predictions to {out}")
    return 0


def _is_image_model(description: dict[str, Any]) -> bool:
    """Whether an artifact's data.json is an image folder's (it records channels and image_size)."""
    shape = description.get("input_shape")
    return "image_size" in description and "channels" in description and isinstance(shape, list) and len(shape) == 3


@contextlib.contextmanager
def cli_checkpoint_errors() -> Iterator[None]:
    """A checkpoint that fails its checksum, told as the command line can act on it: the
    ``--checkpoint`` of the newest checkpoint of the run that verifies (the loader's own message
    names Python's options too)."""
    from trainwise import checkpoint as ckpt

    try:
        yield
    except ckpt.CheckpointVerificationError as error:
        good, _ = ckpt.find_resumable(error.path.parent)
        fix = (f"pass --checkpoint {good.name}, the newest checkpoint of the run that verifies" if good is not None
               else f"no checkpoint in {error.path.parent} verifies; train the run again")
        raise CheckpointError(f"checkpoint {error.path} failed verification: {error.problem}; {fix}") from error


def _user_model_for(args: argparse.Namespace, path: Path) -> Optional[torch.nn.Module]:
    """The model a safetensors file loads into when the user names its factory (``--model``)."""
    if not args.model:
        return None
    if path.suffix.lower() != ".safetensors":
        raise ConfigError(f"--model rebuilds the network of a run folder or a .safetensors file; {path.name} carries "
                          "its own graph; drop --model")
    from trainwise.export.safetensors_format import read_metadata
    from trainwise.models import load_user_model

    meta = read_metadata(path)
    description = meta.get("data") or {}
    recorded = ((meta.get("config") or {}).get("model") or {}) if isinstance(meta.get("config"), dict) else {}
    # The file's kwargs (JSON values) go to the factory the user typed only when it is the one the file names.
    kwargs = recorded.get("args") if isinstance(recorded, dict) and recorded.get("name") == args.model else None
    try:
        shape = tuple(int(size) for size in description["input_shape"])
        outputs = int(description["num_outputs"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path} carries no valid trainwise metadata (input_shape, num_outputs); predict with the "
                        "tool that made it") from None
    return load_user_model(args.model, kwargs if isinstance(kwargs, dict) else {}, input_shape=shape,
                           num_outputs=outputs)


def _split_of_run(run: SavedRun, split: str) -> Any:
    """A split of the run's own data set, reloaded from its config, targets in original units."""
    if run.cfg.data.dataset == PYTHON_DATASET:
        raise ConfigError(f"{run.folder} was trained from Python on data trainwise cannot reload; "
                          "pass --data FILE (.npz with x and y, or .csv with --target COLUMN)")
    from trainwise.config import build
    from trainwise.data import denormalize_target

    bundle = build.load_bundle(run.cfg)
    trained_on = (run.description.get("corpus") or {}).get("sha256")
    if trained_on and trained_on != bundle.details["corpus"]["sha256"]:
        raise DataError(f"the text at {run.cfg.data.path} changed since this run trained on it (SHA-256 "
                        f"{trained_on[:12]}... then, {bundle.details['corpus']['sha256'][:12]}... now); evaluate "
                        "on the text it trained on")
    recorded, now = run.description.get("file_sha256"), bundle.details.get("file_sha256")
    if recorded and now and recorded != now:  # the same seed re-splits other bytes: training rows may land in test
        raise DataError(f"{run.cfg.data.path} changed since this run trained on it (SHA-256 {recorded[:12]}... then, "
                        f"{now[:12]}... now): a {split} split re-made from it would hold other rows, training rows "
                        "among them; evaluate on the file it trained on, or on held-out rows with --data FILE")
    pair = {"train": bundle.train, "val": bundle.val, "test": bundle.test}[split]
    if pair is None:
        raise DataError(f"this run has no {split} split; choose one of train, val, test that exists")
    if not isinstance(pair, tuple):  # read from disk (text windows, image files): evaluated as it is
        return pair
    x, y = pair
    if bundle.target_normalization:
        y = denormalize_target(y, bundle.target_normalization)
    return x, y


def _metrics(run: SavedRun, model: torch.nn.Module, data: Any) -> dict[str, float]:
    from trainwise.trainer import Trainer

    t = run.cfg.train
    evaluator = Trainer(model, loss=run.loss_name, device=t.device, precision=t.precision,
                        label_smoothing=t.label_smoothing, early_stopping=False, progress=False, report=False,
                        run_dir=run.folder)
    return evaluator.evaluate(data)
