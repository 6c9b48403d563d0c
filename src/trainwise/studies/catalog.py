"""Every study by name (``trainwise study <name>``); ``lr-surface`` needs no config and lives apart."""

from __future__ import annotations

from trainwise.studies import (batch_size_study, dropout_study, init_study, norm_position_study, normalization_study,
                               optimizers_study, schedules_study, warmup_study)
from trainwise.checks import check_choice
from trainwise.studies.base import Study

STUDIES: dict[str, Study] = {module.STUDY.name: module.STUDY for module in (
    init_study, schedules_study, normalization_study, batch_size_study, optimizers_study, dropout_study,
    warmup_study, norm_position_study)}


def get_study(name: str) -> Study:
    """The study called ``name``; an unknown name gets a did-you-mean."""
    return STUDIES[check_choice("study", name, STUDIES)]
