"""Checks on the data alone: non-finite values, labels, leakage between splits, duplicates,
imbalance, normalization, constant features, input scale and the last batch's size."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from trainwise.doctor.data_quality import quality_checks
from trainwise.doctor.report import Check, check
from trainwise.doctor.sample import Sample
from trainwise.doctor.thresholds import SOURCES, Thresholds

IMBALANCE_FIX = ("rebalance the classes: loss.class_weights: balanced (Python: class_weights='balanced'), "
                 "data.sampler: balanced (sampler='balanced'), or loss.name: focal (loss='focal'); "
                 "judge by macro F1 or per-class recall, not accuracy")


def data_checks(train: Sample, val: Optional[Sample], test: Optional[Sample], *, task: str,
                num_classes: Optional[int], batch_size: int, has_batchnorm: bool, drop_last: bool,
                th: Thresholds, own_loader: bool = False, feature_names: Optional[Sequence[str]] = None) -> list[Check]:
    """``own_loader``: the training data is the user's ``DataLoader``, whose batches trainwise does not cut (it
    leaves out a last training batch too small for BatchNorm only in the batches it cuts itself)."""
    splits = {name: s for name, s in (("train", train), ("val", val), ("test", test)) if s is not None}
    checks = [_nonfinite(splits), _label_range(splits, task, num_classes)]
    if train.x is not None:
        checks += _overlap_and_duplicates(splits, th)
        checks += quality_checks(train, val, test, task=task, th=th, feature_names=feature_names)
    if task in ("classification", "binary"):
        checks.append(_imbalance(train.y, num_classes or 2, th))
    if train.x is not None and train.x.is_floating_point():
        checks += [_normalization(train.x, val.x if val is not None else None, th), _constant(train.x, th),
                   _input_scale(train.x, th)]
    checks.append(_batch_remainder(len(train) if train.complete else None, batch_size, has_batchnorm,
                                   drop_last or not own_loader))
    return checks


def _nonfinite(splits: dict[str, Sample]) -> Check:
    bad = {}
    for name, s in splits.items():
        count = 0
        for tensor in (s.x, s.y, s.weights):
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                count += int((~torch.isfinite(tensor)).sum())
        if count:
            bad[name] = count
    where = ", ".join(f"{n} in {split}" for split, n in bad.items())
    message = (f"non-finite values (NaN/Inf) in the data: {where}; one NaN turns the loss into NaN "
               "(UMLAUT NaN in input, Google MLCC 'sharp jump')" if bad else "no NaN or Inf in inputs or targets")
    return check("data.nonfinite", not bad, sum(bad.values()), 0, message,
                 "drop or impute the rows with NaN/Inf before training (e.g. np.isfinite(x).all(axis=1))",
                 bad="FAIL")


def _label_range(splits: dict[str, Sample], task: str, num_classes: Optional[int]) -> Check:
    if task == "regression":
        return Check("data.label_range", "PASS", None, None, "regression targets: any finite value is valid")
    low, high = 0, (num_classes or 2) - 1
    found = {}
    for name, s in splits.items():
        y = s.y.reshape(-1)
        if y.is_floating_point() and not torch.equal(y, y.round()):
            found[name] = "fractional labels"
        elif len(y) and (int(y.min()) < low or int(y.max()) > high):
            found[name] = f"labels {int(y.min())}..{int(y.max())}"
    train_classes = set(splits["train"].y.reshape(-1).long().tolist())
    unseen = {name: sorted(set(s.y.reshape(-1).long().tolist()) - train_classes)
              for name, s in splits.items() if name != "train"}
    unseen = {k: v for k, v in unseen.items() if v}
    if found:
        where = "; ".join(f"{split}: {what}" for split, what in found.items())
        return Check("data.label_range", "FAIL", where, [low, high],
                     f"labels must be class indices {low}..{high} (the model has {high + 1} outputs); {where}",
                     "map the labels to 0..C-1, or give the model one output per class")
    if unseen:
        where = "; ".join(f"{split} has {v[:5]}" for split, v in unseen.items())
        return Check("data.label_range", "WARN", where, [low, high],
                     f"classes absent from train appear in other splits ({where}); the model never sees them "
                     "(deepchecks NewLabelTrainTest)", "split the data stratified by class")
    return Check("data.label_range", "PASS", [low, high], [low, high], f"labels within 0..{high}")


def _row_hashes(x: torch.Tensor) -> list[int]:
    rows = x.detach().reshape(len(x), -1).cpu().contiguous().numpy()
    return [hash(row.tobytes()) for row in rows]


def _overlap_and_duplicates(splits: dict[str, Sample], th: Thresholds) -> list[Check]:
    train_hashes = _row_hashes(splits["train"].x)
    seen = set(train_hashes)
    shares = {}
    for name in ("val", "test"):
        s = splits.get(name)
        if s is not None and s.x is not None and len(s):
            shares[name] = sum(h in seen for h in _row_hashes(s.x)) / len(s)
    worst = max(shares.values(), default=0.0)
    status = "FAIL" if worst > th.split_overlap_fail else "WARN" if worst > th.split_overlap_warn else "PASS"
    text = ", ".join(f"{share:.1%} of {name}" for name, share in shares.items()) or "no val/test split"
    overlap = Check("data.split_overlap", status, shares, [th.split_overlap_warn, th.split_overlap_fail],
                    f"rows identical to a train row (by hash): {text}; WARN above {th.split_overlap_warn:.0%}, "
                    f"FAIL above {th.split_overlap_fail:.0%} ({SOURCES['split_overlap_fail']}); shared rows "
                    "inflate validation scores", "" if status == "PASS" else
                    "remove val/test rows that also occur in train (deduplicate before splitting); "
                    "never validate on a slice of the training set")
    share = 1 - len(seen) / max(len(train_hashes), 1)
    duplicates = check("data.duplicates", share <= th.duplicates, share, th.duplicates,
                       f"{share:.1%} of train rows are exact duplicates of another train row; WARN above "
                       f"{th.duplicates:.0%} ({SOURCES['duplicates']})",
                       "deduplicate the training set (or weight the duplicates on purpose)")
    return [overlap, duplicates]


def _imbalance(y: torch.Tensor, num_classes: int, th: Thresholds) -> Check:
    counts = torch.bincount(y.reshape(-1).long().clamp(min=0), minlength=num_classes)[:num_classes]
    smallest, largest = int(counts.min()), int(counts.max())
    ratio = largest / smallest if smallest else math.inf
    return check("data.imbalance", ratio <= th.imbalance_ratio, ratio, th.imbalance_ratio,
                 f"largest/smallest class in train: {largest}/{smallest} = {ratio:.3g}; WARN above "
                 f"{th.imbalance_ratio:g} ({SOURCES['imbalance_ratio']}); a majority-class guess already scores "
                 f"{largest / max(int(counts.sum()), 1):.1%} accuracy", IMBALANCE_FIX)


def _channel_axis_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature (tables) or per-channel (images, sequences) mean and std."""
    flat = x.double().transpose(0, 1).reshape(x.shape[1], -1) if x.dim() > 2 else x.double().T
    return flat.mean(dim=1), flat.std(dim=1) if flat.shape[1] > 1 else torch.zeros(len(flat), dtype=torch.float64)


def _finite_values(x: torch.Tensor, limit: Optional[int] = None) -> tuple[torch.Tensor, str]:
    """The finite values of ``x`` (a seeded sample of ``limit`` of them when more), and a note when NaN/Inf
    were left out (they are data.nonfinite's: one NaN would make every statistic NaN)."""
    values = x.detach().reshape(-1)
    finite = torch.isfinite(values)
    left = int((~finite).sum())
    values = values[finite] if left else values
    if limit is not None and values.numel() > limit:
        values = values[torch.randperm(values.numel(), generator=torch.Generator().manual_seed(0))[:limit]]
    return values.double(), (f" (over the finite values; {left} NaN/Inf left out, see data.nonfinite)" if left else "")


def _normalization(x: torch.Tensor, x_val: Optional[torch.Tensor], th: Thresholds) -> Check:
    values, note = _finite_values(x)
    mean = float(values.mean()) if values.numel() else 0.0
    std = float(values.std()) if values.numel() > 1 else 0.0
    ok_std = std > 0 and 1 / th.normalization_std <= std <= th.normalization_std
    value = {"mean": mean, "std": std}
    if abs(mean) > th.normalization_mean or not ok_std:
        return Check("data.normalization", "WARN", value, {"mean": th.normalization_mean, "std": th.normalization_std},
                     f"train inputs have mean {mean:.3g} and std {std:.3g}{note}; expected |mean| <= "
                     f"{th.normalization_mean:g} ({SOURCES['normalization_mean']}) and std within "
                     f"[{1 / th.normalization_std:.2g}, {th.normalization_std:g}]",
                     "standardize the inputs with statistics fitted on the train split only "
                     "(data.normalize: true; Python: (x - mean_train) / std_train)")
    if x_val is not None and x_val.is_floating_point() and len(x_val) > 1 and x.dim() == 2:
        val_means, _ = _channel_axis_stats(x_val)
        if float(val_means.abs().max()) < 1e-6 and x_val.shape[1] > 0:
            return Check("data.normalization", "WARN", value, 1e-6,
                         "every validation feature has mean 0 to 1e-6: the normalization looks fitted on the "
                         "validation split itself, which leaks its statistics",
                         "fit the mean and std on the train split only and apply them to val and test")
    return Check("data.normalization", "PASS", value, {"mean": th.normalization_mean, "std": th.normalization_std},
                 f"train inputs have mean {mean:.3g} and std {std:.3g}{note}")


def _constant(x: torch.Tensor, th: Thresholds) -> Check:
    flat = x.double().reshape(len(x), -1)
    spread = flat.std(dim=0) if len(flat) > 1 else torch.zeros(flat.shape[1], dtype=torch.float64)
    constant = spread <= 1e-6 * flat.abs().mean(dim=0).clamp(min=1.0)
    share = float(constant.double().mean()) if constant.numel() else 0.0
    tabular = x.dim() == 2
    limit = th.constant_features if tabular else max(th.constant_features, 0.5)
    kind = "features" if tabular else "input positions (pixels/time steps; some constant ones are normal)"
    return check("data.constant_features", share <= limit, share, limit,
                 f"{int(constant.sum())} of {constant.numel()} {kind} never change in train ({share:.1%}); "
                 f"WARN above {limit:.0%}", "drop the constant columns; they carry no information")


def _input_scale(x: torch.Tensor, th: Thresholds) -> Check:
    flat, note = _finite_values(x, limit=200_000)
    scale = float(flat.abs().quantile(0.99)) if flat.numel() else 0.0
    return check("data.input_scale", scale <= th.input_scale, scale, th.input_scale,
                 f"99th percentile of |input| is {scale:.3g}{note}; WARN above {th.input_scale:g} "
                 f"({SOURCES['input_scale']}); large inputs saturate activations and blow up the loss at init",
                 "scale the inputs (divide images by 255, standardize tables: data.normalize: true)")


def _batch_remainder(n: Optional[int], batch_size: int, has_batchnorm: bool, left_out: bool) -> Check:
    """``left_out``: a last batch of 1 is left out of training (``drop_last``, or trainwise's own batches)."""
    remainder = None if n is None else n % batch_size
    bad = has_batchnorm and remainder == 1 and not left_out
    message = (f"{n} train samples in batches of {batch_size} leave a last batch of 1, and the model has "
               "BatchNorm, which cannot train on one sample ('Expected more than 1 value per channel'; "
               "pytorch#7716)" if bad else
               f"{n} train samples in batches of {batch_size} leave a last batch of 1, which BatchNorm cannot train "
               "on: it is left out of each epoch" if has_batchnorm and remainder == 1 else
               f"last training batch holds {remainder if remainder else batch_size} samples"
               if remainder is not None else "the stream's length is unknown; the last batch was not checked")
    return check("data.batch_remainder", not bad, remainder, 1, message,
                 "change batch_size by one, drop one sample, or use drop_last=True in your DataLoader", bad="FAIL")
