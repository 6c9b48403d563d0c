"""The trainer's checkpoint folder and the comparison of a resumed run's config with the saved one."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Optional

from trainwise import checkpoint as ckpt
from trainwise.errors import CheckpointError, ResumeMismatchError

log = logging.getLogger(__name__)

# Config keys a resume may change when the user says so (--resume-changed): they alter how long
# or how fast training goes on, not what is trained or on which data.
CHANGEABLE_ON_RESUME = ("optimizer.lr", "train.epochs", "train.max_steps")


class Checkpointer:
    """Writes step-numbered checkpoints into one folder, keeps ``last.pt``/``best.pt`` pointing at
    the right ones and applies retention.

    Args:
        folder: the run's ``checkpoints/`` folder.
        keep_last: how many step-numbered checkpoints to keep (best.pt and last.pt always stay).
    """

    def __init__(self, folder: Path, keep_last: int = 3) -> None:
        self.folder = Path(folder)
        self.keep_last = keep_last
        self.latest: Optional[Path] = None
        self.protect: set[Path] = set()

    def save(self, state: dict[str, Any], *, step: int, epoch: int, best: bool = False) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / ckpt.step_checkpoint_name(step)
        ckpt.save_checkpoint(state, path, step=step, epoch=epoch)
        ckpt.link_checkpoint(path, "last.pt")
        if best:
            ckpt.link_checkpoint(path, "best.pt")
        self.latest = path
        ckpt.apply_retention(self.folder, self.keep_last, protect=self.protect | {path})
        return path

    def adopt(self, resumed_from: Path) -> None:
        """After a resume: the checkpoint resumed from is the latest, and ``last.pt`` names it
        (a kill while ``last.pt`` was being replaced leaves it unrecorded until the next save,
        and a resumed run that has nothing left to train makes no next save)."""
        self.latest = resumed_from
        if resumed_from.name != "last.pt" and resumed_from.parent.resolve() == self.folder.resolve():
            ckpt.link_checkpoint(resumed_from, "last.pt")

    def resolve_resume(self, resume: str | Path) -> Optional[Path]:
        """``auto``: the newest checkpoint that verifies (saying which newer ones were skipped), or
        None when the run has saved none yet (killed before its first save: it starts over, so one
        command line serves every restart); otherwise the path given."""
        if str(resume) != "auto":
            path = Path(resume)
            if not path.is_file():
                raise CheckpointError(f"checkpoint to resume from not found: {path}")
            self._protect(path)
            return path
        path, skipped = ckpt.find_resumable(self.folder)
        for bad, reason in skipped:
            log.warning("skipping checkpoint %s: %s", bad, reason)
        if path is None and not skipped:
            log.warning("--resume auto: no checkpoint in %s yet; starting the run from the beginning", self.folder)
            return None
        if path is None:
            raise CheckpointError(
                f"--resume auto found no valid checkpoint in {self.folder}: every one failed verification "
                "(see above); start a new run with another --run-dir"
            )
        if skipped:
            log.warning("resuming from %s, the newest checkpoint that verifies", path)
        self._protect(Path(path))
        return Path(path)

    def _protect(self, path: Path) -> None:
        """Keep ``path`` from retention, and the step-numbered file it is a hard link of: a resumed-from
        ``last.pt`` is replaced by the next save, and its bytes must survive as that step file."""
        self.protect.add(path.resolve())
        for step_file in path.parent.glob("step-*.pt"):
            if step_file.name != path.name and os.path.samefile(step_file, path):
                self.protect.add(step_file.resolve())


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(saved: dict[str, Any], current: dict[str, Any],
                       ignore: Iterable[str] = ()) -> list[str]:
    """``key: saved -> current`` for every key that differs."""
    old, new = flatten(saved), flatten(current)
    skip = set(ignore)
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
            if key not in skip and old.get(key) != new.get(key)]


def check_resume_config(saved: Optional[dict[str, Any]], current: Optional[dict[str, Any]],
                        allow_changes: bool) -> list[str]:
    """Refuse a resume whose config differs from the checkpoint's; with ``allow_changes`` the keys
    in ``CHANGEABLE_ON_RESUME`` may differ. Returns the allowed differences."""
    if saved is None or current is None:
        return []
    ignore = ("name",)
    differences = config_differences(saved, current, ignore=ignore)
    if not differences:
        return []
    changeable = [d for d in differences if d.split(":")[0] in CHANGEABLE_ON_RESUME]
    refused = [d for d in differences if d not in changeable] if allow_changes else differences
    if refused:
        hint = ("only " + ", ".join(CHANGEABLE_ON_RESUME) + " may change on resume" if allow_changes else
                "resume with the config the run started with, or pass --resume-changed to change "
                + ", ".join(CHANGEABLE_ON_RESUME))
        raise ResumeMismatchError("the config differs from the checkpoint's: " + "; ".join(refused) + f"; {hint}")
    return changeable
