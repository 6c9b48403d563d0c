"""Studies: the guides' exercises as controlled experiments on a user's own config.

A study trains each variant of one factor (init scheme, schedule, norm × batch size, batch size ×
lr scaling, optimizer, dropout) once per seed with the same budget, data split and seeds, as
ordinary run folders under ``runs/studies/<study>-<config name>/<variant>-seed<k>/``; then it
measures, says which differences hold across seeds (``verdict``) and writes ``study.md``,
``study.json``, PNGs and ``report.html``. ``lr_surface`` draws gradient descent on a 2-D loss
surface and needs no data.

Example:
    >>> from trainwise.studies import Budget, StudyRequest, get_study, run_study
    >>> results = run_study(StudyRequest(get_study("init"), "examples/digits.yaml", [],
    ...                                  Budget(seeds=3, epochs=3), Path("runs/studies/init")))
    >>> results["verdict"]
"""

from __future__ import annotations

from trainwise.studies.base import Budget, Study, Variant
from trainwise.studies.catalog import STUDIES, get_study
from trainwise.studies.runner import StudyRequest, run_study
from trainwise.studies.verdict import paired_comparison

__all__ = ["STUDIES", "Budget", "Study", "StudyRequest", "Variant", "get_study", "paired_comparison", "run_study"]
