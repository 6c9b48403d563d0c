"""``trainwise study NAME CONFIG``: run one of the guides' exercises as a controlled study
(``trainwise study lr-surface`` needs no config)."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from trainwise.checks import check_choice
from trainwise.config.schema import load_config
from trainwise.errors import ConfigError

log = logging.getLogger("trainwise")


def study(args: argparse.Namespace) -> int:
    from trainwise.studies import STUDIES, Budget, StudyRequest, get_study, run_study

    name = check_choice("study", args.study, [*STUDIES, "lr-surface"])
    if name == "lr-surface":
        return _lr_surface(args)
    if args.config is None:
        raise ConfigError(f"study {name} needs a config: trainwise study {name} examples/digits.yaml")
    definition = get_study(name)
    budget = _budget(definition.budget, args, Budget)
    cfg_name = load_config(args.config, args.overrides).name
    out = Path(args.out) if args.out else Path("runs") / "studies" / f"{name}-{cfg_name}"
    results = run_study(StudyRequest(definition, args.config, list(args.overrides), budget, out,
                                     workers=args.workers, resume=args.resume, target=args.target))
    _print(results, out)
    return 0


def _budget(default, args: argparse.Namespace, budget_type):  # type: ignore[no-untyped-def]
    budget = default
    for key in ("seeds", "epochs", "steps"):
        value = getattr(args, key)
        if value is not None:
            if value < 1:
                raise ConfigError(f"--{key} must be >= 1, got {value}")
            budget = replace(budget, **{key: value})
    if args.train_samples is not None:
        text = str(args.train_samples)
        if text == "all":
            budget = replace(budget, train_samples=None)
        elif text.isdigit() and int(text) > 0:
            budget = replace(budget, train_samples=int(text))
        else:
            raise ConfigError(f"--train-samples must be a positive count or 'all', got {text!r}")
    return budget


def _print(results: dict, out: Path) -> None:
    from trainwise.studies.output import summary_lines, table_rows

    if results.get("budget_rule"):
        print(f"budget: {results['budget_rule']}")
    for row in table_rows(results):
        print(f"  {row[0]:<22} final {results['metric']} {row[1]:<18} 95% CI {row[2]:<20} test {row[4]:<18} "
              f"steps to target {row[5]}; failed {row[7]}")
    for line in summary_lines(results) + [f"  {s}" for s in results["verdict"] if s.endswith(": real")]:
        print(line)
    print(f"study folder: {out}  (study.md, study.json, report.html)")


def _lr_surface(args: argparse.Namespace) -> int:
    from trainwise.studies.lr_surface import draw_lr_surface

    out = Path(args.out) if args.out else Path("runs") / "studies" / "lr-surface"
    result = draw_lr_surface(out)
    for path in result["files"]:
        print(path)
    for run in result["runs"]:
        print(f"  {run['label']:<28} final loss {run['final_loss']:.3g}")
    return 0
