"""Studies on tiny budgets: each study's variant set, identical budgets/seeds/splits, the runs it
trains (real run folders), what it writes, and the verdict's noise rule on constructed results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from trainwise.config.schema import load_config
from trainwise.errors import ConfigError
from trainwise.studies import STUDIES, Budget, StudyRequest, get_study, paired_comparison, run_study
from trainwise.studies.output import report_html
from trainwise.studies.plan import make_plan
from trainwise.studies.verdict import judge

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "examples" / "digits.yaml")
TINY = ["model.hidden=[16]", "model.dropout=0.1", "optimizer.lr=0.003"]

EXPECTED_VARIANTS = {
    "init": ["uniform", "normal", "xavier", "he", "lecun", "orthogonal", "lsuv"],
    "schedules": [f"{n}{w}" for n in ("constant", "step", "exponential", "cosine", "onecycle", "sgdr")
                  for w in ("", "+warmup")],
    "normalization": [f"{n}-bs{b}" for n in ("none", "batch", "layer") for b in (8, 32, 128, 512)],
    "batch-size": ["bs16-none", "bs16-linear", "bs16-sqrt", "bs64", "bs256-none", "bs256-linear", "bs256-sqrt"],
    "optimizers": ["sgd", "adam", "adamw", "rmsprop", "adagrad"],
    "dropout": ["p0.0", "p0.1", "p0.3", "p0.5", "p0.7"],
}


def _diff_keys(a: dict, b: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key in set(a) | set(b):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict) and key != "schedule":
            keys |= _diff_keys(x, y, f"{prefix}{key}.")
        elif x != y:
            keys.add(f"{prefix}{key}")
    return keys


@pytest.mark.parametrize("name", sorted(EXPECTED_VARIANTS))
def test_plan_variants_differ_only_in_the_factor_with_identical_budget_and_seeds(name: str, tmp_path: Path) -> None:
    study = get_study(name)
    plan = make_plan(study, DIGITS, TINY, Budget(seeds=2, epochs=3), tmp_path, {})
    assert [v["name"] for v in plan["variants"]] == EXPECTED_VARIANTS[name]
    jobs = plan["jobs"]
    assert len(jobs) == 2 * len(EXPECTED_VARIANTS[name])
    assert {j["run_dir"] for j in jobs} == {f"{v}-seed{k}" for v in EXPECTED_VARIANTS[name] for k in (0, 1)}
    for job in jobs:
        train = job["config"]["train"]
        if study.equal_updates:  # 3 epochs of digits' train split at the config's batch 64, for every batch size
            assert (train["max_steps"], train["early_stopping"]["enabled"]) == (plan["budget"]["steps"], False)
            continue
        assert (train["epochs"], train["max_steps"], train["early_stopping"]["enabled"]) == (3, None, False)
        assert job["config"]["seed"] == job["seed_index"]
    allowed = {f.split(".")[0] if f == "schedule" else f for f in study.factor} | {"name", "optimizer.base_batch_size"}
    for k in (0, 1):
        at_seed = [j["config"] for j in jobs if j["seed_index"] == k]
        for config in at_seed[1:]:
            assert _diff_keys(at_seed[0], config) <= allowed
    assert plan["data_seed"] == 0


def test_every_study_is_in_the_catalog() -> None:
    assert sorted(STUDIES) == sorted([*EXPECTED_VARIANTS, "warmup", "norm-position"])  # those two: test_studies_transformer.py
    with pytest.raises(ConfigError, match="unknown study 'inti'; did you mean 'init'"):
        get_study("inti")


def test_normalization_refuses_a_model_without_norm_layers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model.name='gru'; models that take model.norm: mlp \(none, batch, "
                                          r"layer\); cnn \(none, batch, layer, group\)"):
        make_plan(get_study("normalization"), DIGITS, ["model.name=gru"], Budget(seeds=1, epochs=1), tmp_path, {})


def test_schedule_durations_follow_a_steps_budget(tmp_path: Path) -> None:
    plan = make_plan(get_study("schedules"), DIGITS, TINY, Budget(seeds=1, epochs=5, steps=30), tmp_path, {})
    step = next(j for j in plan["jobs"] if j["variant"] == "step")["config"]
    assert step["schedule"] == {"name": "step", "step_size": 10, "gamma": 0.1, "unit": "step", "warmup": 0}
    assert step["train"]["max_steps"] == 30


# ---------------------------------------------------------------------------------------- the verdict
def test_equal_means_are_within_noise() -> None:
    result = paired_comparison([0.90, 0.80, 0.85, 0.88], [0.80, 0.90, 0.85, 0.88], mode="max")
    assert result["mean_diff"] == pytest.approx(0.0)
    assert result["verdict"] == "within noise"
    assert result["ci"][0] < 0 < result["ci"][1]


def test_a_difference_that_holds_across_seeds_is_real() -> None:
    a = [0.95, 0.96, 0.94, 0.95, 0.97]
    b = [0.80, 0.82, 0.79, 0.81, 0.80]
    result = paired_comparison(a, b, mode="max")
    assert result["verdict"] == "real"
    assert result["ci"][0] > 0.1 and result["p"] < 0.001
    # lower is better for a loss: the same numbers say b is better
    assert paired_comparison(a, b, mode="min")["mean_diff"] == pytest.approx(-0.15)


@pytest.mark.parametrize("a, b, why", [
    ([0.9], [0.8], "one seed"),
    ([0.95, 0.951], [0.80, 0.801], "two seeds that agree: too few to tell"),
    ([0.91, 0.91, 0.91], [0.90, 0.90, 0.90], "the same tiny difference at 3 seeds: sign test p = 0.25"),
    ([0.9815, 0.9815, 0.9815], [0.9676, 0.9676, 0.9676], "the same difference up to float rounding"),
    ([0.9, 0.7, 0.95], [0.8, 0.8, 0.8], "a large mean difference that one seed contradicts"),
])
def test_what_one_seed_or_few_agreeing_seeds_cannot_show(a, b, why) -> None:
    assert paired_comparison(a, b, mode="max")["verdict"] == "within noise", why


def test_judge_compares_each_variant_with_the_best_of_its_group() -> None:
    def variant(name, finals):
        return {"name": name, "label": name, "finals": dict(enumerate(finals)),
                "final": {"mean": sum(finals) / len(finals)}}

    variants = [variant("a", [0.9, 0.91, 0.92, 0.9]), variant("b", [0.5, 0.52, 0.49, 0.5]),
                variant("c", [0.91, 0.9, 0.9, 0.92])]
    comparisons = judge(variants, {"all": ["a", "b", "c"]}, mode="max")
    assert [(c["better"], c["other"], c["verdict"]) for c in comparisons] == [
        ("a", "b", "real"), ("a", "c", "within noise")]


# ---------------------------------------------------------------------------------------- whole studies
@pytest.fixture(scope="module")
def init_study(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("study") / "init"
    results = run_study(StudyRequest(get_study("init"), DIGITS, [*TINY, "model.hidden=[16,16]"],
                                     Budget(seeds=2, epochs=2, train_samples=256), out, workers=1))
    return out, results


def test_init_study_writes_run_folders_and_its_own_files(init_study) -> None:
    out, results = init_study
    for variant in EXPECTED_VARIANTS["init"]:
        for k in (0, 1):
            summary = json.loads((out / f"{variant}-seed{k}" / "summary.json").read_text())
            assert (summary["status"], summary["epochs_run"]) == ("completed", 2)
            measured = json.loads((out / f"{variant}-seed{k}" / "study_measurements.json").read_text())
            assert list(measured["grad_norms_init"]) == ["layers.1", "layers.4", "layers.7"]
            assert measured["activations_init"] and measured["grad_norms"][0]["step"] == 0
    for name in ("study.md", "study.json", "report.html", "curves.png", "grad_norms.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "study.json").read_text())
    assert saved["metric"] == "val_accuracy" and len(saved["variants"]) == 7
    assert [v["final"]["n"] for v in saved["variants"]] == [2] * 7
    md = (out / "study.md").read_text()
    assert "| uniform[-1,1] |" in md and "## Verdict" in md and "bootstrap 95% interval" in md
    assert Image.open(out / "curves.png").size[0] > 500


def test_a_finished_study_is_not_overwritten_and_resume_reruns_nothing(init_study) -> None:
    out, _ = init_study
    with pytest.raises(ConfigError, match="already holds a study; continue it with --resume"):
        run_study(StudyRequest(get_study("init"), DIGITS, [*TINY, "model.hidden=[16,16]"],
                               Budget(seeds=2, epochs=2, train_samples=256), out, workers=1))
    with pytest.raises(ConfigError, match=r"different study .*epochs: 2 then, 3 now"):
        run_study(StudyRequest(get_study("init"), DIGITS, [*TINY, "model.hidden=[16,16]"],
                               Budget(seeds=2, epochs=3, train_samples=256), out, workers=1, resume=True))
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}
    run_study(StudyRequest(get_study("init"), DIGITS, [*TINY, "model.hidden=[16,16]"],
                           Budget(seeds=2, epochs=2, train_samples=256), out, workers=1, resume=True))
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")} == stamps


@pytest.mark.parametrize("name, overrides, files", [
    ("schedules", [], ["lr.png"]),
    ("normalization", ["--train-samples"], ["heatmap.png"]),
    ("batch-size", [], []),
    ("optimizers", ["optimizer.lr=auto", "train.lr_find.num_steps=20"], []),
    ("dropout", [], []),
])
def test_every_study_runs_on_a_tiny_budget(name, overrides, files, tmp_path: Path) -> None:
    budget = Budget(seeds=2, epochs=1, train_samples=160 if "--train-samples" in overrides else 320)
    extra = [o for o in overrides if not o.startswith("--")] + ["schedule.name=constant"]  # 1cycle needs 4+ steps
    results = run_study(StudyRequest(get_study(name), DIGITS, [*TINY, *extra], budget, tmp_path / name, workers=1))
    assert [v["name"] for v in results["variants"]] == EXPECTED_VARIANTS[name]
    assert all(v["statuses"] == ["completed", "completed"] for v in results["variants"])
    for file in ["study.md", "study.json", "report.html", "curves.png", *files]:
        assert (tmp_path / name / file).is_file(), file
    if name == "optimizers":  # each optimizer at its own range test's lr
        assert sorted(results["lrs"]) == sorted(EXPECTED_VARIANTS[name])
        assert (tmp_path / name / "lr-find" / "sgd" / "lr_find.json").is_file()
    if name == "normalization":  # equal updates: 1 epoch of 160 samples at the config's batch 64 = 3 steps each
        steps = {v["name"]: json.loads((tmp_path / name / f"{v['name']}-seed0" / "summary.json").read_text())["steps"]
                 for v in results["variants"]}
        assert set(steps.values()) == {3}
        assert "equal updates" in (tmp_path / name / "study.md").read_text()


def test_report_html_escapes_every_string(init_study, tmp_path: Path) -> None:
    _, results = init_study
    hostile = json.loads(json.dumps(results))
    hostile["variants"][0]["label"] = "<script>alert(1)</script>"
    hostile["question"] = "a < b & c"
    page = report_html(hostile, [])
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &lt; b &amp; c" in page


def test_studies_resolve_paths_from_the_config_file(tmp_path: Path) -> None:
    cfg = load_config(DIGITS, TINY)
    assert cfg.model.hidden == [16]
