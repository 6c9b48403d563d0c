"""Studies that tell the truth: lr='auto' settled on the base config, diverged runs counted as
failures with their epoch, Holm's correction across a study's comparisons, a 95% interval and the
test figure per variant, equal updates across batch sizes, and the "real" verdict end to end on 3
seeds. Tiny digits runs (a 16-unit MLP on 320 samples, one epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainwise.errors import ConfigError
from trainwise.studies import Budget, StudyRequest, get_study, run_study
from trainwise.studies import plan as plan_module
from trainwise.studies.plan import make_plan
from trainwise.studies.plots import samples_axis
from trainwise.studies.verdict import holm, judge

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "examples" / "digits.yaml")
TINY = ["model.hidden=[16]", "model.dropout=0.1", "optimizer.lr=0.003", "schedule.name=constant"]


def test_holm_adjusts_each_p_by_the_comparisons_left_and_keeps_the_order() -> None:
    assert holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    assert holm([0.001, None, 0.5, 0.02]) == [0.003, None, 0.5, 0.04]


def test_a_difference_real_alone_is_within_noise_among_many_comparisons() -> None:
    def variant(name, finals):
        return {"name": name, "label": name, "finals": dict(enumerate(finals)),
                "final": {"mean": sum(finals) / len(finals)}}

    # a vs b alone: p ~ 0.03, real; among five such comparisons Holm multiplies the smallest p by 5
    best = variant("a", [0.90, 0.92, 0.91, 0.93])
    others = [variant(name, [0.88, 0.89, 0.90, 0.89]) for name in ("b", "c", "d", "e", "f")]
    alone = judge([best, others[0]], {"all": ["a", "b"]}, mode="max")
    together = judge([best, *others], {"all": ["a", "b", "c", "d", "e", "f"]}, mode="max")
    assert alone[0]["verdict"] == "real" and alone[0]["p_holm"] == pytest.approx(alone[0]["p"]) and alone[0]["p"] < 0.05
    assert len(together) == 5
    for c in together:
        assert c["verdict"] == "within noise" and c["p_holm"] == pytest.approx(5 * c["p"]) and "Holm" in c["why"]


def test_lr_auto_runs_once_on_the_base_config_and_per_optimizer_on_its_own(tmp_path, monkeypatch) -> None:
    seen = []

    def fake_range_test(cfg, bundle, folder):
        seen.append((cfg.data.batch_size, cfg.optimizer.name, cfg.optimizer.lr_scaling, folder.name))
        return 0.01

    monkeypatch.setattr(plan_module, "_range_test", fake_range_test)
    plan = make_plan(get_study("batch-size"), DIGITS, [*TINY, "optimizer.lr=auto"], Budget(seeds=1, epochs=1),
                     tmp_path / "bs", {})
    assert seen == [(64, "adamw", "none", "lr-find")]  # the config's batch 64, not the first variant's 16
    assert set(plan["lrs"].values()) == {0.01} and len(plan["lrs"]) == 7
    seen.clear()
    make_plan(get_study("optimizers"), DIGITS, [*TINY, "optimizer.lr=auto"], Budget(seeds=1, epochs=1),
              tmp_path / "opt", {})
    assert seen == [(64, name, "none", name) for name in ("sgd", "adam", "adamw", "rmsprop", "adagrad")]


def test_variants_that_cannot_differ_on_the_config_are_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"study batch-size: two variants named 'bs1' give the same run|"
                                          r"study batch-size: variants .* give the same run on"):
        make_plan(get_study("batch-size"), DIGITS, [*TINY, "data.batch_size=1"], Budget(seeds=1, epochs=1),
                  tmp_path, {})


def test_normalization_gives_every_batch_size_the_same_updates_and_says_so(tmp_path) -> None:
    plan = make_plan(get_study("normalization"), DIGITS, TINY, Budget(seeds=1, epochs=2, train_samples=160),
                     tmp_path, {})
    assert plan["budget"]["steps"] == 2 * 3  # 2 epochs of 160 samples at the config's batch 64
    assert {j["config"]["train"]["max_steps"] for j in plan["jobs"]} == {6}
    assert plan["budget_rule"].startswith("equal updates: every run takes 2 epoch(s) of 160 samples")


def test_a_study_counts_runs_that_diverge_in_their_first_epoch(tmp_path) -> None:
    out = tmp_path / "diverge"
    results = run_study(StudyRequest(
        get_study("dropout"), DIGITS, [*TINY, "optimizer.name=sgd", "optimizer.lr=1e6", "train.grad_clip=null",
                                       "train.on_nonfinite=stop"],
        Budget(seeds=1, epochs=2, train_samples=320), out, workers=1))
    assert results["failures"] == 5
    for v in results["variants"]:
        assert v["statuses"] == ["diverged"] and v["failures"][0]["epoch"] == 1 and v["failures"][0]["seed"] == 0
        assert v["final"]["mean"] == 0.0  # scored as the worst outcome, not dropped
    md = (out / "study.md").read_text()
    assert "diverged at epoch 1 (seed 0)" in md and "5 of 5 runs diverged or failed" in md


@pytest.fixture(scope="module")
def optimizers_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("honest") / "optimizers"
    results = run_study(StudyRequest(get_study("optimizers"), DIGITS, [*TINY, "data.batch_size=16"],
                                     Budget(seeds=3, epochs=4, train_samples=320), out, workers=1))
    return out, results


def test_the_real_verdict_end_to_end_on_three_seeds(optimizers_study) -> None:
    """SGD at Adam's lr (3e-3) barely moves in 80 steps; the Adam family does: a real difference
    at every seed, called real after Holm's correction across the study's 4 comparisons."""
    out, results = optimizers_study
    comparisons = {c["other"]: c for c in results["comparisons"]}
    assert len(comparisons) == 4 and all(c["p_holm"] >= c["p"] for c in comparisons.values())
    sgd = comparisons["sgd"]
    assert sgd["verdict"] == "real" and sgd["n"] == 3 and sgd["ci"][0] > 0 and sgd["p_holm"] < 0.05
    assert any(line.startswith(f"{sgd['better']} beats sgd by") and line.endswith(": real")
               for line in results["verdict"])


def test_each_variant_has_a_95_interval_and_its_test_figure_in_study_md(optimizers_study) -> None:
    out, results = optimizers_study
    saved = json.loads((out / "study.json").read_text())
    for v in saved["variants"]:
        low, high = v["final"]["ci"]
        assert low <= v["final"]["mean"] <= high and v["test"]["n"] == 3 and 0 < v["test"]["mean"] <= 1
    md = (out / "study.md").read_text()
    assert "| 95% CI of the mean |" in md and "| test accuracy |" in md and "Holm" in md
    adam = next(v for v in saved["variants"] if v["name"] == "adam")
    assert f"{adam['test']['mean']:.4f} ± {adam['test']['std']:.4f}" in md
    assert not samples_axis(saved)  # one batch size: curves against steps


def test_curves_are_drawn_against_samples_when_batch_sizes_differ() -> None:
    assert samples_axis({"variants": [{"batch_size": 16}, {"batch_size": 256}]})
    assert not samples_axis({"variants": [{"batch_size": None}, {"batch_size": None}]})


def test_the_table_says_which_way_a_target_is_reached_and_shows_no_spread_for_one_seed() -> None:
    from trainwise.studies.output import _header, _pm

    assert "steps to val_loss ≤ target" in _header({"mode": "min", "metric": "val_loss"})
    assert "steps to val_accuracy ≥ target" in _header({"mode": "max", "metric": "val_accuracy"})
    assert _pm({"mean": 0.824, "std": 0.0, "n": 1}) == "0.8240 (one seed)"
    assert _pm({"mean": 0.824, "std": 0.01, "n": 3}) == "0.8240 ± 0.0100"
