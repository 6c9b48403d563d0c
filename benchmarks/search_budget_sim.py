"""What compute ASHA and HyperBand spend by design: the share of "every trial to max_epochs" that
trainwise's pruners (Optuna's, as ``trainwise.tune`` builds them, the last epoch never pruned) spend
on n configurations, on synthetic trials (no training): a trial's quality q ~ U(0, 1), its value at
epoch e is q + N(0, 0.05), so the pruners see nearly noiseless rankings. ``regret``: best q of all
trials minus best q of the finished ones. Li et al.'s bracket sizes give HyperBand 0.274x at
max/min = 27, eta = 3 in the limit (ASHA 3/27 = 0.111x); a finite search spends more, because each
rung promotes the first trials that reach it (there is nothing yet to compare them with).

    python benchmarks/search_budget_sim.py        # n = 12, 40, 81, 162; 8 seeds each (~5 min)
"""

from __future__ import annotations

import random
import statistics
import sys

from common import base_parser, machine_info, write_result

SIZES, SEEDS, EPOCHS, NOISE = (12, 40, 81, 162), range(100, 108), 27, 0.05


def one_search(pruner: str, n: int, seed: int) -> tuple[float, float]:
    import optuna

    from trainwise.tune.settings import TuneSettings, make_pruner

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rng = random.Random(seed)
    settings = TuneSettings(space={}, pruner=pruner, min_resource=1, reduction_factor=3)
    study = optuna.create_study(study_name=f"sim-{seed}", direction="maximize", pruner=make_pruner(settings, EPOCHS),
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    spent, best_all, best_finished = 0, 0.0, 0.0
    for _ in range(n):
        trial, quality = study.ask(), rng.random()
        trial.suggest_float("x", 0, 1)
        best_all = max(best_all, quality)
        for epoch in range(1, EPOCHS + 1):
            trial.report(quality + rng.gauss(0, NOISE), epoch)
            if epoch < EPOCHS and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, quality)
            best_finished = max(best_finished, quality)
        spent += epoch
    return spent / (n * EPOCHS), best_all - best_finished


def main(argv: list[str] | None = None) -> int:
    args = base_parser(__doc__.splitlines()[0]).parse_args(argv)
    sizes, seeds = ((12,), range(100, 102)) if args.quick else (SIZES, SEEDS)
    table = {}
    for pruner in ("asha", "hyperband"):
        for n in sizes:
            runs = [one_search(pruner, n, seed) for seed in seeds]
            shares = [share for share, _ in runs]
            table[f"{pruner} n={n}"] = {"compute_share": round(statistics.mean(shares), 3),
                                        "min": round(min(shares), 3), "max": round(max(shares), 3),
                                        "regret": round(statistics.mean(r for _, r in runs), 4)}
            print(pruner, n, table[f"{pruner} n={n}"], flush=True)
    headline = ", ".join(f"{k} {v['compute_share']:.3f}x" for k, v in table.items())
    write_result(args.out, "search_budget_sim", {
        "figure": table, "headline": headline, "meets_target": True, "target": "none (what the pruners spend by design)",
        "config": {"max_epochs": EPOCHS, "min_resource": 1, "reduction_factor": 3, "noise": NOISE,
                   "seeds": list(seeds), "sampler": "random"},
        "quick": args.quick, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
