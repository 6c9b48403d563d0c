"""The transformer studies: warmup (± warmup at the config's lr and 10x) and norm-position (pre- vs
post-norm GPT), planned and run on a tiny GPT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainwise.errors import ConfigError
from trainwise.studies import Budget, StudyRequest, get_study, run_study
from trainwise.studies.plan import make_plan

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "examples" / "digits.yaml")


@pytest.fixture()
def gpt_config(tmp_path: Path, monkeypatch) -> str:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the token file goes there
    (tmp_path / "corpus.txt").write_text("a stitch in time saves nine. " * 60)
    (tmp_path / "gpt.yaml").write_text(
        "name: tiny-gpt\ndata: {dataset: text, path: corpus.txt, block_size: 16, batch_size: 8}\n"
        "model: {name: gpt, layers: 1, heads: 2, width: 16}\noptimizer: {lr: 0.003}\n")
    return str(tmp_path / "gpt.yaml")


def test_warmup_plan_keeps_the_schedule_and_varies_warmup_and_lr(gpt_config, tmp_path):
    plan = make_plan(get_study("warmup"), gpt_config, [], Budget(seeds=1, epochs=1), tmp_path / "s", {})
    configs = {j["variant"]: j["config"] for j in plan["jobs"]}
    assert list(configs) == ["no-warmup-lr", "warmup-lr", "no-warmup-high-lr", "warmup-high-lr"]
    assert {v: (c["schedule"]["name"], c["schedule"]["warmup"], c["optimizer"]["lr"]) for v, c in configs.items()} == {
        "no-warmup-lr": ("cosine", 0, 0.003), "warmup-lr": ("cosine", 0.1, 0.003),
        "no-warmup-high-lr": ("cosine", 0, 0.03), "warmup-high-lr": ("cosine", 0.1, 0.03)}
    with pytest.raises(ConfigError, match="study warmup compares the config's lr with ten times it"):
        make_plan(get_study("warmup"), gpt_config, ["optimizer.lr=auto"], Budget(seeds=1), tmp_path / "t", {})


def test_norm_position_needs_a_gpt(tmp_path):
    with pytest.raises(ConfigError, match="study norm-position .* needs model.name=gpt, got 'mlp'"):
        make_plan(get_study("norm-position"), DIGITS, [], Budget(seeds=1), tmp_path, {})


def test_norm_position_study_runs_on_a_tiny_gpt(gpt_config, tmp_path):
    out = tmp_path / "study"
    results = run_study(StudyRequest(get_study("norm-position"), gpt_config, [], Budget(seeds=2, epochs=1, steps=3),
                                     out, workers=1))
    assert [v["name"] for v in results["variants"]] == ["pre-norm-no-warmup", "post-norm-no-warmup",
                                                          "pre-norm-warmup", "post-norm-warmup"]
    assert all(v["statuses"] == ["completed", "completed"] for v in results["variants"])
    config = (out / "post-norm-warmup-seed1" / "config.yaml").read_text()
    assert "norm_position: post" in config and "warmup: 0.1" in config
    summary = json.loads((out / "pre-norm-no-warmup-seed0" / "summary.json").read_text())
    assert summary["steps"] == 3
    assert (out / "study.md").is_file() and (out / "report.html").is_file()
