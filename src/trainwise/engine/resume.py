"""Checkpoints of a run: the folder (retention, last/best), what a checkpoint holds to continue a
loop exactly, resume, rollback, and the comparison of a resumed run's config with the saved one."""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Optional

from trainwise import checkpoint as ckpt
from trainwise.distributed.ops import gather, world
from trainwise.engine.fitplan import FitObjects
from trainwise.engine.nonfinite import DeviceFiniteness, cpu_copy, scale_torch_scheduler
from trainwise.errors import CheckpointError, ResumeMismatchError
from trainwise.runfolder.files import history_from_rows

log = logging.getLogger(__name__)

# Config keys a resume may change when the user says so (--resume-changed): they alter how long
# or how fast training goes on, not what is trained or on which data.
CHANGEABLE_ON_RESUME = ("optimizer.lr", "train.epochs", "train.max_steps")
KEPT_ON_ROLLBACK = ("nonfinite_rollback", "nonfinite_not_saved")  # events a rollback must not erase


class Checkpointer:
    """Writes step-numbered checkpoints into one folder, keeps ``last.pt``/``best.pt`` pointing at
    the right ones and applies retention.

    Args:
        folder: the run's ``checkpoints/`` folder.
        keep_last: how many step-numbered checkpoints to keep (best.pt and last.pt always stay).
        write: False on the ranks of a DDP job other than rank 0: they only follow which
            checkpoint is the latest (rank 0 writes it), for a rollback to read.
    """

    def __init__(self, folder: Path, keep_last: int = 3, write: bool = True) -> None:
        self.folder = Path(folder)
        self.write = write
        self.keep_last = keep_last
        self.latest: Optional[Path] = None
        self.protect: set[Path] = set()

    def save(self, state: dict[str, Any], *, step: int, epoch: int, best: bool = False) -> Path:
        path = self.folder / ckpt.step_checkpoint_name(step)
        if not self.write:
            self.latest = path
            return path
        self.folder.mkdir(parents=True, exist_ok=True)
        # One commit: the step file, its links and retention (see checkpoint/_commit.py).
        links = ("last.pt", "best.pt") if best else ("last.pt",)
        ckpt.save_checkpoint(state, path, step=step, epoch=epoch, links=links, keep_last=self.keep_last,
                             protect=self.protect)
        self.latest = path
        return path

    def adopt(self, resumed_from: Path) -> None:
        """After a resume: the checkpoint resumed from is the latest, and ``last.pt`` names it
        (a kill while ``last.pt`` was being replaced leaves it unrecorded until the next save,
        and a resumed run that has nothing left to train makes no next save)."""
        self.latest = resumed_from
        if not self.write:
            return
        if self.folder.is_dir():  # a resumed run may have nothing left to save, which would clean up
            ckpt.remove_stale_tmp_files(self.folder)
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


def check_world_size(saved: Optional[dict[str, Any]], world_size: int) -> None:
    """A run continues with the number of processes it was started with (its sample order, per-rank
    random states and data shares depend on it)."""
    if saved is None:
        return
    before = saved["run_state"].get("world_size", 1)
    if before != world_size:
        def processes(n: int) -> str:
            return f"{n} process{'es' if n > 1 else ''}"

        raise ResumeMismatchError(
            f"the checkpoint was written by a run of {processes(before)} (--nproc {before}), this one has "
            f"{processes(world_size)}; resume with --nproc {before}, or start a new run with another --run-dir")


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


class LoopCheckpoint:
    """What a checkpoint holds to continue a ``FitLoop`` exactly, and the loop's saves, resume and
    rollbacks. Nothing in it grows with the run: the metrics history is in metrics.csv, and a
    checkpoint records only how many of its rows it covers."""

    def __init__(self, loop: Any, checkpointer: Checkpointer, objects: FitObjects) -> None:
        self.loop, self.checkpointer, self.objects = loop, checkpointer, objects
        self.initial_state: Optional[dict[str, Any]] = None
        self.finiteness = DeviceFiniteness(objects.device)
        self.refused_save = False  # a save found the state non-finite: the loop rolls back at its next check

    def remember_initial(self) -> None:
        """The state a rollback returns to when no checkpoint has been written yet (on the CPU: a
        copy of the parameters and optimizer moments on the device would cost their size again)."""
        self.initial_state = cpu_copy(self.state_dict())

    def training_is_finite(self) -> bool:
        """Whether every loss (and clipped gradient norm) since the last check was finite, and no save
        was refused for a non-finite state since: one host sync, at log steps and epoch ends."""
        refused, self.refused_save = self.refused_save, False
        return self.finiteness.all_finite(self.loop.loss_sum_device) and not refused

    def state_dict(self) -> dict[str, Any]:
        loop, t, s = self.loop, self.objects, self.loop.state
        return {
            "model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(),
            "schedule": loop.schedule.state_dict(), "scaler": t.scaler.state_dict(),
            "callbacks": {f"{i}:{type(cb).__name__}": cb.state_dict() for i, cb in enumerate(t.callbacks)},
            "run_state": s.to_dict(), "loader": loop.batches.state_dict(), "rng": ckpt.capture_rng_state(),
            "ranks": _ranks_state(loop.batches),
            "epoch_stats": {"loss_sum": loop.loss_sum, "loss_count": loop.loss_count,
                            "loss_sum_device": loop.loss_sum_device.cpu(),
                            "loss_count_device": loop.loss_count_device.cpu(), "clipped_steps": int(loop.clipped_steps),
                            "epoch_steps": loop.epoch_steps, "window_loss": loop.window_loss,
                            "window_count": loop.window_count},
            "metrics_rows": loop.metrics_log.rows_written, "guard": t.guard.state_dict(),
            "spikes": t.spikes.state_dict(), "schedule_start": loop.schedule_start, "config": t.config,
            "reference_lr": t.reference_lr,
            "torch_scheduler": loop.torch_scheduler.state_dict() if loop.torch_scheduler is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        loop, t, s = self.loop, self.objects, self.loop.state
        t.model.load_state_dict(state["model"])
        t.optimizer.load_state_dict(state["optimizer"])
        loop.schedule.load_state_dict(state["schedule"])
        if loop.torch_scheduler is not None and state.get("torch_scheduler") is not None:
            loop.torch_scheduler.load_state_dict(state["torch_scheduler"])
        if state["scaler"]:
            t.scaler.load_state_dict(state["scaler"])
        saved = list(state["callbacks"].items())
        if [key.split(":", 1)[1] for key, _ in saved] != [type(cb).__name__ for cb in t.callbacks]:
            raise CheckpointError(f"the checkpoint's callbacks ({', '.join(k for k, _ in saved)}) differ from this "
                                  "run's; resume with the callbacks the run started with")
        for (_, cb_state), callback in zip(saved, t.callbacks):
            callback.load_state_dict(cb_state)
        # How long to train is this fit's to say (--resume-changed may extend it), the rest is the run's.
        s.load_dict(state["run_state"], keep=("max_epochs", "max_steps", "batches_per_epoch"))
        loop.schedule_start = state["schedule_start"]
        own = state["ranks"][world()[0]] if state.get("ranks") else {"loader": {}, "rng": state["rng"]}
        loop.batches.load_state_dict({**state["loader"], **own["loader"]})
        stats = state["epoch_stats"]
        if s.batch > 0:  # a checkpoint inside an epoch: its running sums continue
            loop.loss_sum, loop.loss_count = stats["loss_sum"], stats["loss_count"]
            loop.loss_sum_device = stats["loss_sum_device"].to(t.device)
            loop.loss_count_device = stats["loss_count_device"].to(t.device)
            loop.clipped_steps, loop.epoch_steps = stats["clipped_steps"], stats["epoch_steps"]
        else:
            loop.reset_epoch_stats()
        loop.window_loss, loop.window_count = stats["window_loss"], stats["window_count"]
        t.guard.load_state_dict(state["guard"])
        t.spikes.load_state_dict(state["spikes"])
        ckpt.restore_rng_state(own["rng"])
        loop.metrics_log.truncate(state["metrics_rows"])
        s.history = history_from_rows(loop.metrics_log.rows, s.epoch,
                                      last_step=s.step if loop.val_every is not None else None)

    def save(self, *, best: bool = False) -> Optional[Path]:
        """Write a checkpoint, unless the state is not finite: then nothing is written (``last.pt`` keeps
        the last finite state, which a rollback returns to) and None is returned."""
        s, t = self.loop.state, self.objects
        if not self.finiteness.all_finite(self.loop.loss_sum_device, t.model):
            self.refused_save = True
            kept = self.checkpointer.latest.name if self.checkpointer.latest is not None else "no checkpoint yet"
            t.record_event("nonfinite_not_saved", f"the state at step {s.step} holds NaN or Inf; no checkpoint was "
                           f"written (the last finite one stays: {kept})")
            return None
        try:
            return self.checkpointer.save(self.state_dict(), step=s.step, epoch=s.epoch, best=best)
        except CheckpointError:
            s.status = "failed"
            raise

    def resume(self, path: Path, state: dict[str, Any]) -> None:
        """Continue from the checkpoint ``state`` read from ``path`` (its config checked by the caller)."""
        s = self.loop.state
        self.load_state_dict(state)
        self.checkpointer.adopt(Path(path))
        self._repair_best_link()
        self._reload_best_weights()
        # Early stopping had ended the run: it stays ended (resuming only finishes it); any other
        # saved status (interrupted) continues.
        s.should_stop = s.status in ("stopped_early", "pruned")
        if not s.should_stop:
            s.status, s.stop_reason = "running", None

    def _repair_best_link(self) -> None:
        """A kill inside a save that moves best.pt can leave it unrecorded (dropped from the manifest
        before its bytes change); the best step's file, recorded, is what it names again, whether or
        not the best weights are restored at the end."""
        folder, step = self.checkpointer.folder, self.loop.state.best.step
        if not self.checkpointer.write or step is None or not folder.is_dir():
            return
        checkpoints, step_name = ckpt.read_manifest(folder), ckpt.step_checkpoint_name(step)
        if "best.pt" not in checkpoints and step_name in checkpoints:
            ckpt.link_checkpoint(folder / step_name, "best.pt")

    def _reload_best_weights(self) -> None:
        """The best epoch's weights, for restoring at the end, come from best.pt (a checkpoint does
        not carry a second copy of the model)."""
        best, path = self.loop.state.best, self.checkpointer.folder / "best.pt"
        if not best.restore or best.epoch is None or not path.is_file():
            return
        saved = self._best_checkpoint(path, best.step)  # kept on the CPU until restored
        if saved is None:
            return
        held = saved["run_state"]["best"]
        if held["epoch"] == best.epoch and held.get("step") == best.step:
            self.loop.best_weights = saved["model"]
        else:
            log.warning("best.pt holds epoch %s, not the best epoch %s; the best weights will not be restored",
                        saved["run_state"]["best"]["epoch"], best.epoch)

    def _best_checkpoint(self, path: Path, step: Optional[int]) -> Optional[dict[str, Any]]:
        """best.pt, or — when a kill landed while it was being replaced (on disk, not yet in the
        manifest) — the step file it was being linked to, which best.pt then names again."""
        try:
            return ckpt.load_checkpoint(path, map_location="cpu")
        except CheckpointError as error:
            step_file = path.parent / ckpt.step_checkpoint_name(step) if step is not None else None
            try:
                if step_file is None or not step_file.is_file():
                    raise error
                saved = ckpt.load_checkpoint(step_file, map_location="cpu")
            except CheckpointError as reason:
                log.warning("%s; the best weights will not be restored at the end", reason)
                return None
            if self.checkpointer.write:
                ckpt.link_checkpoint(step_file, "best.pt")
            return saved

    def roll_back(self, where: str, bad_batch: Optional[tuple[int, int]]) -> None:
        """Back to the last checkpoint (or the start) with a lower lr, skipping ``bad_batch``."""
        loop, t, s = self.loop, self.objects, self.loop.state
        guard = t.guard
        path = self.checkpointer.latest
        state = ckpt.load_checkpoint(path) if path is not None else copy.deepcopy(self.initial_state)
        rollbacks, lr_scale = guard.rollbacks + 1, guard.lr_scale * guard.lr_factor
        skip = guard.skip_batches | {bad_batch} if bad_batch is not None else set(guard.skip_batches)
        # Rewinding the run must not erase its record: earlier rollbacks since that checkpoint stay.
        kept_events = [e for e in s.events[len(state["run_state"]["events"]):] if e["kind"] in KEPT_ON_ROLLBACK]
        kept_rows = [row for row in loop.metrics_log.rows[state["metrics_rows"]:] if row[3] in KEPT_ON_ROLLBACK]
        self.load_state_dict(state)
        s.events.extend(kept_events)
        for step, epoch, split, metric, value in kept_rows:
            loop.metrics_log.log(step, epoch, split, {metric: value})
        if loop.torch_scheduler is not None:  # a user's scheduler owns the lr: lower it there
            scale_torch_scheduler(t.optimizer, loop.torch_scheduler, lr_scale / state["guard"]["lr_scale"])
        guard.rollbacks, guard.lr_scale, guard.skip_batches = rollbacks, lr_scale, skip
        self.finiteness.reset()
        self.refused_save = False
        loop.apply_schedule(force=True)
        source = path.name if path is not None else "the start of the run"
        t.record_event("nonfinite_rollback", f"{where}; rolled back to {source} (step {s.step}), "
                       f"lr scaled by {lr_scale:.3g}" + (", that batch will be skipped" if bad_batch else ""))


def _ranks_state(batches: Any) -> Optional[list[dict[str, Any]]]:
    """DDP: each rank's random states and augmentation generator (which differ between ranks, as
    their shares of a batch do), gathered for rank 0 to write; None in a single process."""
    if world()[1] == 1:
        return None
    loader = {key: value for key, value in batches.state_dict().items() if key not in ("epoch", "position", "order")}
    return gather({"rng": ckpt.capture_rng_state(), "loader": loader})
