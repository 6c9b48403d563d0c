"""The report's "Doctor" section: the checks of the run folder's doctor.json (pre-flight and
diagnosis), worst first. No section when the run has no doctor.json."""

from __future__ import annotations

import html
import json
from pathlib import Path

_ORDER = {"FAIL": 0, "WARN": 1, "PASS": 2, "SKIP": 3}
_COLORS = {"FAIL": "#b00020", "WARN": "#a86b00", "PASS": "#1b7f3b", "SKIP": "#57606a"}


def doctor_section(folder: Path) -> str:
    """HTML for ``folder/doctor.json``, or "" when there is none (or it cannot be read)."""
    path = Path(folder) / "doctor.json"
    if not path.is_file():
        return ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        checks = sorted(data["checks"], key=lambda c: _ORDER.get(c.get("status"), 4))
        verdict = str(data["verdict"])
    except (OSError, ValueError, KeyError, TypeError):
        return ('<section>\n<h2>Doctor</h2>\n<p class="muted">doctor.json could not be read; run '
                "<code>trainwise doctor RUN_DIR</code> again.</p>\n</section>")
    rows = "\n".join(
        f'<tr><td style="color:{_COLORS.get(c.get("status"), "inherit")};font-weight:600">'
        f'{html.escape(str(c.get("status")))}</td><td><code>{html.escape(str(c.get("id")))}</code></td>'
        f'<td>{html.escape(str(c.get("message", "")))}'
        + (f'<br><b>fix:</b> {html.escape(str(c["fix"]))}' if c.get("fix") else "") + "</td></tr>"
        for c in checks)
    counts = {s: sum(c.get("status") == s for c in checks) for s in _ORDER}
    skipped = f", {counts['SKIP']} skipped" if counts["SKIP"] else ""
    samples = data.get("artifacts", {}).get("samples_per_class") if isinstance(data.get("artifacts"), dict) else None
    image = (f'<p><a href="{html.escape(samples)}">training samples per class</a></p>'
             if samples and (Path(folder) / samples).is_file() else "")
    return (f'<section>\n<h2>Doctor</h2>\n<p>verdict <b style="color:{_COLORS.get(verdict, "inherit")}">'
            f'{html.escape(verdict)}</b> — {counts["PASS"]} pass, {counts["WARN"]} warn, {counts["FAIL"]} fail{skipped} '
            f'(<code>trainwise doctor</code>; thresholds and their sources in each message)</p>\n{image}'
            f'<table>\n<tr><th>status</th><th>check</th><th>finding</th></tr>\n{rows}\n</table>\n</section>')
