"""What ``lr='auto'`` may spend: a range test sized to the run it precedes, and reused when the same
run is trained again.

Budget: the test takes at most ``BUDGET_SHARE`` of the optimizer steps the run is sure to train (all
of them; under early stopping, those up to the first validation it may stop at) (a test step costs
about what a training step costs: one forward, backward and update on a training batch), never
fewer than ``MIN_SWEEP_STEPS`` (below that a sweep over eight decades has too few points per decade
to read) and never more than the configured ``num_steps``. A 40-epoch digits run (840 steps) gets
84 steps; a run of 10,000 steps keeps the configured 100.

Cache: the suggestion is stored under a key made of everything the test depends on (the model's
layers and parameter shapes, the optimizer's class and settings, the loss, batch size, precision,
device, seed, the test's settings, a fingerprint of the training data and the trainwise version),
in ``<runs folder>/.lr_cache/``. A rerun of the same config on the same data reads it instead of
testing again: the test restores every state it touches, so skipping it trains the same run.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from trainwise.lr import suggest as rules
from trainwise.lr.finder import REPEAT_EPOCH_SHIFT, RETRY_STEPS_FACTOR, LRFinder

log = logging.getLogger(__name__)

BUDGET_SHARE = 0.10  # the range test's share of the run's optimizer steps (benchmarks/defaults.py checks it)
# about 6 points per decade over the default 1e-7..10 sweep; at 30 (4 a decade) a 3-class MLP's test read
# 0.117 instead of 0.052 and its train loss rose 5x by epoch 7 (the doctor's clean "imbalanced" case)
MIN_SWEEP_STEPS = 50
CACHE_FOLDER = ".lr_cache"
FINGERPRINT_ROWS = 256  # rows of in-memory data hashed (spread over the whole set) besides its shape


def budget_steps(configured: int, total_steps: Optional[int]) -> int:
    """The range test's steps for a run of ``total_steps`` optimizer steps.

    Example:
        >>> budget_steps(100, 840), budget_steps(100, 10_000), budget_steps(100, 40)
        (84, 100, 50)
    """
    if not total_steps:
        return configured
    return max(min(configured, MIN_SWEEP_STEPS), min(configured, math.floor(BUDGET_SHARE * total_steps)))


def sure_steps(t: Any, total_steps: Optional[int]) -> Optional[int]:
    """The optimizer steps the run trains at the least: all of them, or, under early stopping, those up
    to the first validation at which it may stop (the first sets the best, ``patience`` more without
    improvement end it). The budget is a share of these: a run that early stopping ends at epoch 22 of 40
    (digits) would otherwise spend 18% of its steps on the test instead of 10%."""
    from trainwise.callbacks.early_stopping import EarlyStopping

    stopper = next((c for c in getattr(t, "callbacks", None) or [] if isinstance(c, EarlyStopping)), None)
    epochs = getattr(t, "epochs", None)
    if stopper is None or not total_steps or not epochs:
        return total_steps
    between = getattr(t, "val_every_n_steps", None) or total_steps / epochs  # steps from one validation to the next
    return min(total_steps, math.ceil((max(stopper.patience, 1) + 1) * between))


def data_fingerprint(batches: Any) -> Optional[str]:
    """A hash of the training data behind ``batches`` (in-memory tensors: shape, dtype and a spread of
    rows; a Dataset: its type, length and first and last samples); None when it cannot be told (a
    user's DataLoader, whose contents may change between runs)."""
    digest = hashlib.sha256()
    tensors = getattr(batches, "tensors", None)
    dataset = getattr(batches, "dataset", None)
    if tensors is not None:
        for tensor in (t for t in tensors if isinstance(t, torch.Tensor)):
            digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
            step = max(1, len(tensor) // FINGERPRINT_ROWS)
            digest.update(tensor[::step].detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()
    if dataset is not None and hasattr(dataset, "__len__") and len(dataset):
        digest.update(f"{type(dataset).__module__}.{type(dataset).__qualname__}:{len(dataset)}".encode())
        for index in (0, len(dataset) - 1):
            digest.update(_sample_bytes(dataset[index]))
        return digest.hexdigest()
    return None


def _sample_bytes(sample: Any) -> bytes:
    if isinstance(sample, torch.Tensor):
        return sample.detach().cpu().contiguous().numpy().tobytes()
    if isinstance(sample, (tuple, list)):
        return b"|".join(_sample_bytes(s) for s in sample)
    if isinstance(sample, dict):
        return b"|".join(k.encode() + _sample_bytes(v) for k, v in sorted(sample.items()))
    return repr(sample).encode()


def cache_key(t: Any, batches: Any, settings: dict[str, Any]) -> Optional[str]:
    """The key of a trainer's range test, or None when the data cannot be fingerprinted."""
    data = data_fingerprint(batches)
    if data is None:
        return None
    from trainwise import __version__

    optimizer = t.optimizer
    groups = [{k: (v if k != "params" else [tuple(p.shape) for p in v]) for k, v in g.items() if k != "lr"}
              for g in optimizer.param_groups]
    parts = {"model": repr(t.model), "code": _code_fingerprint(t.model), "params": [(n, tuple(p.shape), str(p.dtype)) for n, p in t.model.named_parameters()],
             "optimizer": type(optimizer).__qualname__, "groups": groups, "loss": repr(getattr(t, "loss_spec", None)),
             "batch_size": t.batch_size, "precision": t.precision, "device": t.device.type, "seed": t.seed,
             "settings": settings, "data": data, "version": __version__,
             # a cached lr read by another rule (or the same rule with other constants) is not this run's
             "rules": [rules.EDGE_WINDOW_DECADES, rules.EDGE_RISE, rules.EDGE_BACKOFF, rules.VALLEY_POSITION,
                       rules.MINIMUM_BACKOFF, inspect.signature(LRFinder).parameters["rule"].default,
                       # a retry read off one test is not one read off the mean of several (issue 22, round 4)
                       inspect.signature(LRFinder).parameters["retry_repeats"].default, REPEAT_EPOCH_SHIFT,
                       # a calm slow learner's edge read without backoff (round 5)
                       rules.CALM_EDGE_BACKOFF, rules.CALM_DECADES, rules.CALM_STOP_DECADES,
                       rules.DIVERGENCE_DECADES]}  # a curve without reading read under its divergence (round 7)
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()[:24]


def _code_fingerprint(model: torch.nn.Module) -> str:
    """The bytecode of every module's ``forward``: two models with the same layers but a different
    ``forward`` (a user's skip connection) never share a cached lr."""
    digest = hashlib.sha256()
    for kind in sorted({type(m) for m in model.modules()}, key=lambda k: f"{k.__module__}.{k.__qualname__}"):
        digest.update(f"{kind.__module__}.{kind.__qualname__}".encode())
        code = getattr(getattr(kind, "forward", None), "__code__", None)
        if code is not None:
            digest.update(code.co_code + repr(code.co_consts).encode())
    return digest.hexdigest()


def _cache_file(run_dir: Optional[Path], key: Optional[str]) -> Optional[Path]:
    return None if run_dir is None or key is None else Path(run_dir).parent / CACHE_FOLDER / f"{key}.json"


def budgeted_find_lr(t: Any, batches: Any, total_steps: Optional[int], run_dir: Optional[Path],
                     run_test: Callable[[dict[str, Any]], tuple[Optional[float], dict[str, Any]]]
                     ) -> tuple[Optional[float], dict[str, Any]]:
    """``run_test(settings)`` (the engine's range test) with the budget's ``num_steps``, or the cached
    outcome of the same test. Returns the suggestion and what summary.json records."""
    settings = dict(t.lr_find)
    configured = int(settings.get("num_steps", 100))
    sure = sure_steps(t, total_steps)
    settings["num_steps"] = budget_steps(configured, sure)
    # A curve that gives no suggestion is a slow learner's (a recurrent net at its chance loss): its retry
    # keeps the unbudgeted length: an LSTM on MNIST-1D trained to 88.4% test accuracy at the lr of a 128-step
    # retry, 93.9% at a 200-step one's (3 seeds; benchmarks/results/lr_auto_lstm.json).
    settings.setdefault("retry_steps", RETRY_STEPS_FACTOR * configured)
    path = _cache_file(run_dir, cache_key(t, batches, settings))
    cached = _read(path)
    if cached is not None:
        _copy_curve(cached, run_dir)
        summary = {**cached["summary"], "reused_from_cache": str(path)}
        suggestion = summary.get("suggestion")
        t.record_event("lr_find", f"reused the range test of an identical run (same model, optimizer, data and "
                       f"seed; {path.name}): lr {suggestion:.3g}" if suggestion else
                       "reused the range test of an identical run: it gave no suggestion")
        return suggestion, summary
    start = time.perf_counter()
    suggestion, summary = run_test(settings)
    # the test's own seconds (a retry included): its cost against the run's in benchmarks/defaults_cost.py
    summary = {**summary, "num_steps": settings["num_steps"], "seconds": round(time.perf_counter() - start, 3)}
    if settings["num_steps"] < configured:
        of = (f"the run's {total_steps} steps" if sure == total_steps else
              f"the {sure} steps the run trains at least (early stopping may end its {total_steps} sooner)")
        summary["budget"] = f"{settings['num_steps']} of the configured {configured} steps: {BUDGET_SHARE:.0%} of {of}, at least {MIN_SWEEP_STEPS}"
    _write(path, summary, run_dir)
    return suggestion, summary


def _read(path: Optional[Path]) -> Optional[dict[str, Any]]:
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("summary"), dict) else None


def _write(path: Optional[Path], summary: dict[str, Any], run_dir: Optional[Path]) -> None:
    """The summary and the curve (lr_find.json of the run), written atomically; a cache that cannot
    be written costs a range test next time, nothing else."""
    if path is None:
        return
    curve = Path(run_dir) / "lr_find.json" if run_dir is not None else None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"summary": summary, "curve": json.loads(curve.read_text()) if curve and curve.is_file() else None}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, allow_nan=False))
        tmp.replace(path)
    except (OSError, ValueError) as exc:
        log.debug("lr cache not written: %s", exc)


def _copy_curve(cached: dict[str, Any], run_dir: Optional[Path]) -> None:
    """The cached curve into the new run folder, so its report draws the range test it used."""
    if run_dir is None or cached.get("curve") is None:
        return
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "lr_find.json").write_text(json.dumps(cached["curve"], indent=2) + "\n")
    except OSError as exc:
        log.debug("cached lr_find.json not copied: %s", exc)
