"""trainwise doctor: the pre-flight checklist, baselines and the post-run diagnosis.

Example:
    >>> from trainwise import doctor
    >>> report = doctor.check(model, (x, y), (x_val, y_val), loss="cross_entropy", lr=1e-3)
    >>> report.verdict, report.failed(), report.to_json()
    >>> doctor.diagnose("runs/digits-mlp-20260101-120000")
"""

from __future__ import annotations

from trainwise.doctor.diagnosis import diagnose
from trainwise.doctor.preflight import check
from trainwise.doctor.report import Check, DoctorReport
from trainwise.doctor.thresholds import Thresholds

__all__ = ["Check", "DoctorReport", "Thresholds", "check", "diagnose"]
