"""Which storage a study folder uses on one machine: Optuna's journal file or SQLite, measured with
2 worker processes hammering one study at once.

Each contestant is 2 processes started together, each running ``trials`` trials that do what a
trainwise trial does to the storage (ask, one report per epoch with should_prune, a few user
attributes, tell), as fast as they can — a worst case: real trials train between these calls.
Contestants alternate, round after round; figures are medians over rounds of the wall time per
trial, and the count of errors ("database is locked" and others) over all rounds.

- ``journal``: ``JournalStorage(JournalFileBackend)`` — append-only log under a file lock.
- ``sqlite``: Optuna's ``RDBStorage`` on SQLite as it comes (deferred transactions).
- ``sqlite_immediate``: what trainwise uses (``trainwise.tune.storage.connect``): RDBStorage with
  heartbeats, every transaction ``BEGIN IMMEDIATE``, a 120 s busy timeout.

The choice also weighs what each one offers: Optuna 5's heartbeats (failing and retrying the
trials of a dead worker) exist for RDB storages only; a journal file has none.

    python benchmarks/tune_storage.py              # 3 rounds x 2 workers x 40 trials
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import base_parser, machine_info, write_result

CONTESTANTS = ("journal", "sqlite", "sqlite_immediate")
EPOCHS = 5


def open_storage(kind: str, folder: Path) -> Any:
    import optuna

    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(folder / "journal.log")))
    if kind == "sqlite":
        return optuna.storages.RDBStorage(f"sqlite:///{folder / 'plain.db'}")
    from trainwise.tune.storage import Place, connect

    return connect(Place("bench", folder, f"sqlite:///{folder / 'study.db'}"), heartbeat_interval=5,
                   grace_period=15, max_retries=0)


def worker(kind: str, folder: str, trials: int, start: Any, results: Any) -> None:
    import warnings

    import optuna

    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    errors: dict[str, int] = {}

    def attempt(fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - counted: that is the figure
            key = "database is locked" if "database is locked" in str(exc) else type(exc).__name__
            errors[key] = errors.get(key, 0) + 1
            return None

    storage = open_storage(kind, Path(folder))
    study = optuna.load_study(study_name="bench", storage=storage, sampler=optuna.samplers.RandomSampler())
    start.wait()
    began = time.perf_counter()
    done = 0
    for _ in range(trials):
        trial = attempt(study.ask)
        if trial is None:
            continue
        x = attempt(lambda: trial.suggest_float("x", 0.0, 1.0)) or 0.0
        for epoch in range(1, EPOCHS + 1):
            attempt(lambda: trial.report(x / epoch, epoch))
            attempt(trial.should_prune)
        attempt(lambda: trial.set_user_attr("run_dir", f"trial-{trial.number}"))
        if attempt(lambda: study.tell(trial, x)) is not None or True:
            done += 1
    results.put({"seconds": time.perf_counter() - began, "trials": done, "errors": errors})


def run_round(kind: str, trials: int) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory() as folder:
        import optuna

        # Created once, as trainwise does under its study lock: the figures are the trials' traffic.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        optuna.create_study(study_name="bench", storage=open_storage(kind, Path(folder)))
        start, results = context.Barrier(2), context.Queue()
        processes = [context.Process(target=worker, args=(kind, folder, trials, start, results)) for _ in range(2)]
        for p in processes:
            p.start()
        outcomes = [results.get(timeout=600) for _ in processes]
        for p in processes:
            p.join()
    errors: dict[str, int] = {}
    for o in outcomes:
        for key, count in o["errors"].items():
            errors[key] = errors.get(key, 0) + count
    seconds = max(o["seconds"] for o in outcomes)
    return {"ms_per_trial": 1000 * seconds / sum(o["trials"] for o in outcomes), "errors": errors}


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=40, help="trials per worker per round")
    args = parser.parse_args(argv)
    rounds, trials = (1, 4) if args.quick else (args.rounds, args.trials)
    measured: dict[str, list[dict[str, Any]]] = {k: [] for k in CONTESTANTS}
    for _ in range(rounds):
        for kind in CONTESTANTS:
            measured[kind].append(run_round(kind, trials))
    figure = {}
    for kind, runs in measured.items():
        errors: dict[str, int] = {}
        for r in runs:
            for key, count in r["errors"].items():
                errors[key] = errors.get(key, 0) + count
        figure[kind] = {"ms_per_trial": round(statistics.median(r["ms_per_trial"] for r in runs), 2),
                        "errors": errors, "heartbeats": kind != "journal"}
    ours, journal = figure["sqlite_immediate"], figure["journal"]
    ratio = ours["ms_per_trial"] / journal["ms_per_trial"]
    meets = not ours["errors"]
    headline = (f"sqlite_immediate {ours['ms_per_trial']} ms/trial, {sum(ours['errors'].values())} errors; journal "
                f"{journal['ms_per_trial']} ms/trial, {sum(journal['errors'].values())} errors; plain sqlite "
                f"{figure['sqlite']['ms_per_trial']} ms/trial, {sum(figure['sqlite']['errors'].values())} errors "
                f"({', '.join(figure['sqlite']['errors']) or 'none'}); sqlite_immediate/journal {ratio:.2f}x")
    write_result(args.out, "tune_storage", {
        "figure": figure, "headline": headline, "ratio_sqlite_immediate_to_journal": round(ratio, 3),
        "target": "no error with 2 workers, and heartbeats (retry of a dead worker's trial)",
        "meets_target": meets, "config": {"rounds": rounds, "trials_per_worker": trials, "workers": 2,
                                          "reports_per_trial": EPOCHS},
        "quick": args.quick, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
