"""Tests for trainwise.lr.finder: the range test, its restore guarantee, the rules, the plot."""

from __future__ import annotations

import copy
import json
import math
import random
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from trainwise.errors import ConfigError, DataError
from trainwise.lr.finder import (
    MIN_POINTS,
    NONFINITE_AT_START,
    RETRY_REPEATS,
    SUGGESTION_RULES,
    LRFinder,
    LRFinderResult,
    save_lr_find,
    suggest,
)
from trainwise.lr.suggest import EDGE_BACKOFF, EDGE_RISE, smooth_in_decades

LossFn = Callable[[Tensor, Tensor], Tensor]


def regression_batches(count: int = 4) -> list[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(8, 1, generator=generator)
    inputs = [torch.randn(16, 8, generator=generator) for _ in range(count)]
    return [(batch, batch @ weights) for batch in inputs]


def fresh_batches() -> Iterator[tuple[Tensor, Tensor]]:
    yield from regression_batches(count=3)


def sgd_finder(loss_fn: LossFn | None = None, **arguments: Any) -> tuple[nn.Module, LRFinder]:
    """A seeded linear model and an LRFinder on it with plain SGD."""
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, LRFinder(model, optimizer, loss_fn or nn.MSELoss(), **arguments)


def counting_mse(calls: list[int]) -> LossFn:
    def loss_fn(outputs: Tensor, targets: Tensor) -> Tensor:
        calls.append(1)
        return nn.functional.mse_loss(outputs, targets)

    return loss_fn


def assert_bitwise_equal(actual: Any, expected: Any) -> None:
    """Compare nested state dicts: tensors bitwise (values and dtype), the rest with ==."""
    if isinstance(expected, Tensor):
        assert actual.dtype == expected.dtype and torch.equal(actual, expected)
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys()
        for key in expected:
            assert_bitwise_equal(actual[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for item, expected_item in zip(actual, expected):
            assert_bitwise_equal(item, expected_item)
    else:
        assert actual == expected


# --- the restore guarantee ------------------------------------------------------------


@pytest.mark.parametrize("start_in_train_mode", [True, False])
def test_run_restores_weights_optimizer_modes_grads_and_rng(start_in_train_mode: bool) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    batches = regression_batches()
    nn.functional.mse_loss(model(batches[0][0]), batches[0][1]).backward()
    optimizer.step()  # the optimizer now has state (exp_avg, step) that must survive
    model.train(start_in_train_mode)
    model[3].train(not start_in_train_mode)  # a mixed mode must survive as well
    modes_before = [module.training for module in model.modules()]
    weights_before = copy.deepcopy(model.state_dict())
    optimizer_before = copy.deepcopy(optimizer.state_dict())
    grads_before = [p.grad.clone() for p in model.parameters()]
    rng_states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    expected_draws = (random.random(), np.random.rand(), torch.rand(4))
    random.setstate(rng_states[0])
    np.random.set_state(rng_states[1])
    torch.set_rng_state(rng_states[2])
    modes_seen = []

    def loss_fn(outputs: Tensor, targets: Tensor) -> Tensor:
        modes_seen.append(all(module.training for module in model.modules()))
        return nn.functional.mse_loss(outputs, targets)

    result = LRFinder(model, optimizer, loss_fn, num_steps=20, end_lr=1e-2).run(batches)

    # It trained 20 steps in train mode (dropout drew random numbers, BN stats moved)...
    assert len(result.lrs) == 20 and modes_seen == [True] * 20
    # ...and left no trace.
    assert_bitwise_equal(model.state_dict(), weights_before)
    assert_bitwise_equal(optimizer.state_dict(), optimizer_before)
    assert [group["lr"] for group in optimizer.param_groups] == [3e-4]
    assert [module.training for module in model.modules()] == modes_before
    assert_bitwise_equal([p.grad for p in model.parameters()], grads_before)
    assert random.random() == expected_draws[0]
    assert np.random.rand() == expected_draws[1]
    assert torch.equal(torch.rand(4), expected_draws[2])


def test_run_restores_the_model_when_the_source_fails() -> None:
    model, finder = sgd_finder(num_steps=10)
    weights_before = copy.deepcopy(model.state_dict())
    with pytest.raises(DataError, match="ran out after 3 batches of 10"):
        finder.run(iter(regression_batches(count=3)))  # one-shot: cannot be restarted
    assert_bitwise_equal(model.state_dict(), weights_before)


# --- the schedule and the stop rule ---------------------------------------------------


@pytest.mark.parametrize("mode", ["exp", "linear"])
def test_lr_sequence_is_geometric_or_linear_and_respects_lr_scale(mode: str) -> None:
    model = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 1))
    groups = [{"params": model[0].parameters()}, {"params": model[1].parameters(), "lr_scale": 0.5}]
    optimizer = torch.optim.SGD(groups, lr=0.123)
    group_lrs_seen = []

    def loss_fn(outputs: Tensor, targets: Tensor) -> Tensor:
        group_lrs_seen.append([group["lr"] for group in optimizer.param_groups])
        return nn.functional.mse_loss(outputs, targets)

    start_lr, end_lr = 1e-6, 1e-4
    finder = LRFinder(
        model, optimizer, loss_fn, start_lr=start_lr, end_lr=end_lr, num_steps=15, mode=mode
    )
    lrs = np.array(finder.run(regression_batches()).lrs)

    assert len(lrs) == 15 and lrs[0] == start_lr
    assert lrs[-1] == pytest.approx(end_lr, rel=1e-12)
    if mode == "exp":
        np.testing.assert_allclose(lrs[1:] / lrs[:-1], (end_lr / start_lr) ** (1 / 14), rtol=1e-12)
    else:
        np.testing.assert_allclose(np.diff(lrs), (end_lr - start_lr) / 14, rtol=1e-9)
    assert group_lrs_seen == [[lr, lr * 0.5] for lr in lrs]
    assert [group["lr"] for group in optimizer.param_groups] == [0.123, 0.123]


@pytest.mark.parametrize("largest_first", [True, False])
def test_param_groups_keep_their_ratios_and_the_suggestion_is_the_largest_groups_lr(
    largest_first: bool,
) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 1))
    base_lrs = [0.05, 0.01] if largest_first else [0.01, 0.05]
    optimizer = torch.optim.SGD(
        [{"params": layer.parameters(), "lr": lr} for layer, lr in zip(model, base_lrs)],
        momentum=0.9,
    )
    group_lrs_seen = []

    def loss_fn(outputs: Tensor, targets: Tensor) -> Tensor:
        group_lrs_seen.append([group["lr"] for group in optimizer.param_groups])
        return nn.functional.mse_loss(outputs, targets)

    result = LRFinder(model, optimizer, loss_fn, end_lr=1.0, num_steps=40).run(
        regression_batches()
    )

    # The largest group runs at the recorded lr, the other at 1/5 of it, at every step.
    expected = [lr * base / 0.05 for lr in result.lrs for base in base_lrs]
    seen = [lr for step in group_lrs_seen[: len(result.lrs)] for lr in step]
    assert seen == pytest.approx(expected, rel=1e-12)
    # the edge rule's point is a recorded lr (the largest group's), backed off
    assert result.suggestion is not None
    assert any(math.isclose(result.suggestion * EDGE_BACKOFF, lr, rel_tol=1e-12) for lr in result.lrs)
    assert [group["lr"] for group in optimizer.param_groups] == base_lrs


def test_groups_with_lr_scale_keys_of_trainwise_optimizers_run_at_lr_times_lr_scale() -> None:
    from trainwise.optim import build_optimizer

    model = nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 1))
    optimizer = build_optimizer(model, "adamw", lr=1e-3, layer_lr_decay=0.5)
    scales = [group["lr_scale"] for group in optimizer.param_groups]
    assert min(scales) < 1.0 == max(scales)
    group_lrs_seen = []

    def loss_fn(outputs: Tensor, targets: Tensor) -> Tensor:
        group_lrs_seen.append([group["lr"] for group in optimizer.param_groups])
        return nn.functional.mse_loss(outputs, targets)

    result = LRFinder(model, optimizer, loss_fn, end_lr=1e-2, num_steps=10).run(
        regression_batches()
    )
    assert group_lrs_seen == [[lr * scale for scale in scales] for lr in result.lrs]


def tiny_classification(samples: int = 64) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(samples, 8, generator=generator)
    return inputs, (inputs[:, 0] > 0).long()


def test_a_data_set_of_one_batch_is_cycled_through_epochs_and_gives_a_suggestion() -> None:
    inputs, targets = tiny_classification()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(inputs, targets), batch_size=64, shuffle=True
    )
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    result = LRFinder(model, optimizer, nn.CrossEntropyLoss()).run(loader)
    assert len(result.lrs) > MIN_POINTS
    assert result.reason is None and result.suggestion is not None


def test_a_loader_that_keeps_its_place_is_told_each_new_epoch_and_put_back() -> None:
    from trainwise.data.loader import InMemoryBatches

    inputs, targets = tiny_classification()
    loader = InMemoryBatches(inputs, targets, batch_size=64, shuffle=True, seed=0)
    loader.set_epoch(3)
    next(iter(loader))  # the run that follows is mid-epoch 3
    state_before = copy.deepcopy(loader.state_dict())
    model = nn.Linear(8, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = LRFinder(model, optimizer, nn.CrossEntropyLoss(), num_steps=30).run(loader)
    # Without set_epoch the second pass over this one-batch loader would yield nothing.
    assert len(result.lrs) == 30
    assert_bitwise_equal(loader.state_dict(), state_before)


def test_float_targets_of_shape_n_are_read_as_n_by_1_for_a_single_output() -> None:
    batches = regression_batches()
    flat = [(inputs, targets.squeeze(1)) for inputs, targets in batches]
    assert flat[0][1].shape == (16,)
    _, finder = sgd_finder(end_lr=1.0)
    expected = finder.run(batches)
    with warnings.catch_warnings():
        # mse_loss warns when it broadcasts (N, 1) against (N,): that must not happen here.
        warnings.simplefilter("error")
        flat_result = sgd_finder(end_lr=1.0)[1].run(flat)
    assert flat_result.raw_losses == expected.raw_losses
    assert flat_result.suggestion == expected.suggestion is not None


def scripted_loss(values: Callable[[int], float], calls: list[int]) -> LossFn:
    """A loss whose value at the n-th call is values(n), whatever the model outputs."""

    def loss_fn(outputs: Tensor, targets: Tensor) -> Tensor:
        calls.append(1)
        return outputs.sum() * 0.0 + values(len(calls) - 1)

    return loss_fn


def flat_then_u_shaped(first_run_steps: int) -> Callable[[int], float]:
    """Flat for the first run's calls; then a loss that falls and rises with the step."""
    return lambda call: 2.3 if call < first_run_steps else 1.0 + ((call - first_run_steps) / 30 - 4) ** 2


def test_a_curve_without_suggestion_is_measured_again_twice_as_long() -> None:
    calls: list[int] = []
    model, finder = sgd_finder(scripted_loss(flat_then_u_shaped(20), calls), num_steps=20)
    weights_before = copy.deepcopy(model.state_dict())
    result = finder.run(regression_batches())

    # the retry: RETRY_REPEATS tests of twice the steps, averaged over the steps all recorded
    assert len(calls) == 20 + RETRY_REPEATS * 2 * 20 and len(result.lrs) == 40
    # The second test's schedule spans the same range in twice the steps.
    assert result.lrs[0] == 1e-7 and result.lrs[-1] == pytest.approx(10.0, rel=1e-12)
    assert result.reason is None and result.suggestion is not None
    assert_bitwise_equal(model.state_dict(), weights_before)


def test_without_retry_a_flat_curve_gives_its_reason_after_one_test() -> None:
    calls: list[int] = []
    _, finder = sgd_finder(scripted_loss(flat_then_u_shaped(20), calls), num_steps=20, retry=False)
    result = finder.run(regression_batches())
    assert len(calls) == len(result.lrs) == 20
    assert result.suggestion is None and result.reason is not None
    assert result.reason.startswith("loss curve is flat")


def test_a_curve_that_never_gives_a_suggestion_says_why_after_the_second_test() -> None:
    calls: list[int] = []
    _, finder = sgd_finder(scripted_loss(lambda call: 2.3, calls), num_steps=20)
    result = finder.run(regression_batches())
    assert len(calls) == 20 + RETRY_REPEATS * 40 and len(result.lrs) == 40
    assert result.suggestion is None and result.reason.startswith("loss curve is flat")


def test_a_curve_with_a_suggestion_is_measured_once() -> None:
    calls: list[int] = []
    _, finder = sgd_finder(scripted_loss(lambda call: 1.0 + (call / 10 - 3) ** 2, calls), num_steps=50)
    result = finder.run(regression_batches())
    assert len(calls) == len(result.lrs) == 50 and result.suggestion is not None


def test_stops_early_when_the_smoothed_loss_exceeds_diverge_factor_times_best() -> None:
    _, finder = sgd_finder(end_lr=100.0)
    losses = finder.run(regression_batches()).losses

    assert MIN_POINTS < len(losses) < 100
    assert losses[-1] > 4.0 * min(losses)
    assert all(loss <= 4.0 * min(losses[: i + 1]) for i, loss in enumerate(losses[:-1]))


def test_stops_at_a_non_finite_loss_without_recording_it() -> None:
    calls: list[int] = []

    def loss_fn(outputs: Tensor, targets: Tensor) -> Tensor:
        calls.append(1)
        loss = nn.functional.mse_loss(outputs, targets)
        return loss * math.inf if len(calls) == 13 else loss

    model, finder = sgd_finder(loss_fn, end_lr=1e-3)
    result = finder.run(regression_batches())
    assert len(result.lrs) == len(result.losses) == len(result.raw_losses) == 12
    assert all(math.isfinite(loss) for loss in result.raw_losses + result.losses)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_smoothed_loss_is_the_bias_corrected_moving_average() -> None:
    _, finder = sgd_finder(end_lr=1e-3, smoothing=0.9)
    result = finder.run(regression_batches())
    average, expected = 0.0, []
    for step, raw in enumerate(result.raw_losses):
        average = 0.9 * average + 0.1 * raw
        expected.append(average / (1 - 0.9 ** (step + 1)))
    assert result.losses[0] == pytest.approx(result.raw_losses[0], rel=1e-12)
    assert result.losses == pytest.approx(expected, rel=1e-12)


def test_smoothing_zero_records_the_raw_loss() -> None:
    _, finder = sgd_finder(end_lr=1e-3, smoothing=0.0)
    result = finder.run(regression_batches())
    assert result.losses == result.raw_losses


@pytest.mark.parametrize(
    "source", [regression_batches(count=3), fresh_batches], ids=["list", "function"]
)
def test_source_is_restarted_when_it_runs_out(source: Any) -> None:
    calls: list[int] = []
    _, finder = sgd_finder(counting_mse(calls), end_lr=1e-5, num_steps=12)
    assert len(finder.run(source).lrs) == 12 and len(calls) == 12


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ([], "ran out after 0 batches"),
        ([torch.zeros(2, 8)], "each batch must be a pair"),
        (42, "must be an iterable or a function"),
    ],
)
def test_bad_batch_sources_raise_data_error(source: Any, message: str) -> None:
    _, finder = sgd_finder()
    with pytest.raises(DataError, match=message):
        finder.run(source)


def test_bf16_precision_runs_the_forward_pass_under_autocast() -> None:
    dtypes = []

    def loss_fn(outputs: Tensor, targets: Tensor) -> Tensor:
        dtypes.append(outputs.dtype)
        return nn.functional.mse_loss(outputs.float(), targets)

    _, finder = sgd_finder(loss_fn, end_lr=1e-3, num_steps=10, precision="bf16")
    result = finder.run(regression_batches())
    assert dtypes == [torch.bfloat16] * 10 and all(math.isfinite(loss) for loss in result.losses)


# --- suggestion rules on synthetic curves ---------------------------------------------

LRS = np.geomspace(1e-6, 1.0, 100)
LOG_LRS = np.log10(LRS)
U_SHAPE = (LOG_LRS + 2) ** 2 + 1.0  # minimum at lr 1e-2, index 66
# A plateau, a sigmoid descent centred on lr 1e-4, then an explosion past 1e-2.
PLATEAU_DROP_EXPLODE = 2.3 - 2.0 / (1 + np.exp(-3 * (LOG_LRS + 4))) + np.exp(3 * (LOG_LRS + 1))
NOISY = PLATEAU_DROP_EXPLODE + 0.01 * np.random.default_rng(0).standard_normal(100)
FLAT = 2.3 + 0.001 * np.sin(np.arange(100))
NAN_AT_END = np.append(U_SHAPE[:-1], np.nan)
CURVES = pytest.mark.parametrize(
    "losses", [U_SHAPE, PLATEAU_DROP_EXPLODE, NOISY], ids=["u", "sigmoid", "noisy"]
)


@CURVES
@pytest.mark.parametrize("rule", ["valley", "steepest"])
def test_valley_and_steepest_land_in_the_descending_part(losses: np.ndarray, rule: str) -> None:
    lr, reason = suggest(LRS, losses, rule)
    assert reason is None
    assert LRS[0] < lr < LRS[np.argmin(losses)]


def test_steepest_finds_the_steepest_point_of_the_descent() -> None:
    lr, _ = suggest(LRS, PLATEAU_DROP_EXPLODE, "steepest")
    assert 10**-4.1 < lr < 10**-3.9


def test_valley_is_three_quarters_down_a_clean_descent() -> None:
    # U_SHAPE falls strictly over indices 0..66, so the valley rule picks index 50 (0.75 * 66
    # = 49.5, rounded half to even).
    assert suggest(LRS, U_SHAPE, "valley") == (LRS[50], None)


# A plateau at 2.3 below lr 1e-4, a floor at 1.0 up to 1e-1, then 3.5: the shape of a slow learner's curve
# (a recurrent net's), whose flat floor makes its minimum noise.
STEP_FLOOR = np.where(LOG_LRS < -4, 2.3, np.where(LOG_LRS < -1, 1.0, 3.5))


def test_edge_is_the_upper_edge_of_the_floor_backed_off() -> None:
    # Smoothed over EDGE_WINDOW_DECADES (0.4), the step of +2.5 at log lr -1 (between indices 82 and 83) reads
    # 1.0 + 2.5 * Phi((x + 1.0) / 0.4); the floor ends where that passes its minimum + EDGE_RISE (0.15) of the
    # drop 1.3 (1.195), i.e. Phi = 0.078, x = -1.567: index 73 (log lr -1.576) is the last point below.
    assert suggest(LRS, STEP_FLOOR, "edge") == (LRS[73] / EDGE_BACKOFF, None)
    smoothed = smooth_in_decades(LRS, STEP_FLOOR)
    assert smoothed[73] < 1.0 + EDGE_RISE * 1.3 < smoothed[74]


def test_edge_reads_the_raw_losses_and_not_the_test_length() -> None:
    # The moving average of a range test lags by ~50 steps: the same curve measured with 50 or 200 steps
    # reads differently through it; the edge rule's window is in decades, so both lengths give one lr.
    def measured(steps: int) -> tuple[np.ndarray, np.ndarray]:
        lrs = np.geomspace(1e-6, 1.0, steps)
        x = np.log10(lrs)
        raw = 2.3 - 1.3 / (1 + np.exp(-4 * (x + 3))) + np.exp(3 * (x + 1))
        return lrs, raw

    (short_lrs, short_raw), (long_lrs, long_raw) = measured(50), measured(200)
    lagged = np.empty(len(long_raw))  # the range test's moving average (0.98 a step, bias-corrected)
    average = 0.0
    for step, raw in enumerate(long_raw):
        average = 0.98 * average + 0.02 * raw
        lagged[step] = average / (1 - 0.98 ** (step + 1))
    short = suggest(short_lrs, short_raw, "edge")[0]
    long = suggest(long_lrs, lagged, "edge", raw_losses=long_raw)[0]
    assert short is not None and long is not None
    assert abs(np.log10(short / long)) <= np.log10(short_lrs[1] / short_lrs[0])  # within one step of the short test
    assert long == suggest(long_lrs, long_raw, "edge")[0]


def test_a_curve_without_an_edge_gets_the_valley_rules_lr() -> None:
    # the test ended before the loss rose again (a low end_lr, or a floor at zero): no edge to read
    falling = 2.3 - 2.0 / (1 + np.exp(-3 * (LOG_LRS + 4)))
    assert suggest(LRS, falling, "edge") == suggest(LRS, falling, "valley")
    assert suggest(LRS, falling, "edge")[0] < LRS[-1] / EDGE_BACKOFF


def test_edge_refuses_raw_losses_that_do_not_match() -> None:
    with pytest.raises(ConfigError, match="raw_losses must have the length of losses, got 99 and 100"):
        suggest(LRS, U_SHAPE, "edge", raw_losses=U_SHAPE[:-1])
    with pytest.raises(ConfigError, match="raw_losses must be finite, got nan at index 99"):
        suggest(LRS, U_SHAPE, "edge", raw_losses=NAN_AT_END)


@CURVES
def test_minimum_is_the_lr_of_the_lowest_loss_divided_by_ten(losses: np.ndarray) -> None:
    assert suggest(LRS, losses, "minimum") == (LRS[np.argmin(losses)] / 10, None)


@pytest.mark.parametrize("rule", SUGGESTION_RULES)
@pytest.mark.parametrize(
    ("lrs", "losses", "reason"),
    [
        (LRS, FLAT, "loss curve is flat"),
        (LRS, 2.3 + np.exp(LOG_LRS + 6), "loss diverged without first falling"),
        (LRS[:9], U_SHAPE[:9], f"too few points recorded: 9, need >= {MIN_POINTS}"),
        ([], [], "too few points recorded: 0"),
    ],
    ids=["flat", "rising", "short", "empty"],
)
def test_unusable_curves_give_no_suggestion_and_say_why(
    lrs: Any, losses: Any, reason: str, rule: str
) -> None:
    lr, why = suggest(lrs, losses, rule)
    assert lr is None
    assert why is not None and why.startswith(reason)


@pytest.mark.parametrize(
    ("lrs", "losses", "rule", "message"),
    [
        (LRS, U_SHAPE, "vally", "unknown suggestion rule 'vally'; did you mean 'valley'"),
        (LRS, U_SHAPE, "best", r"expected one of \('edge', 'valley', 'steepest', 'minimum'\)"),
        (LRS, U_SHAPE[:-1], "valley", "same length, got 100 and 99"),
        (LRS[::-1], U_SHAPE, "valley", "lrs must be finite, > 0 and increasing, got .* at index 1"),
        (LRS, NAN_AT_END, "valley", "losses must be finite, got nan at index 99"),
    ],
)
def test_suggest_rejects_bad_arguments(lrs: Any, losses: Any, rule: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        suggest(lrs, losses, rule)


# --- a real range test ----------------------------------------------------------------


def digits_splits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from sklearn.datasets import load_digits

    features, labels = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(features))
    inputs = torch.tensor(features[order], dtype=torch.float32)
    targets = torch.tensor(labels[order])
    train_x, test_x = inputs[:1400], inputs[1400:]
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    return (train_x - mean) / std, targets[:1400], (test_x - mean) / std, targets[1400:]


@pytest.mark.slow  # imports scikit-learn and trains 3 epochs: a few seconds on a shared CPU
def test_range_test_on_digits_suggests_an_adam_lr_that_trains_well() -> None:
    train_x, train_y, test_x, test_y = digits_splits()

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(len(train_x))
        for start in range(0, len(train_x), 64):
            index = order[start : start + 64]
            yield train_x[index], train_y[index]

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    result = LRFinder(model, optimizer, nn.CrossEntropyLoss()).run(batches)

    assert result.rule == "edge" and result.suggestion == result.suggestions["edge"]
    assert set(result.suggestions) == set(SUGGESTION_RULES)
    assert all(1e-4 <= lr <= 1e-1 for lr in result.suggestions.values())
    for group in optimizer.param_groups:
        group["lr"] = result.suggestion
    for _ in range(3):
        for inputs, targets in batches():
            nn.functional.cross_entropy(model(inputs), targets).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    with torch.inference_mode():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    assert accuracy > 0.9


# --- the saved files ------------------------------------------------------------------


@pytest.mark.parametrize(
    "losses", [PLATEAU_DROP_EXPLODE, FLAT, np.array([])], ids=["suggestion", "flat", "empty"]
)
def test_save_lr_find_writes_json_and_png(tmp_path: Any, losses: np.ndarray) -> None:
    lrs = LRS[: len(losses)].tolist()
    answers = {rule: suggest(lrs, losses, rule) for rule in SUGGESTION_RULES}
    suggestion, reason = answers["valley"]
    result = LRFinderResult(
        lrs=lrs,
        losses=losses.tolist(),
        raw_losses=losses.tolist(),
        suggestion=suggestion,
        rule="valley",
        reason=reason,
        suggestions={rule: lr for rule, (lr, _) in answers.items()},
    )
    json_path, png_path = save_lr_find(result, tmp_path / "run")

    assert (json_path, png_path) == (tmp_path / "run/lr_find.json", tmp_path / "run/lr_find.png")
    saved = json.loads(json_path.read_text())
    keys = {"lrs", "losses", "raw_losses", "suggestion", "rule", "reason", "suggestions", "repeats", "calm_edge",
            "unread_curve"}
    assert set(saved) == keys
    assert saved == result.to_json()
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- argument checks ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"start_lr": 0.0}, "start_lr must be a finite number > 0, got 0.0"),
        ({"end_lr": -1.0}, "end_lr must be a finite number > 0, got -1.0"),
        ({"end_lr": math.inf}, "end_lr must be a finite number > 0, got inf"),
        ({"start_lr": "1e-3"}, "start_lr must be a finite number > 0, got '1e-3'"),
        ({"start_lr": 1.0, "end_lr": 0.1}, "start_lr must be < end_lr, got 1.0 >= 0.1"),
        ({"num_steps": 5}, "num_steps must be an integer >= 10, got 5"),
        ({"num_steps": 20.0}, "num_steps must be an integer >= 10, got 20.0"),
        ({"mode": "cosine"}, r"mode must be one of \('exp', 'linear'\), got 'cosine'"),
        ({"smoothing": 1.0}, r"smoothing must be in \[0, 1\), got 1.0"),
        ({"smoothing": -0.1}, r"smoothing must be in \[0, 1\), got -0.1"),
        ({"diverge_factor": 1.0}, "diverge_factor must be > 1, got 1.0"),
        ({"rule": "steep"}, "unknown suggestion rule 'steep'; did you mean 'steepest'"),
        ({"precision": "fp16"}, r"precision must be one of \('fp32', 'bf16'\), got 'fp16'"),
        ({"device": "meta"}, "device is 'meta' but the model is on cpu"),
        ({"retry_repeats": 0}, "retry_repeats must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments_raise_config_error(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sgd_finder(**arguments)


def test_a_loss_non_finite_at_the_first_step_gives_its_reason_and_no_retry() -> None:
    class NaNOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear, self.calls = nn.Linear(3, 1), 0

        def forward(self, x: Tensor) -> Tensor:
            self.calls += 1
            return self.linear(x) * math.nan

    model = NaNOut()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    batches = [(torch.randn(8, 3), torch.randn(8, 1)) for _ in range(4)]
    result = LRFinder(model, optimizer, nn.MSELoss(), num_steps=20, retry=True).run(batches)
    assert (result.suggestion, result.reason) == (None, NONFINITE_AT_START)
    assert model.calls == 1  # stopped at its first step, and not measured again
