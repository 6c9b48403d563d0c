"""What the doctor hands back: one ``Check`` per check id, gathered in a ``DoctorReport``.

``doctor.json`` (in a run folder, or where ``--out`` says) is ``DoctorReport.to_json()``:
``{"verdict": "PASS"|"WARN"|"FAIL", "checks": [{"id", "status", "value", "threshold", "message",
"fix"}]}``. The verdict is the worst status of the checks. A check that could not judge anything
(the figures it reads do not exist, or a FAIL elsewhere makes its reading meaningless) is ``SKIP``,
its message saying why; a SKIP does not change the verdict.

Example:
    >>> report = DoctorReport([Check("data.nonfinite", "PASS", 0, 0, "no NaN or Inf in the inputs")])
    >>> report.verdict, report.failed()
    ('PASS', [])
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

STATUSES = ("SKIP", "PASS", "WARN", "FAIL")
_RANK = {status: rank for rank, status in enumerate(STATUSES)}


@dataclass
class Check:
    """One check's outcome.

    Attributes:
        id: the stable check id (``data.imbalance``, ``train.overfit_batch``, ``run.overfit`` ...).
        status: ``PASS``, ``WARN``, ``FAIL``, or ``SKIP`` when the check could not judge (the message
            says why).
        value: what was measured (a number, or a small dict/list of numbers).
        threshold: the limit it was held against (where the limit comes from is in the message).
        message: what was found, with the threshold and its source.
        fix: what to do about a WARN or FAIL ("" for a PASS).
    """

    id: str
    status: str
    value: Any
    threshold: Any
    message: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "value": _plain(self.value),
                "threshold": _plain(self.threshold), "message": self.message, "fix": self.fix}


@dataclass
class DoctorReport:
    """The doctor's checks and their verdict (the worst status among them; SKIPs count as PASS)."""

    checks: list[Check] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)  # e.g. the samples-per-class PNG

    @property
    def verdict(self) -> str:
        return max((c.status for c in self.checks if c.status != "SKIP"), key=_RANK.__getitem__, default="PASS")

    def failed(self) -> list[Check]:
        """The checks with status FAIL."""
        return [c for c in self.checks if c.status == "FAIL"]

    def warned(self) -> list[Check]:
        return [c for c in self.checks if c.status == "WARN"]

    def skipped(self) -> list[Check]:
        """The checks that could not judge (status SKIP)."""
        return [c for c in self.checks if c.status == "SKIP"]

    def get(self, check_id: str) -> Optional[Check]:
        """The check with this id, or None when it did not run."""
        return next((c for c in self.checks if c.id == check_id), None)

    def add(self, checks: Iterable[Check]) -> None:
        self.checks.extend(checks)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"verdict": self.verdict, "checks": [c.to_json() for c in self.checks]}
        if self.artifacts:
            data["artifacts"] = dict(self.artifacts)
        return data

    def write(self, path: str | Path) -> Path:
        """Write ``to_json()`` to ``path`` (a temporary file renamed into place)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DoctorReport":
        checks = [Check(c["id"], c["status"], c.get("value"), c.get("threshold"), c.get("message", ""),
                        c.get("fix", "")) for c in data.get("checks", [])]
        return cls(checks, dict(data.get("artifacts", {})))

    def merged_with(self, newer: "DoctorReport") -> "DoctorReport":
        """This report with ``newer``'s checks replacing those of the same id (a diagnosis added to a
        pre-flight report keeps the pre-flight checks)."""
        ids = {c.id for c in newer.checks}
        return DoctorReport([c for c in self.checks if c.id not in ids] + newer.checks,
                            {**self.artifacts, **newer.artifacts})


def _plain(value: Any) -> Any:
    """JSON-safe: floats rounded to 6 significant digits, NaN/Inf as strings, tuples as lists."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return _plain(value.item())
    return str(value)


def check(id: str, ok: bool, value: Any, threshold: Any, message: str, fix: str, *, bad: str = "WARN") -> Check:
    """A PASS when ``ok``, else ``bad`` with the fix."""
    return Check(id, "PASS" if ok else bad, value, threshold, message, "" if ok else fix)
