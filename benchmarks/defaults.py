"""Defaults for weight decay, gradient clipping and warmup, measured with ``optimizer.lr: auto``.

Every run goes through the CLI's ``train`` command (in this process, one run at a time) with
``optimizer.lr=auto``, so the LR range test picks the peak lr of each run as it would for a user.
The grid, AdamW in every cell:

1. 1cycle (the default schedule): ``optimizer.weight_decay`` 0, 1e-4, 1e-2 x ``train.grad_clip``
   none, 1.0 x ``schedule.warmup`` 0, 0.05 (a fraction of all steps, in front of 1cycle's own
   ramp-up): 12 cells. The weight decay and clipping chosen are the pair of best mean rank
   (averaged over both warmups).
2. cosine and constant, at that weight decay and clipping: ``schedule.warmup`` 0, 0.05: 4 cells,
   where warmup is the only ramp-up the lr gets. The warmup chosen wins the most of the 12
   comparisons (3 schedules x 4 recipes) between its two values; a tie keeps 0.

Recipes:

- digits: ``examples/digits.yaml`` (MLP 256-128, 40 epochs, early stopping on val_accuracy).
- mnist1d: ``examples/mnist1d.yaml`` (CNN 32-64-128), 10 epochs instead of 20 for the CPU budget.
- diabetes: scikit-learn's diabetes table (442 rows, 10 raw features) written as a CSV, and wine:
  scikit-learn's wine table (178 rows, 13 features, classes named class_0..class_2). Both are run
  the way a newcomer would: only ``data: {dataset: csv, path: ..., target: target}`` and
  ``model: {name: mlp}``, everything else default (the grid's keys aside).

The figure of a run is its test accuracy (classification) or its test RMSE in the targets'
original units (regression; computed from the run's R², which does not depend on the units the
summary reports, and the original test targets). For diabetes the RMSE of scikit-learn's
LinearRegression fitted on the same train split is recorded beside it. Cells are ranked per
recipe by the mean over seeds (a failed run ranks last); ``regret`` is how far a cell is from
the best cell of a recipe (accuracy points, or RMSE percent).

    .venv/bin/python benchmarks/defaults.py --threads 1       # writes results/defaults.json
    .venv/bin/python benchmarks/defaults.py --recipes diabetes wine --csv-seeds 0 1 2 3 4 5
    .venv/bin/python benchmarks/defaults.py --quick           # 2 cells, 1 seed, tiny epochs
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import common  # noqa: E402

RECIPES = ("digits", "mnist1d", "diabetes", "wine")
WEIGHT_DECAYS = (0.0, 1e-4, 1e-2)
GRAD_CLIPS = (None, 1.0)
WARMUPS = (0.0, 0.05)
EXAMPLES = common.REPO_ROOT / "examples"


@dataclass(frozen=True)
class Cell:
    schedule: str
    weight_decay: float
    grad_clip: float | None
    warmup: float

    @property
    def name(self) -> str:
        clip = "none" if self.grad_clip is None else f"{self.grad_clip:g}"
        return f"{self.schedule} wd={self.weight_decay:g} clip={clip} warmup={self.warmup:g}"

    def overrides(self) -> list[str]:
        clip = "null" if self.grad_clip is None else repr(self.grad_clip)
        return [f"schedule.name={self.schedule}", f"optimizer.weight_decay={self.weight_decay!r}",
                f"train.grad_clip={clip}", f"schedule.warmup={self.warmup!r}"]


def onecycle_grid() -> list[Cell]:
    return [Cell("onecycle", wd, clip, warmup) for wd in WEIGHT_DECAYS for clip in GRAD_CLIPS for warmup in WARMUPS]


def warmup_cells(weight_decay: float, grad_clip: float | None) -> list[Cell]:
    return [Cell(schedule, weight_decay, grad_clip, warmup) for schedule in ("cosine", "constant") for warmup in WARMUPS]


# ---------------------------------------------------------------------------------------- data
def write_table_csv(path: Path, feature_names: list[str], x: np.ndarray, target: list[str]) -> Path:
    """A CSV with a header: the features, then a ``target`` column of the given text."""
    lines = [",".join([*feature_names, "target"])]
    lines += [",".join([*(repr(float(v)) for v in row), label]) for row, label in zip(x, target)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_sklearn_csvs(folder: Path) -> dict[str, Path]:
    """diabetes.csv (raw features, float target) and wine.csv (class names as text)."""
    from sklearn.datasets import load_diabetes, load_wine

    diabetes, wine = load_diabetes(scaled=False), load_wine()
    return {
        "diabetes": write_table_csv(folder / "diabetes.csv", list(diabetes.feature_names), diabetes.data,
                                    [repr(float(v)) for v in diabetes.target]),
        "wine": write_table_csv(folder / "wine.csv", list(wine.feature_names), wine.data,
                                [f"class_{int(v)}" for v in wine.target]),
    }


def newcomer_config(folder: Path, csv_path: Path) -> Path:
    """The newcomer's config: only the data and the model's name."""
    path = folder / f"{csv_path.stem}.yaml"
    path.write_text(f"data: {{dataset: csv, path: {csv_path}, target: target}}\nmodel: {{name: mlp}}\n")
    return path


def linear_regression_rmse(csv_path: Path, seed: int) -> float:
    """Test RMSE of scikit-learn's LinearRegression fitted on the train split of ``seed``."""
    from sklearn.linear_model import LinearRegression

    from trainwise.data import load_data

    bundle = load_data("csv", path=csv_path, target="target", seed=seed, normalize=False, standardize_target=False)
    fitted = LinearRegression().fit(bundle.train[0].numpy(), bundle.train[1].numpy())
    error = fitted.predict(bundle.test[0].numpy()) - bundle.test[1].numpy()
    return float(np.sqrt(np.mean(error.astype(np.float64) ** 2)))


def original_units_rmse(summary: dict[str, Any], csv_path: Path, seed: int) -> float:
    """The run's test RMSE in the targets' own units, from its R² (unit-free) and the test targets."""
    from trainwise.data import load_data

    bundle = load_data("csv", path=csv_path, target="target", seed=seed, normalize=False, standardize_target=False)
    y = bundle.test[1].double()
    variance = float(((y - y.mean()) ** 2).mean())
    return math.sqrt(max(0.0, 1.0 - summary["test_r2"]) * variance)


# ---------------------------------------------------------------------------------------- runs
def train_once(config: Path, overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """``trainwise train CONFIG OVERRIDES`` in this process; the run's summary.json."""
    from trainwise.cli import main

    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        code = main(["train", str(config), *overrides, "train.report=false", "--run-dir", str(run_dir), "--quiet"])
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        raise RuntimeError(f"exit {code}: {output.getvalue().strip().splitlines()[-1:]}")
    return json.loads(summary_path.read_text())


def measure(recipe: str, config: Path, cell: Cell, seed: int, *, work: Path, extra: list[str],
            csv_path: Path | None) -> dict[str, Any]:
    run_dir = work / f"{recipe}-{len(list(work.iterdir()))}"
    overrides = ["optimizer.lr=auto", f"seed={seed}", *cell.overrides(), *extra]
    start = time.perf_counter()
    row: dict[str, Any] = {"recipe": recipe, "cell": cell.name, "seed": seed}
    try:
        summary = train_once(config, overrides, run_dir)
    except Exception as error:  # a failed run is a result: it ranks last  # noqa: BLE001
        return {**row, "status": "failed", "error": str(error)[:300], "figure": None}
    row.update(status=summary["status"], lr=summary.get("lr"), epochs_run=summary.get("epochs_run"),
               seconds=round(time.perf_counter() - start, 1))
    if csv_path is not None and summary.get("task") == "regression":
        row["figure"] = original_units_rmse(summary, csv_path, seed)
        row["reported_test_rmse"] = summary.get("test_rmse")
    else:
        row["figure"] = summary.get("test_accuracy")
    if summary["status"] in ("diverged", "failed") or row["figure"] is None or not math.isfinite(row["figure"]):
        row["figure"] = None
    return row


# ---------------------------------------------------------------------------------------- analysis
def lower_is_better(recipe: str) -> bool:
    return recipe == "diabetes"


def aggregate(rows: list[dict[str, Any]], cells: list[Cell], recipes: list[str]) -> dict[str, Any]:
    """Per cell and recipe: mean over seeds, rank, regret; per cell: mean rank."""
    table: dict[str, dict[str, Any]] = {cell.name: {} for cell in cells}
    for recipe in recipes:
        means = {}
        for cell in cells:
            figures = [r["figure"] for r in rows if r["recipe"] == recipe and r["cell"] == cell.name]
            failed = any(f is None for f in figures) or not figures
            means[cell.name] = None if failed else statistics.fmean(figures)
        worst = math.inf if lower_is_better(recipe) else -math.inf
        key = {name: (worst if m is None else m) for name, m in means.items()}
        order = sorted(key, key=lambda name: key[name], reverse=not lower_is_better(recipe))
        best = key[order[0]]
        for name in means:
            ties = [n for n in order if key[n] == key[name]]
            rank = statistics.fmean(order.index(n) + 1 for n in ties)
            if means[name] is None:
                regret = None
            elif lower_is_better(recipe):
                regret = 100 * (means[name] / best - 1)  # RMSE percent above the best cell
            else:
                regret = 100 * (best - means[name])  # accuracy points below the best cell
            table[name][recipe] = {"mean": means[name], "rank": rank, "regret": regret}
    for name, per_recipe in table.items():
        per_recipe["mean_rank"] = statistics.fmean(per_recipe[r]["rank"] for r in recipes)
    return table


def choose_decay_and_clip(table: dict[str, Any], cells: list[Cell]) -> tuple[float, float | None]:
    """The 1cycle (weight decay, clip) pair of best mean rank, averaged over both warmups; ties go
    to less decay, then no clipping."""
    pairs = sorted({(c.weight_decay, c.grad_clip) for c in cells}, key=lambda p: (p[0], p[1] or 0))

    def score(pair: tuple[float, float | None]) -> float:
        return statistics.fmean(table[c.name]["mean_rank"] for c in cells if (c.weight_decay, c.grad_clip) == pair)

    return min(pairs, key=score)


def warmup_wins(table: dict[str, Any], cells: list[Cell], recipes: list[str]) -> dict[float, float]:
    """For each schedule and recipe, a point to the warmup with the better mean (half each on a tie)."""
    wins = {warmup: 0.0 for warmup in WARMUPS}
    for schedule in sorted({c.schedule for c in cells}):
        pair = {c.warmup: c for c in cells if c.schedule == schedule}
        for recipe in recipes:
            ranks = {warmup: table[cell.name][recipe]["rank"] for warmup, cell in pair.items()}
            best = min(ranks.values())
            winners = [warmup for warmup, rank in ranks.items() if rank == best]
            for warmup in winners:
                wins[warmup] += 1 / len(winners)
    return wins


def format_table(table: dict[str, Any], recipes: list[str]) -> str:
    header = f"{'cell':44s}" + "".join(f"{r:>16s}" for r in recipes) + f"{'mean rank':>11s}"
    lines = [header, "-" * len(header)]
    for name, per_recipe in table.items():
        cells = []
        for recipe in recipes:
            entry = per_recipe[recipe]
            if entry["mean"] is None:
                cells.append(f"{'failed':>16s}")
            elif lower_is_better(recipe):
                cells.append(f"{entry['mean']:>9.2f} ({entry['rank']:>4.1f})")
            else:
                cells.append(f"{entry['mean']:>9.4f} ({entry['rank']:>4.1f})")
        lines.append(f"{name:44s}" + "".join(cells) + f"{per_recipe['mean_rank']:>11.2f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- main
def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="seeds of digits and mnist1d")
    parser.add_argument("--csv-seeds", nargs="+", type=int, default=[0, 1, 2, 3],
                        help="seeds of the two small tables (a run takes about a second; wine's test set is 36 rows)")
    parser.add_argument("--mnist1d-epochs", type=int, default=10)
    args = parser.parse_args()
    common.pin_threads(args.threads)
    common.quiet_logs()
    cells = onecycle_grid()
    if args.quick:
        cells, args.seeds, args.csv_seeds = cells[:2], args.seeds[:1], args.csv_seeds[:1]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="trainwise-defaults-") as tmp:
        work = Path(tmp)
        csvs = write_sklearn_csvs(work)
        quick = ["train.epochs=2"] if args.quick else []
        recipes = {
            "digits": (EXAMPLES / "digits.yaml", quick, None),
            "mnist1d": (EXAMPLES / "mnist1d.yaml", quick or [f"train.epochs={args.mnist1d_epochs}"], None),
            "diabetes": (newcomer_config(work, csvs["diabetes"]), quick, csvs["diabetes"]),
            "wine": (newcomer_config(work, csvs["wine"]), quick, csvs["wine"]),
        }
        (work / "runs").mkdir()

        def run_cells(stage_cells: list[Cell]) -> list[dict[str, Any]]:
            rows = []
            for recipe in args.recipes:
                config, extra, csv_path = recipes[recipe]
                for cell in stage_cells:
                    for seed in (args.seeds if csv_path is None else args.csv_seeds):
                        row = measure(recipe, config, cell, seed, work=work / "runs", extra=extra, csv_path=csv_path)
                        rows.append(row)
                        figure = "failed" if row["figure"] is None else f"{row['figure']:.4f}"
                        print(f"{recipe:9s} {cell.name:44s} seed {seed}: {figure}  (lr {row.get('lr')})", flush=True)
            return rows

        # Stage 1: weight decay and clipping on the default schedule.
        rows = run_cells(cells)
        weight_decay, grad_clip = choose_decay_and_clip(aggregate(rows, cells, args.recipes), cells)
        # Stage 2: warmup where it is the only ramp-up, at the chosen decay and clipping.
        stage_two = [] if args.quick else warmup_cells(weight_decay, grad_clip)
        rows += run_cells(stage_two)
        linear = {seed: linear_regression_rmse(csvs["diabetes"], seed) for seed in args.csv_seeds}
    table = aggregate(rows, cells + stage_two, args.recipes)
    chosen_pair = [c for c in cells if (c.weight_decay, c.grad_clip) == (weight_decay, grad_clip)]
    wins = warmup_wins(aggregate(rows, chosen_pair + stage_two, args.recipes), chosen_pair + stage_two, args.recipes)
    warmup = max(WARMUPS, key=lambda w: (wins[w], -w))  # a tie keeps no warmup
    print()
    print(format_table(table, args.recipes))
    if "diabetes" in args.recipes:
        print(f"\ndiabetes LinearRegression test RMSE: mean {statistics.fmean(linear.values()):.2f} "
              f"({', '.join(f'seed {s}: {v:.2f}' for s, v in linear.items())})")
    print(f"\nweight decay and clipping (best 1cycle mean rank over both warmups): {weight_decay:g}, {grad_clip}")
    print(f"warmup wins over schedules x recipes: {', '.join(f'{w:g}: {n:g}' for w, n in wins.items())} -> {warmup:g}")
    headline = f"weight_decay {weight_decay:g}, grad_clip {grad_clip}, warmup {warmup:g}"
    write_result(args.out, {
        "headline": headline,
        "target": "defaults chosen by measurement (issue 8)",
        "meets_target": None,
        "chosen": {"weight_decay": weight_decay, "grad_clip": grad_clip, "warmup": warmup},
        "warmup_wins": {f"{w:g}": n for w, n in wins.items()},
        "seeds": args.seeds, "csv_seeds": args.csv_seeds, "recipes": args.recipes, "quick": args.quick,
        "mnist1d_epochs": args.mnist1d_epochs,
        "diabetes_linear_regression_rmse": {str(s): v for s, v in linear.items()} if "diabetes" in args.recipes else None,
        "table": table, "runs": rows,
        "seconds": round(time.perf_counter() - started, 1), "machine": common.machine_info(),
        "commit": git_commit(),
    })


def git_commit() -> str | None:
    """The commit measured, with ``+changes`` when the working tree differs from it."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=common.REPO_ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    return None if not commit else commit + ("+changes" if git("status", "--porcelain", "--", "src") else "")


def write_result(out: Path, payload: dict[str, Any]) -> None:
    """``out/defaults.json``; a choice, not a pass/fail figure, so ``meets_target`` is None."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "defaults.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"defaults: {payload['headline']} -> {path}", flush=True)


if __name__ == "__main__":
    main()
