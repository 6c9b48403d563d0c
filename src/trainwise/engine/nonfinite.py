"""What the loop does when training goes wrong: non-finite values and loss spikes.

The guard holds the policy and its bookkeeping; the loop applies it where the bad value is found
(a loss before backward, a gradient norm before the step, or, on accelerators, a loss read at a
log step after the update was applied)."""

from __future__ import annotations

import copy
import math
import statistics
from collections import deque
from typing import Any, Optional

import torch

from trainwise.errors import ConfigError, DataError

NONFINITE_POLICIES = ("rollback", "skip", "stop")

DIVERGED_ADVICE = ("try a lower learning rate (optimizer.lr, or lr=auto), gradient clipping (train.grad_clip=1.0), "
                   "warmup (schedule.warmup=0.05), or bf16 instead of fp16")


def _finite(value: Any) -> bool:
    """Every floating tensor in ``value`` (a tensor, or a tuple/list/dict of them) is finite."""
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return all(_finite(v) for v in value)
    return True


def bad_data(trainer: Any, batch: Any) -> str | None:
    """What is wrong with a batch whose loss was non-finite, when the data itself holds NaN or Inf (the lr and the
    weights play no part: a rollback and a smaller lr would only hide it); None when its inputs and targets are
    finite or cannot be told apart."""
    try:
        inputs, targets, weights = trainer.split_batch(batch)
    except Exception:  # noqa: BLE001 - the diagnosis must never hide the non-finite loss it explains
        return None
    if not _finite(inputs):
        return "the batch's inputs contain NaN or Inf; clean the data (or fill the missing values)"
    if targets is not None and not _finite(targets):
        return "the batch's targets contain NaN or Inf; clean the data"
    if weights is not None and not _finite(weights):
        return "the batch's sample weights contain NaN or Inf; clean the data"
    return None


def initial_weights_advice(trainer: Any, batch: Any) -> str:
    """What to fix when the loss was non-finite before any optimizer step: the learning rate played
    no part, so say which of the batch's inputs, the model's outputs and the loss went wrong first
    (one forward pass of the batch, without gradients)."""
    lead = "the loss was non-finite at the model's initial weights, before any optimizer step, so the learning " \
           "rate plays no part: "
    data = bad_data(trainer, batch)
    if data is not None:
        return lead + data
    try:
        with torch.no_grad():
            _, _, outputs, _ = trainer.loss_terms(trainer.train_model, batch)
    except Exception as error:  # the diagnosis must never hide the divergence it explains
        return lead + f"check the model's forward pass and the loss (diagnosis failed: {type(error).__name__})"
    if outputs is not None and not _finite(outputs):
        return lead + (f"{type(trainer.model).__name__} returns NaN or Inf for finite inputs; check its forward pass "
                       "(a log or sqrt of a negative value, a division by zero, an overflow, an uninitialized weight)")
    return lead + ("the model's outputs are finite but the loss is not; check the loss against the targets "
                   "(a log of 0 or of a negative value in a custom loss, targets outside the loss's range)")


class NonFiniteGuard:
    """The policy for a NaN/Inf loss or gradient, and its bookkeeping.

    Args:
        policy: ``rollback`` restores the last good checkpoint, multiplies the lr by ``lr_factor`` and
            skips the offending batch, at most ``max_rollbacks`` times; ``skip`` drops the batch;
            ``stop`` ends the run as ``diverged``.
    """

    def __init__(self, policy: str = "rollback", *, max_rollbacks: int = 3, lr_factor: float = 0.5) -> None:
        if policy not in NONFINITE_POLICIES:
            raise ConfigError(f"on_nonfinite must be one of {', '.join(NONFINITE_POLICIES)}, got {policy!r}")
        if max_rollbacks < 0:
            raise ConfigError(f"max_rollbacks must be >= 0, got {max_rollbacks}")
        if not 0 < lr_factor < 1:
            raise ConfigError(f"rollback_lr_factor must be in (0, 1), got {lr_factor}")
        self.policy = policy
        self.max_rollbacks = max_rollbacks
        self.lr_factor = lr_factor
        self.rollbacks = 0
        self.skipped = 0
        self.lr_scale = 1.0  # product of every rollback's lr_factor
        self.skip_batches: set[tuple[int, int]] = set()  # (epoch, batch index) never to train on again

    def can_roll_back(self) -> bool:
        return self.rollbacks < self.max_rollbacks

    def state_dict(self) -> dict[str, Any]:
        return {"rollbacks": self.rollbacks, "skipped": self.skipped, "lr_scale": self.lr_scale,
                "skip_batches": [list(item) for item in sorted(self.skip_batches)]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rollbacks, self.skipped, self.lr_scale = state["rollbacks"], state["skipped"], state["lr_scale"]
        self.skip_batches = {(int(e), int(i)) for e, i in state["skip_batches"]}


class DeviceFiniteness:
    """Whether training stayed finite since the last look, kept on the device (no sync per step).

    The loop already adds every micro-batch's loss into a float64 sum on the device; NaN and Inf
    are absorbing in a sum (Inf + -Inf is NaN), so that sum says whether every loss was finite at
    no extra cost. Gradient norms (when clipping by norm) are added here, one add per step into a
    0-d tensor, the torchtitan way. ``all_finite`` reads both with one host sync; the loop calls
    it at each log step, at each epoch's end and before every checkpoint write. In a DDP job the
    ranks agree (a MIN all-reduce), so they all roll back together.
    """

    def __init__(self, device: torch.device) -> None:
        self.norms = torch.zeros((), dtype=torch.float64, device=device)

    def observe(self, value: torch.Tensor) -> None:
        """Add a non-negative device value (a gradient norm); no sync."""
        self.norms.add_(value.detach())

    def all_finite(self, loss_sum: torch.Tensor, model: Optional[torch.nn.Module] = None) -> bool:
        """One sync: the loss sum and the norms since the last reset (and ``model``'s parameters and
        buffers, when given: a step can overflow the weights while the loss it came from was finite)."""
        flags = [torch.isfinite(loss_sum + self.norms)]
        if model is not None:
            flags.extend(torch.isfinite(tensor).all() for tensor in model.state_dict().values()
                         if tensor.is_floating_point() or tensor.is_complex())
        finite = torch.stack([flag.to(self.norms.device) for flag in flags]).all().to(torch.float32)
        from trainwise.distributed.ops import world

        if world()[1] > 1:
            import torch.distributed as dist

            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite.item())

    def reset(self) -> None:
        self.norms.zero_()


def scale_torch_scheduler(optimizer: torch.optim.Optimizer, scheduler: Any, factor: float) -> None:
    """Lower the lr a user's torch scheduler drives by ``factor``, now and for the rest of its schedule.

    Schedulers compute the next lr from the group's current lr (StepLR, ExponentialLR, cosine and
    the other chainable ones), from ``base_lrs`` (LambdaLR, MultiplicativeLR's closed forms) or from
    the groups' ``initial_lr``/``max_lr``/``min_lr`` (OneCycleLR); all of them are scaled, so
    whichever the scheduler reads, the lr stays lowered.
    """
    for group in optimizer.param_groups:
        for key in ("lr", "initial_lr", "max_lr", "min_lr"):
            if isinstance(group.get(key), (int, float)):
                group[key] *= factor
    for name in ("base_lrs", "_last_lr", "min_lrs"):
        values = getattr(scheduler, name, None)
        if isinstance(values, list):
            setattr(scheduler, name, [value * factor if isinstance(value, (int, float)) else value
                                      for value in values])


def cpu_copy(state: Any) -> Any:
    """``state`` (a state dict, nested) with every tensor copied to the CPU: snapshots kept for a
    rollback or the best weights do not take device memory."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {key: cpu_copy(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(cpu_copy(value) for value in state)
    return copy.deepcopy(state)


class SpikeCounter:
    """Counts steps whose loss exceeds ``factor`` × the median of the recent losses.

    A loss near zero is not a spike whatever the ratio (0.002 after a median of 1e-4 is noise on a
    converged model): a spike must also exceed ``floor_fraction`` of the loss the run started at
    (the median of its first ``refresh`` losses). The median is recomputed every ``refresh``
    observations so the per-step cost is one comparison.
    """

    def __init__(self, factor: float = 10.0, window: int = 100, refresh: int = 25,
                 floor_fraction: float = 0.1) -> None:
        if factor <= 1:
            raise ConfigError(f"spike_factor must be > 1, got {factor}")
        self.floor_fraction = floor_fraction
        self.floor: Optional[float] = None
        self.factor = factor
        self.recent: deque[float] = deque(maxlen=window)
        self.refresh = refresh
        self.threshold: Optional[float] = None
        self.count = 0
        self._since_refresh = 0

    def observe(self, loss: float) -> bool:
        """Record one finite loss; True when it is a spike."""
        spike = self.threshold is not None and loss > self.threshold
        self.count += spike
        self.recent.append(loss)
        self._since_refresh += 1
        if self._since_refresh >= self.refresh and len(self.recent) >= self.refresh:
            median = statistics.median(self.recent)
            if self.floor is None:
                self.floor = self.floor_fraction * median
            self.threshold = max(self.factor * median, self.floor)
            self._since_refresh = 0
        return spike

    def state_dict(self) -> dict[str, Any]:
        return {"recent": list(self.recent), "threshold": self.threshold, "count": self.count,
                "since_refresh": self._since_refresh, "floor": self.floor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent = deque(state["recent"], maxlen=self.recent.maxlen)
        self.threshold, self.count, self._since_refresh = state["threshold"], state["count"], state["since_refresh"]
        self.floor = state.get("floor")


def no_gradient(exc: BaseException) -> BaseException:
    """A backward pass that failed on a loss with no gradient: one line naming the causes (torch's words
    name none), caused by torch's error; any other error as it was."""
    if not isinstance(exc, RuntimeError) or "does not require grad" not in str(exc):
        return exc
    error = DataError("the loss has no gradient: the model's outputs do not depend on any parameter that requires "
                     "grad (every parameter frozen with requires_grad=False, or forward() runs under "
                     "torch.no_grad(), detaches its output or goes through argmax/round); unfreeze what should "
                     f"train (torch: {exc})")
    error.__cause__ = exc
    return error


def refuse_nonfinite_validation(loop: Any, val_loss: Optional[float], train_loss: Optional[float]) -> None:
    """A NaN validation loss while training is finite and sane: the model's eval-mode outputs are broken,
    and every figure, "best" and early stopping after it would be read off NaN. The run ends as failed.
    A training loss that spiked or exploded (over 1000x its first epoch's: AutoTrainer's factor) is
    divergence, the guard's and the doctor's case (SGD at batch 1 reaching 1e35, its validation at Inf)."""
    if val_loss is None or math.isfinite(val_loss) or train_loss is None or not math.isfinite(train_loss):
        return
    first = next((row["train_loss"] for row in loop.state.history if "train_loss" in row), None)
    if loop.objects.spikes.count or (first is not None and abs(train_loss) > 1e3 * max(abs(first), 1e-12)):
        return
    loop.t.stop(f"the validation loss is {val_loss} at epoch {loop.state.current_epoch} while the training loss "
                f"is {train_loss:.4g}: the model's outputs on the validation data are NaN or Inf; check the "
                "validation inputs for NaN or Inf (trainwise doctor, data.nonfinite) and what model.eval() "
                "changes (BatchNorm running statistics, a forward that branches on self.training)",
                status="failed")
