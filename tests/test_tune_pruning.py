"""Where the halving pruners may stop a trial: at the rungs below the last epoch, never at the last one
(the top rung R of ASHA and HyperBand, where a trial is complete). Real searches through
``trainwise.tune`` with Optuna's pruners; the figure the search reads is scripted per trial and epoch
(a user metric), so that which trial is pruned where is known."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

import trainwise


def scripted_search(tmp_path: Path, scores: dict[int, list[float]], *, pruner: str, epochs: int,
                    min_resource: int = 1, study: str = "rungs") -> list[dict]:
    """A search whose trial ``n`` logs ``val_score = scores[n][epoch - 1]`` after each epoch."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))

    def objective(trial):
        def score(outputs, targets):  # the validation after epoch e runs while state.epoch is e - 1
            return scores[trial.number][min(trainer.state.epoch, epochs - 1)]

        trainer = trainwise.Trainer(nn.Linear(4, 2), lr=1e-3, epochs=epochs, batch_size=32, run_dir=trial.run_dir,
                                    metrics={"score": score}, callbacks=[trial.callback], progress=False,
                                    report=False)
        return trainer.fit((x[:48], y[:48]), (x[48:], y[48:]))

    result = trainwise.tune(objective, space={"unused": {"choice": [0, 1]}}, n_trials=len(scores),
                            metric="val_score", direction="maximize", sampler="random", pruner=pruner,
                            min_resource=min_resource, reduction_factor=3, max_epochs=epochs, study=study,
                            study_dir=tmp_path / study, seed=0, plots=False)
    return result.rows


def test_asha_prunes_at_a_lower_rung_but_never_at_the_last_epoch(tmp_path: Path) -> None:
    # rungs at epochs 1 and 3 (= the last). Trial 1 leads at epoch 1 (promoted) and trails trial 0 at
    # epoch 3: Optuna's pruner says prune there, but the trial has trained all its epochs.
    rows = scripted_search(tmp_path, {0: [0.5, 0.6, 0.9], 1: [0.7, 0.65, 0.6], 2: [0.1, 0.2, 0.3]},
                           pruner="asha", epochs=3)
    assert [(r["state"], r["epochs"], r["pruned_at_epoch"]) for r in rows] == [
        ("complete", 3, None), ("complete", 3, None), ("pruned", 1, 1)]
    summary = json.loads((Path(rows[1]["run_dir"]) / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_run"] == 3 and "pruned_at_epoch" not in summary
    assert rows[1]["value"] is not None


def test_hyperband_keeps_every_trial_that_reaches_the_last_epoch(tmp_path: Path) -> None:
    # 2 brackets for epochs 1..3 (rungs {1, 3} and {3}); every trial trails all earlier ones at every
    # epoch, so each bracket would prune every later trial at each of its rungs, the last epoch included.
    scores = {n: [0.9 - 0.1 * n, 0.91 - 0.1 * n, 0.92 - 0.1 * n] for n in range(8)}
    rows = scripted_search(tmp_path, scores, pruner="hyperband", epochs=3)
    pruned = [r for r in rows if r["state"] == "pruned"]
    finished = [r for r in rows if r["epochs"] == 3]
    assert pruned and all(r["epochs"] == r["pruned_at_epoch"] == 1 for r in pruned)
    # more trials reach epoch 3 than the two brackets' leaders: the last bracket prunes nothing
    assert len(finished) >= 3 and all(r["state"] == "complete" for r in finished)
    assert len(pruned) + len(finished) == 8


def test_a_run_ended_by_max_steps_is_not_pruned_at_its_end(tmp_path: Path) -> None:
    from trainwise.engine.state import RunState
    from trainwise.tune.trial import last_epoch

    assert last_epoch(RunState(epoch=3, max_epochs=3)) and not last_epoch(RunState(epoch=2, max_epochs=3))
    assert last_epoch(RunState(epoch=1, max_epochs=9, step=10, max_steps=10))
    assert not last_epoch(RunState(epoch=1, max_epochs=9, step=5, max_steps=10))


def test_the_median_pruner_lets_every_trial_train_min_resource_epochs(tmp_path: Path) -> None:
    # min_resource 3: trial 3 trails the median of trials 0-2 from its first epoch, and may be pruned
    # after its third epoch at the earliest (the halving pruners' first rung is at epoch 3 too).
    scores = {0: [0.5, 0.6, 0.7, 0.8], 1: [0.5, 0.6, 0.7, 0.8], 2: [0.5, 0.6, 0.7, 0.8], 3: [0.1, 0.1, 0.1, 0.1]}
    rows = scripted_search(tmp_path, scores, pruner="median", epochs=4, min_resource=3)
    assert [(r["state"], r["epochs"]) for r in rows] == [("complete", 4)] * 3 + [("pruned", 3)]


def test_tpe_under_hyperband_models_every_trial_of_the_study_not_only_its_bracket(monkeypatch) -> None:
    """What benchmarks/README.md's search-efficiency section rests on: with trainwise's sampler and
    pruner (Optuna 5.x), TPE's start-up is the study's first 10 trials and its model reads every finished
    trial, whichever HyperBand bracket it ran in. (Round 4 had read Optuna's bracket filter as hiding the
    other brackets from TPE; it filters only what the pruner compares.) Fails if an Optuna release
    narrows TPE to one bracket."""
    import optuna

    from trainwise.tune.settings import TuneSettings, make_pruner, make_sampler

    seen: list[tuple[int, int, set[int]]] = []
    sample = optuna.samplers.TPESampler._sample

    def spy(self, study, trial, search_space):
        finished = study._get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                             optuna.trial.TrialState.PRUNED), use_cache=True)
        pruner = study.pruner
        brackets = {pruner._get_bracket_id(study, t) for t in finished}
        seen.append((trial.number, len(finished), brackets))
        return sample(self, study, trial, search_space)

    monkeypatch.setattr(optuna.samplers.TPESampler, "_sample", spy)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = TuneSettings(sampler="tpe", pruner="hyperband", min_resource=1, reduction_factor=3)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(settings, seed=0),
                                pruner=make_pruner(settings, max_epochs=27))

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        for epoch in range(1, 28):
            trial.report(x * epoch / 27, epoch)
            if epoch < 27 and trial.should_prune():
                raise optuna.TrialPruned()
        return x

    study.optimize(objective, n_trials=30)
    assert [number for number, _, _ in seen] == list(range(10, 30))  # start-up: the study's first 10 trials
    assert all(count == number for number, count, _ in seen)  # every finished trial, not one bracket's
    assert len(seen[-1][2]) >= 3  # trials of several brackets are in the model
