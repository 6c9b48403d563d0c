"""The --where grammar: tokenizer, precedence, values, and errors that point at the column."""

from __future__ import annotations

import pytest

from trainwise.runs.filter import FilterError, parse_filter, tokenize

RUN = {"optimizer.name": "sgd", "optimizer.lr": 0.05, "test_accuracy": 0.975, "status": "completed",
       "model.hidden": [128], "name": "digits-mlp", "git.dirty": True, "epochs_run": 12}


def lookup(key):
    return (key in RUN, RUN.get(key))


@pytest.mark.parametrize("text, expected", [
    ("optimizer.name = 'sgd'", True),
    ("optimizer.name == \"sgd\"", True),
    ("optimizer.name = sgd", True),
    ("optimizer.name != 'sgd'", False),
    ("test_accuracy > 0.97", True),
    ("test_accuracy >= 0.975", True),
    ("test_accuracy < 0.97", False),
    ("optimizer.lr <= 5e-2", True),
    ("epochs_run = 12", True),
    ("optimizer.name = 'sgd' and test_accuracy > 0.98", False),
    ("optimizer.name = 'adam' or test_accuracy > 0.97", True),
    # and binds tighter than or
    ("optimizer.name = 'adam' and test_accuracy > 0.9 or status = completed", True),
    ("optimizer.name = 'adam' and (test_accuracy > 0.9 or status = completed)", False),
    ("not optimizer.name = 'adam'", True),
    ("name ~ MLP", True),
    ("name ~ 'cnn'", False),
    ("git.dirty = true", True),
    ("config.optimizer.name = sgd and summary.test_accuracy > 0.5", True),
    ("missing.key = 1 or status = completed", True),
    ("test_accuracy > 'abc'", False),  # ordering across types is false, not an error
])
def test_filter_matches(text: str, expected: bool) -> None:
    assert parse_filter(text).matches(lookup) is expected


def test_a_run_without_the_key_never_matches() -> None:
    assert not parse_filter("missing.key = 1").matches(lookup)
    assert not parse_filter("missing.key != 1").matches(lookup)


def test_tokens_carry_columns_and_values() -> None:
    tokens = tokenize("a.b >= -1.5e3 and c = 'it''s'")
    assert [(t.kind, t.column) for t in tokens][:4] == [("word", 1), ("op", 5), ("number", 8), ("keyword", 15)]
    assert tokens[2].value == -1500.0
    assert tokenize("x = 'a \\' b'")[2].value == "a ' b"


@pytest.mark.parametrize("text, column, message", [
    ("optimizer.name = ", 18, "expected a value after '='"),
    ("optimizer.name 'sgd'", 16, "expected an operator"),
    ("(status = completed", 20, "expected '\\)' to close the '\\(' at column 1"),
    ("status = completed)", 19, "expected 'and', 'or' or the end"),
    ("status = completed and", 23, "expected a key"),
    ("status = completed $", 20, "unexpected character '\\$'"),
    ("status === x", 10, "expected a value after '=='"),
])
def test_syntax_errors_point_at_the_column(text: str, column: int, message: str) -> None:
    with pytest.raises(FilterError, match=message) as caught:
        parse_filter(text)
    text_lines = str(caught.value).splitlines()
    assert f"at column {column}" in text_lines[0]
    assert text_lines[2].index("^") - 2 == column - 1  # the caret sits under the column


def test_unknown_key_gets_a_did_you_mean() -> None:
    expression = parse_filter("optimzer.name = 'sgd'")
    with pytest.raises(FilterError, match="unknown key 'optimzer.name'; did you mean 'optimizer.name'"):
        expression.check_keys(RUN)


def test_nothing_is_evaluated_as_python() -> None:
    with pytest.raises(FilterError):
        parse_filter("__import__('os').system('true')")
