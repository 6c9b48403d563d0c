"""The data checks deepchecks users expect, on in-memory inputs: near duplicates (within train and
across splits), conflicting labels (one input, two labels), train/validation drift per feature, a
single feature that predicts the label (leakage) and outliers. Drift, leakage and outliers read
tables (one row of features per sample); the others read any input flattened to a row.

Each check compares against a ``Thresholds`` field and names its source; each WARN carries its fix.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from trainwise.doctor.report import Check, check
from trainwise.doctor.sample import Sample
from trainwise.doctor.thresholds import SOURCES, Thresholds

NEAR_DUPLICATE_ROWS = 2000  # rows compared pairwise (a seeded sample of larger splits)
LEAKAGE_DEPTH = 4  # depth of the one-feature tree (up to 16 intervals)
LEAKAGE_FEATURES = 200  # tables wider than this are not scanned feature by feature
KS_CRITICAL = 1.63  # Kolmogorov-Smirnov critical coefficient at alpha = 0.01: drift must beat sampling noise too


def _rows(x: torch.Tensor) -> np.ndarray:
    return x.detach().reshape(len(x), -1).double().cpu().numpy()


def _sample(rows: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    if len(rows) <= limit:
        return rows
    return rows[np.random.default_rng(seed).choice(len(rows), limit, replace=False)]


def quality_checks(train: Sample, val: Optional[Sample], test: Optional[Sample], *, task: str,
                   th: Thresholds, feature_names: Optional[Sequence[str]] = None) -> list[Check]:
    """The ``data.near_duplicates``, ``data.conflicting_labels``, ``data.drift``, ``data.leakage`` and
    ``data.outliers`` checks (those that apply to the data). ``feature_names``: one per column of a
    table, to name features in the messages (a DataFrame's columns, a CSV's encoded columns)."""
    if train.x is None or not train.x.is_floating_point():
        return []
    x = _rows(train.x)
    scale = x.std(axis=0)
    scale[scale <= 1e-12] = 1.0
    center = x.mean(axis=0)
    others = {name: (_rows(s.x) - center) / scale for name, s in (("val", val), ("test", test))
              if s is not None and s.x is not None and s.x.is_floating_point() and len(s)}
    checks = [_near_duplicates((x - center) / scale, others, th)]
    if task in ("classification", "binary"):
        checks.append(_conflicting_labels(x, train.y, th))
    if train.x.dim() == 2 and 1 < len(x):
        name = _namer(feature_names, x.shape[1])
        x_val = _rows(val.x) if val is not None and val.x is not None and len(val) > 1 else None
        checks += [_drift(x, x_val, th, name),
                   _leakage(x, train.y, x_val, val.y if x_val is not None else None, task, th, name),
                   _outliers(x, th, name)]
    return checks


def _row_ids(*tables: np.ndarray) -> list[np.ndarray]:
    """One integer per row, equal exactly when two rows (of any of ``tables``) hold the same values
    (their bytes, with -0.0 made 0.0)."""
    ids: dict[bytes, int] = {}
    return [np.array([ids.setdefault(row.tobytes(), len(ids)) for row in table + 0.0], dtype=np.int64)
            for table in tables]


def _near_share(a: np.ndarray, b: np.ndarray, limit: float) -> float:
    """Share of rows of ``a`` with a row of ``b`` closer than ``limit`` (RMS over features) but not
    identical (exact copies are data.duplicates' and data.split_overlap's). Identity is read off the
    rows' bytes, never off the distance: torch.cdist's matrix-product path leaves identical rows a
    small positive distance."""
    if not len(a) or not len(b):
        return 0.0
    dist = torch.cdist(torch.from_numpy(a), torch.from_numpy(b)) / math.sqrt(max(a.shape[1], 1))
    ids_a, ids_b = _row_ids(a, b)
    identical = torch.from_numpy(ids_a[:, None] == ids_b[None, :])
    near = (dist < limit) & ~identical  # within one table, each row is identical to itself
    return float(near.any(dim=1).double().mean())


def _near_duplicates(x: np.ndarray, others: dict[str, np.ndarray], th: Thresholds) -> Check:
    limit = th.near_duplicate_distance
    train = _sample(x, NEAR_DUPLICATE_ROWS)
    shares = {"train": _near_share(train, train, limit)}
    for name, rows in others.items():
        shares[name] = _near_share(_sample(rows, NEAR_DUPLICATE_ROWS, 1), train, limit)
    worst = max(shares, key=shares.__getitem__)
    text = ", ".join(f"{share:.1%} of {name}" for name, share in shares.items())
    return check("data.near_duplicates", shares[worst] <= th.duplicates, shares, th.duplicates,
                 f"rows within {limit:g} (RMS of standardized features) of another train row, not identical: {text}; "
                 f"WARN above {th.duplicates:.0%} ({SOURCES['duplicates']}; {SOURCES['near_duplicate_distance']})",
                 "near copies (re-encoded images, rounded rows, augmented copies) inflate validation scores when they "
                 "cross splits and overweight a few samples within train: deduplicate before splitting, and split "
                 "by the source (group) the copies come from")


def _conflicting_labels(x: np.ndarray, y: torch.Tensor, th: Thresholds) -> Check:
    labels = y.detach().reshape(len(y), -1).cpu().numpy()
    seen: dict[bytes, set] = {}
    for row, label in zip(x, labels):
        seen.setdefault(row.tobytes(), set()).add(label.tobytes())
    ambiguous = {key for key, values in seen.items() if len(values) > 1}
    count = sum(row.tobytes() in ambiguous for row in x)
    share = count / max(len(x), 1)
    return check("data.conflicting_labels", share <= th.conflicting_labels, share, th.conflicting_labels,
                 f"{count} train rows ({share:.1%}) share their exact input with a row of another label "
                 f"({len(ambiguous)} inputs); WARN above {th.conflicting_labels:.0%} ({SOURCES['conflicting_labels']})",
                 "relabel or drop the conflicting rows (keep the majority label per input); conflicting labels cap "
                 "the accuracy any model can reach and often mean a labeling error or a missing feature")


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, side="right") / len(a)
                        - np.searchsorted(b, grid, side="right") / len(b)).max())


def _namer(names: Optional[Sequence[str]], width: int) -> Callable[[int], str]:
    """``feature 'income'`` where the columns have names (as many as the table has), else ``feature 3``."""
    if names is not None and len(names) == width:
        return lambda j: f"feature {str(names[j])!r}"
    return lambda j: f"feature {j}"


def _drift(x: np.ndarray, x_val: Optional[np.ndarray], th: Thresholds, name: Callable[[int], str]) -> Check:
    if x_val is None:
        return Check("data.drift", "PASS", None, th.drift, "no validation split to compare train with")
    n, m = len(x), len(x_val)
    critical = KS_CRITICAL * math.sqrt((n + m) / (n * m))
    limit = max(th.drift, critical)
    stats = [ks_statistic(x[:, j], x_val[:, j]) for j in range(x.shape[1])]
    drifted = sorted((j for j, d in enumerate(stats) if d > limit), key=lambda j: -stats[j])
    worst = max(range(len(stats)), key=stats.__getitem__)
    named = ", ".join(f"{name(j)} (KS {stats[j]:.3g})" for j in drifted[:5])
    return Check("data.drift", "WARN" if drifted else "PASS", {"max_ks": stats[worst], "feature": worst,
                 "drifted": drifted}, limit,
                 (f"{len(drifted)} feature(s) are distributed differently in validation than in train: {named}"
                  if drifted else f"largest train/validation difference: {name(worst)}, KS {stats[worst]:.3g}")
                 + f"; WARN above {th.drift:g} ({SOURCES['drift']}) and the KS critical value {critical:.3g} "
                 "(alpha 0.01, this sample size)",
                 "split train and validation at random (stratified) from the same pool, or, if validation stands for "
                 "newer data on purpose, expect a lower score there and retrain on recent data" if drifted else "")


def _one_feature_score(feature: np.ndarray, y: np.ndarray, feature_val: np.ndarray, y_val: np.ndarray,
                       task: str) -> float:
    """How well one feature alone predicts the label on validation: a shallow decision tree on that
    feature (deepchecks' predictive power score uses one too), scored by balanced accuracy (R² for
    regression). A tree splits exactly where a leaked feature's values change class; quantile bins
    would straddle the boundary."""
    from sklearn.metrics import balanced_accuracy_score, r2_score
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    kind = DecisionTreeRegressor if task == "regression" else DecisionTreeClassifier
    tree = kind(max_depth=LEAKAGE_DEPTH, random_state=0).fit(feature.reshape(-1, 1), y)
    predicted = tree.predict(feature_val.reshape(-1, 1))
    if task == "regression":
        return float(r2_score(y_val, predicted)) if np.var(y_val) > 0 else 0.0
    return float(balanced_accuracy_score(y_val, predicted))


def _leakage(x: np.ndarray, y: torch.Tensor, x_val: Optional[np.ndarray], y_val: Optional[torch.Tensor], task: str,
             th: Thresholds, name: Callable[[int], str]) -> Check:
    if x.shape[1] > LEAKAGE_FEATURES:
        return Check("data.leakage", "PASS", None, th.leakage_score, f"{x.shape[1]} features: too many to scan one by "
                     f"one (up to {LEAKAGE_FEATURES})")
    labels = y.detach().cpu().numpy().reshape(len(y), -1)
    if labels.shape[1] != 1:
        return Check("data.leakage", "PASS", None, th.leakage_score, "several targets per row: not scanned")
    labels = labels[:, 0]
    if x_val is None or y_val is None:  # hold out every fifth row
        held = np.arange(len(x)) % 5 == 0
        x, x_val, labels, val_labels = x[~held], x[held], labels[~held], labels[held]
    else:
        val_labels = y_val.detach().cpu().numpy().reshape(-1)
    kind = "regression" if task == "regression" else "classification"
    scores = [_one_feature_score(x[:, j], labels, x_val[:, j], val_labels, kind) for j in range(x.shape[1])]
    copies = _copies(x, labels, x_val, val_labels, scores, kind, th)
    best = max(copies or range(len(scores)), key=lambda j: (copies.get(j, 0.0), scores[j]))
    metric = "R²" if kind == "regression" else "balanced accuracy"
    score = scores[best]
    status = "FAIL" if copies else "WARN" if score >= th.leakage_score else "PASS"
    found = f"the best single feature ({name(best)}) alone predicts the validation target with {metric} {score:.4g}"
    if status == "FAIL":
        found += (f" and is a copy of it (the label explains {copies[best]:.2%} of its variance, η²)"
                  if kind == "classification" else f" and is a copy of it in other units (r² {copies[best]:.4g})")
    value = {"feature": best, "score": score, **({"copy": copies[best]} if copies else {})}
    fail_rule = (f"FAIL at {th.leakage_fail:g} when the label also explains {th.leakage_copy:g} of the feature's "
                 f"variance ({SOURCES['leakage_copy']})" if kind == "classification" else
                 f"FAIL when the feature's r² with the target reaches {th.leakage_fail:g}")
    return Check("data.leakage", status, value, [th.leakage_score, th.leakage_fail],
                 f"{found}; WARN at {th.leakage_score:g} ({SOURCES['leakage_score']}), {fail_rule} "
                 f"({SOURCES['leakage_fail']})",
                 "" if status == "PASS" else
                 f"check that {name(best)} is known before the label is (an id, a timestamp, a field computed from the "
                 "label leaks it); drop it if not, and measure the model without it"
                 + ("; a model trained with a copy of the label learns to read it and fails where the label is not "
                    "known yet" if status == "FAIL" else ""))


def _copies(x: np.ndarray, labels: np.ndarray, x_val: np.ndarray, val_labels: np.ndarray, scores: list[float],
            kind: str, th: Thresholds) -> dict[int, float]:
    """The features that copy the target, with how closely. Classification: a feature that alone predicts
    the label (``leakage_fail``) and varies almost only with it (the label explains ``leakage_copy`` of
    its train variance: the correlation ratio η²); a measured feature that separates well-apart classes
    still varies within each class. Regression: r² with the validation target of ``leakage_fail``."""
    found = {}
    for j in range(x.shape[1]):
        if kind == "regression":
            a, b = x_val[:, j], val_labels.astype(np.float64)
            share = float(np.corrcoef(a, b)[0, 1] ** 2) if a.std() > 0 and b.std() > 0 else 0.0
            if share >= th.leakage_fail:
                found[j] = share
        elif scores[j] >= th.leakage_fail:
            feature = x[:, j]
            total = float(((feature - feature.mean()) ** 2).sum())
            within = sum(float(((feature[labels == c] - feature[labels == c].mean()) ** 2).sum())
                         for c in np.unique(labels))
            share = 1.0 - within / total if total > 0 else 0.0
            if share >= th.leakage_copy:
                found[j] = share
    return found


def _outliers(x: np.ndarray, th: Thresholds, name: Callable[[int], str]) -> Check:
    """Rows far from the rest: each row's RMS of standardized features, against Tukey fences
    (``outlier_iqr`` interquartile ranges above the third quartile) of those RMS values. One score
    per row keeps sparse and skewed columns (mostly zero, a few large) from flagging ordinary rows."""
    # robust per-feature scale (IQR / 1.349, the std of a normal): the outliers themselves must not
    # inflate the scale that judges them; features with no IQR (sparse, one-hot) fall back to the std
    q1f, q3f = np.quantile(x, [0.25, 0.75], axis=0)
    scale = (q3f - q1f) / 1.349
    std = x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, np.where(std > 1e-12, std, 1.0))
    z = (x - np.median(x, axis=0)) / scale
    score = np.sqrt((z ** 2).mean(axis=1))
    q1, q3 = np.quantile(score, [0.25, 0.75])
    fence = q3 + th.outlier_iqr * (q3 - q1)
    rows = score > fence
    share = float(rows.mean())
    worst = np.argsort(-score)[:3]
    named = ", ".join(f"row {i} ({name(int(np.abs(z[i]).argmax()))}: z {z[i, np.abs(z[i]).argmax()]:+.3g})"
                      for i in worst if rows[i])
    return check("data.outliers", share <= th.outliers, share, th.outliers,
                 f"{int(rows.sum())} train rows ({share:.1%}) lie over {th.outlier_iqr:g} interquartile ranges above "
                 f"the third quartile of the rows' distance from the median (RMS of robustly scaled features)"
                 + (f": {named}" if named else "") + f"; WARN above {th.outliers:.0%} "
                 f"({SOURCES['outliers']}; {SOURCES['outlier_iqr']})",
                 "look at those rows: fix unit or entry errors, clip (winsorize) or log-transform heavy-tailed "
                 "features, or use a robust loss (Huber) for regression targets")
