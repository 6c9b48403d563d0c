"""How the edge rule's constants were chosen (issue 22, round 3), from recorded range-test curves, no training.

``--collect`` runs the range test as ``lr=auto`` does today (the Trainer's budgeted test and its retry, nothing
trained after it) on every recipe and seed of ``lr_suggestion.py`` and writes the curves (lrs, moving-average and
raw losses) to ``results/lr_rule_curves.json``. Without it the script reads that file and, for each candidate
(window in decades, rise, backoff), reads an lr off every curve and scores it by the test accuracy of the
recipe's sweep at that lr (linear in log lr between the sweep's half decades: a proxy that is pessimistic on a
cliff). Candidates are ranked by their worst gap over the **shaping recipes only** (``Recipe.fitted`` not empty),
then by their mean gap; the first one is the rule. The held-out recipes are printed after the choice, for that
one candidate, and only real lr=auto runs (``lr_suggestion.py``) report the figure.

    .venv/bin/python benchmarks/lr_rule_select.py --collect      # minutes: one range test per recipe and seed
    .venv/bin/python benchmarks/lr_rule_select.py                # seconds
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import lr_suggestion  # noqa: E402
from trainwise.lr.suggest import smooth_in_decades  # noqa: E402

CURVES = common.RESULTS_DIR / "lr_rule_curves.json"
SWEEPS = common.RESULTS_DIR / "lr_suggestion.json"
GRID = {"window": (0.2, 0.3, 0.4, 0.5, 0.6), "rise": (0.05, 0.1, 0.15, 0.2, 0.3, 0.4), "backoff": (1.5, 2, 2.5, 3, 4)}


class _Stop(BaseException):
    """Ends a fit right after its range test (a BaseException, so the Trainer does not catch it)."""


def collect(mnist_root: Path) -> dict[str, Any]:
    import trainwise.lr.budget as budget

    captured: dict[str, Any] = {}
    original = budget.budgeted_find_lr

    def after_the_test(t: Any, batches: Any, total_steps: Any, run_dir: Any, run_test: Any) -> Any:
        captured["summary"] = original(t, batches, total_steps, run_dir, run_test)[1]
        captured["curve"] = json.loads((Path(run_dir) / "lr_find.json").read_text())
        raise _Stop

    budget.budgeted_find_lr = after_the_test
    curves: dict[str, Any] = {}
    for name, recipe in lr_suggestion.RECIPES.items():
        with tempfile.TemporaryDirectory() as scratch:
            runner = lr_suggestion.Runner(recipe, device="cpu", mnist_root=mnist_root, scratch=Path(scratch))
            for seed in range(recipe.seeds):
                try:
                    runner._fit(seed, "auto")
                except _Stop:
                    pass
                curve = captured.pop("curve")
                curves.setdefault(name, {})[str(seed)] = {
                    "lrs": curve["lrs"], "losses": curve["losses"], "raw": curve["raw_losses"],
                    "valley_suggestion": captured.pop("summary").get("suggestions", {}).get("valley")}
                print(name, seed, len(curve["lrs"]), flush=True)
    budget.budgeted_find_lr = original
    return curves


def edge_lr(curve: dict[str, Any], window: float, rise: float, backoff: float) -> float:
    """The edge rule with the given constants (trainwise.lr.suggest's, parameterized)."""
    lrs = np.asarray(curve["lrs"])
    read = smooth_in_decades(lrs, np.asarray(curve["raw"]), window)
    lowest = int(np.argmin(read))
    drop = float(np.max(read[: lowest + 1]) - read[lowest])
    above = np.flatnonzero(read[lowest:] > read[lowest] + rise * drop)
    edge = lowest + int(above[0]) - 1 if len(above) else len(read) - 1
    return float(lrs[edge]) / backoff


def accuracy_at(sweep: dict[str, float], lr: float) -> float:
    points = sorted((np.log10(float(key)), value) for key, value in sweep.items())
    return float(np.interp(np.log10(lr), [x for x, _ in points], [y for _, y in points]))


def gaps(curves: dict[str, Any], sweeps: dict[str, dict[str, float]], names: list[str], *constants: float
         ) -> dict[str, float]:
    return {name: max(sweeps[name].values()) - float(np.mean([accuracy_at(sweeps[name], edge_lr(curve, *constants))
                                                              for curve in curves[name].values()]))
            for name in names}


def main() -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--collect", action="store_true", help="run the range tests and write the curves")
    args = parser.parse_args()
    if args.collect:
        common.quiet_logs()
        CURVES.write_text(json.dumps({"curves": collect(args.mnist_root)}))
        return 0
    curves = json.loads(CURVES.read_text())["curves"]
    sweeps = {entry["dataset"]: entry["sweep_accuracy"] for entry in json.loads(SWEEPS.read_text())["datasets"]}
    shaping = [name for name, recipe in lr_suggestion.RECIPES.items() if recipe.fitted and name in curves]
    held_out = [name for name, recipe in lr_suggestion.RECIPES.items() if not recipe.fitted and name in curves]
    ranked = sorted((max(g.values()), float(np.mean(list(g.values()))), constants)
                    for constants in itertools.product(*GRID.values())
                    for g in [gaps(curves, sweeps, shaping, *constants)])
    print(f"shaping recipes: {', '.join(shaping)}\nworst gap, mean gap (interpolated points), window/rise/backoff")
    for worst, mean, constants in ranked[:8]:
        print(f"  {worst:5.2f} {mean:5.2f}  {constants}")
    chosen = ranked[0][2]
    print(f"chosen {chosen}; shaping: " + ", ".join(f"{k} {v:+.2f}" for k, v in gaps(curves, sweeps, shaping, *chosen).items()))
    print("held out (after the choice): " + ", ".join(f"{k} {v:+.2f}" for k, v in gaps(curves, sweeps, held_out, *chosen).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
