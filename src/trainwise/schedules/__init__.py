"""Learning-rate schedules as pure functions of the optimizer step.

A schedule answers ``lr_at(step)`` (and ``momentum_at(step)`` when it cycles momentum)
for the 0-based optimizer update ``step``; the trainer calls it once per update, and a
resumed run needs nothing but the step. ``Warmup`` wraps any schedule; reduce-on-plateau
is the one schedule with state, fed through ``observe(metric)``. ``build_schedule`` makes
one from the names a config uses.

Example:
    >>> from trainwise.schedules import build_schedule
    >>> schedule = build_schedule("step", lr=0.1, total_steps=900, steps_per_epoch=30,
    ...                           step_size=10, unit="epoch", gamma=0.5)
    >>> schedule.lr_at(299), schedule.lr_at(300)
    (0.1, 0.05)
"""

from __future__ import annotations

from trainwise.schedules._base import Schedule
from trainwise.schedules._build import SCHEDULE_NAMES, build_schedule, build_schedule_or_hold, schedule_params
from trainwise.schedules._cyclic import CyclicSchedule, OneCycleSchedule
from trainwise.schedules._decay import (
    ConstantSchedule,
    CosineRestartsSchedule,
    CosineSchedule,
    ExponentialSchedule,
    InverseTimeSchedule,
    MultiStepSchedule,
    PiecewiseSchedule,
    PolynomialSchedule,
    StepSchedule,
)
from trainwise.schedules._plateau import PlateauSchedule
from trainwise.schedules._warmup import Warmup

__all__ = [
    "SCHEDULE_NAMES",
    "ConstantSchedule",
    "CosineRestartsSchedule",
    "CosineSchedule",
    "CyclicSchedule",
    "ExponentialSchedule",
    "InverseTimeSchedule",
    "MultiStepSchedule",
    "OneCycleSchedule",
    "PiecewiseSchedule",
    "PlateauSchedule",
    "PolynomialSchedule",
    "Schedule",
    "StepSchedule",
    "Warmup",
    "build_schedule",
    "build_schedule_or_hold",
    "schedule_params",
]
