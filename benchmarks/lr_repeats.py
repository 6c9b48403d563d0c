"""Why a retried range test is read off the mean of 3 (issue 22, round 4), from recorded curves, no training.

``--collect RECIPE[,RECIPE] FIRST-LAST`` runs the range test as ``lr=auto`` does (the budgeted test, then, when it
gave no suggestion, the retry's length) ``--restarts`` times per seed from the same weights, each over another
batch order (a source's epochs shifted by ``REPEAT_EPOCH_SHIFT``; lr=auto's repeats also reseed the RNGs, so
its draws are like these, not the same), and adds the raw curves to
``results/lr_repeats_curves.json``. Without it the script reads that file and prints, per recipe, how the edge
rule's reading spreads (log10 lr) when read off one test, off the mean of 3 (every 3 of a seed's restarts) and as
the median of 3 single readings, with the gap to the recipe's best sweep lr (sweep accuracy interpolated in log
lr: pessimistic on a cliff). Only shaping recipes were collected: the reporting LSTM's curves are not in the file.

    .venv/bin/python benchmarks/lr_repeats.py --collect mnist1d_gru 0-11 --restarts 3   # minutes
    .venv/bin/python benchmarks/lr_repeats.py                                            # seconds
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
from lr_rule_select import accuracy_at  # noqa: E402
from trainwise.lr.finder import REPEAT_EPOCH_SHIFT, LRFinder, _mean_curve  # noqa: E402
from trainwise.lr.suggest import suggest  # noqa: E402

CURVES = common.RESULTS_DIR / "lr_repeats_curves.json"
SWEEPS = (common.RESULTS_DIR / "lr_suggestion.json",)


class _Stop(BaseException):
    """Ends a fit right after its range tests (a BaseException, so the Trainer does not catch it)."""


class _Shifted:
    """The same batches, each epoch's order drawn as epoch + shift."""

    def __init__(self, inner: Any, shift: int) -> None:
        self.inner, self.shift = inner, shift

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch + self.shift)

    def __iter__(self) -> Any:
        return iter(self.inner)

    def state_dict(self) -> Any:
        return self.inner.state_dict()

    def load_state_dict(self, state: Any) -> None:
        self.inner.load_state_dict(state)


def collect(names: list[str], seeds: range, restarts: int, mnist_root: Path) -> dict[str, Any]:
    import trainwise.lr.budget as budget

    captured: dict[str, Any] = {}

    def range_tests(t: Any, batches: Any, total_steps: Any, run_dir: Any, run_test: Any) -> Any:
        settings = {**t.lr_find, "retry": False, "retry_repeats": 1}
        configured = int(settings.get("num_steps", 100))
        settings["num_steps"] = budget.budget_steps(configured, budget.sure_steps(t, total_steps))
        settings.pop("retry_steps", None)

        def test(source: Any, steps: int) -> Any:
            finder = LRFinder(t.model, t.optimizer, None, device=t.device, **{**settings, "num_steps": steps},
                              batch_loss=lambda batch: t.compute_loss(t.model, batch))
            result = finder.run(source)
            return {"first_lr": result.lrs[0], "lr_factor": result.lrs[1] / result.lrs[0],
                    "raw": [round(x, 4) for x in result.raw_losses], "edge": result.suggestions.get("edge")}

        first = test(batches, settings["num_steps"])
        retried = first["edge"] is None
        steps = 2 * configured if retried else settings["num_steps"]
        captured["rec"] = {"retried": retried, "restarts": [
            test(batches if k == 0 else _Shifted(batches, k * REPEAT_EPOCH_SHIFT), steps) for k in range(restarts)]}
        raise _Stop

    budget.budgeted_find_lr = range_tests
    curves: dict[str, Any] = {}
    for name in names:
        with tempfile.TemporaryDirectory() as scratch:
            runner = lr_suggestion.Runner(lr_suggestion.RECIPES[name], device="cpu", mnist_root=mnist_root,
                                          scratch=Path(scratch))
            for seed in seeds:
                try:
                    runner._fit(seed, "auto")
                except _Stop:
                    pass
                curves.setdefault(name, {})[str(seed)] = captured.pop("rec")
                print(name, seed, [r["edge"] for r in curves[name][str(seed)]["restarts"]], flush=True)
    return curves


def _arrays(test: dict[str, Any]) -> tuple[list[float], list[float], list[float]]:
    """lrs, moving average (0.98, bias-corrected, as the range test records it) and raw losses of a stored test."""
    raw = test["raw"]
    lrs = [test["first_lr"] * test["lr_factor"] ** i for i in range(len(raw))]
    average, smoothed = 0.0, []
    for step, loss in enumerate(raw):
        average = 0.98 * average + 0.02 * loss
        smoothed.append(average / (1 - 0.98 ** (step + 1)))
    return lrs, smoothed, raw


def read(tests: list[dict[str, Any]]) -> float | None:
    lrs, smoothed, raw = _mean_curve([_arrays(test) for test in tests])
    return suggest(lrs, smoothed, "edge", raw)[0]


def readings(seeds: dict[str, Any]) -> dict[str, list[float | None]]:
    single, mean3, median3 = [], [], []
    for record in seeds.values():
        tests = record["restarts"]
        single += [read([test]) for test in tests]
        for three in itertools.combinations(tests, 3):
            mean3.append(read(list(three)))
            alone = [lr for lr in (read([test]) for test in three) if lr is not None]
            median3.append(float(np.median(alone)) if alone else None)
    return {"one test": single, "mean of 3": mean3, "median of 3": median3}


def main() -> int:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--collect", nargs=2, metavar=("RECIPES", "FIRST-LAST"), default=None)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--sweeps", type=Path, nargs="*", default=list(SWEEPS),
                        help="result files of lr_suggestion.py whose sweeps score the readings")
    args = parser.parse_args()
    if args.collect:
        common.quiet_logs()
        common.pin_threads(args.threads)
        first, last = map(int, args.collect[1].split("-"))
        stored = json.loads(CURVES.read_text())["curves"] if CURVES.exists() else {}
        for name, seeds in collect(args.collect[0].split(","), range(first, last + 1), args.restarts,
                                   args.mnist_root).items():
            stored.setdefault(name, {}).update(seeds)
        CURVES.write_text(json.dumps({"curves": stored}))
        return 0
    curves = json.loads(CURVES.read_text())["curves"]
    sweeps = {e["dataset"]: e["sweep_accuracy"] for path in args.sweeps for e in json.loads(path.read_text())["datasets"]}
    print("recipe          reading      n  none  log10 lr: min   p10   med   max    sd |  gap: mean   p90  worst")
    for name, seeds in curves.items():
        for label, values in readings(seeds).items():
            logs = np.log10([lr for lr in values if lr is not None])
            line = (f"{name:15} {label:11} {len(values):3} {sum(lr is None for lr in values):5}    {logs.min():6.2f} "
                    f"{np.percentile(logs, 10):5.2f} {np.median(logs):5.2f} {logs.max():5.2f} {logs.std():5.2f}")
            if name in sweeps:
                best = max(sweeps[name].values())
                gaps = [best - accuracy_at(sweeps[name], lr) for lr in values if lr is not None]
                line += f" | {np.mean(gaps):9.2f} {np.percentile(gaps, 90):5.2f} {max(gaps):6.2f}"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
