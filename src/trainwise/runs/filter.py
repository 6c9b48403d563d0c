"""The ``--where`` grammar of ``trainwise runs list``: a tokenizer and a recursive-descent parser
(nothing is ever ``eval``'d).

::

    expr       := and_expr ("or" and_expr)*
    and_expr   := unary ("and" unary)*
    unary      := "not" unary | "(" expr ")" | comparison
    comparison := KEY OP value          OP: = == != < <= > >= ~ (contains)
    value      := 'quoted' | "quoted" | NUMBER | WORD (true, false, null, or a bare word)

KEY is a config key (``optimizer.name``, also ``config.optimizer.name``), a summary figure
(``test_accuracy``, also ``summary.test_accuracy``) or a run field (``status``, ``name``, ``id``,
``host``, ``git.commit``, ``git.dirty``). A run without the key never matches a comparison on it.

Example:
    >>> f = parse_filter("optimizer.name = 'sgd' and (test_accuracy > 0.97 or status = crashed)")
    >>> f.keys()
    {'optimizer.name', 'test_accuracy', 'status'}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Union

from trainwise.checks import did_you_mean
from trainwise.errors import ConfigError

OPERATORS = ("==", "!=", "<=", ">=", "=", "<", ">", "~")
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<op>==|!=|<=|>=|=|<|>|~)
  | (?P<paren>[()])
  | (?P<word>[A-Za-z_][\w.\-/:]*)
""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not"}
_LITERALS = {"true": True, "false": False, "null": None, "none": None}


class FilterError(ConfigError):
    """A ``--where`` expression that does not parse, or names an unknown key."""


@dataclass(frozen=True)
class Token:
    kind: str  # string, number, op, paren, word, keyword, end
    text: str
    column: int  # 1-based, where the token starts
    value: Any = None


def tokenize(text: str) -> list[Token]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise _error(text, position + 1, f"unexpected character {text[position]!r}")
        kind, raw = match.lastgroup or "", match.group()
        if kind == "string":
            tokens.append(Token("string", raw, position + 1, re.sub(r"\\(.)", r"\1", raw[1:-1])))
        elif kind == "number":
            tokens.append(Token("number", raw, position + 1, float(raw)))
        elif kind == "word" and raw.lower() in _KEYWORDS:
            tokens.append(Token("keyword", raw.lower(), position + 1))
        elif kind != "space":
            tokens.append(Token(kind, raw, position + 1))
        position = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


Node = Union["Compare", "BoolOp", "Not"]


@dataclass(frozen=True)
class Compare:
    key: str
    op: str
    value: Any
    column: int


@dataclass(frozen=True)
class BoolOp:
    op: str  # and | or
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    part: Node


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.index = text, tokenize(text), 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def parse(self) -> Node:
        node = self.expr()
        if self.token.kind != "end":
            raise _error(self.text, self.token.column, f"expected 'and', 'or' or the end, got {self.token.text!r}")
        return node

    def expr(self) -> Node:
        return self._chain("or", self.and_expr)

    def and_expr(self) -> Node:
        return self._chain("and", self.unary)

    def _chain(self, op: str, part: Callable[[], Node]) -> Node:
        parts = [part()]
        while self.token.kind == "keyword" and self.token.text == op:
            self.take()
            parts.append(part())
        return parts[0] if len(parts) == 1 else BoolOp(op, tuple(parts))

    def unary(self) -> Node:
        token = self.token
        if token.kind == "keyword" and token.text == "not":
            self.take()
            return Not(self.unary())
        if token.kind == "paren" and token.text == "(":
            self.take()
            node = self.expr()
            if self.token.text != ")":
                raise _error(self.text, self.token.column, f"expected ')' to close the '(' at column {token.column}")
            self.take()
            return node
        return self.comparison()

    def comparison(self) -> Node:
        key = self.take()
        if key.kind != "word":
            raise _error(self.text, key.column, f"expected a key such as optimizer.lr or test_accuracy, got "
                         f"{key.text or 'the end'!r}")
        op = self.take()
        if op.kind != "op":
            raise _error(self.text, op.column, f"expected an operator ({' '.join(OPERATORS)}) after {key.text!r}, "
                         f"got {op.text or 'the end'!r}")
        value = self.take()
        if value.kind in ("string", "number"):
            literal = value.value
        elif value.kind == "word":
            literal = _LITERALS.get(value.text.lower(), value.text)
        else:
            raise _error(self.text, value.column,
                         f"expected a value after {op.text!r}, got {value.text or 'the end'!r}")
        return Compare(key.text, "=" if op.text == "==" else op.text, literal, key.column)


class Filter:
    """A parsed ``--where`` expression; ``matches(lookup)`` with ``lookup(key) -> (found, value)``."""

    def __init__(self, text: str, node: Node) -> None:
        self.text, self.node = text, node

    def keys(self, *, canonical: bool = False) -> set[str]:
        """The keys compared; ``canonical``: without a ``config.``/``summary.`` prefix."""
        return {_canonical(c.key) if canonical else c.key for c in _compares(self.node)}

    def check_keys(self, known: Iterable[str]) -> None:
        """A FilterError with a did-you-mean for a key no run has."""
        names = set(known)
        for compare in _compares(self.node):
            if _canonical(compare.key) not in names:
                raise _error(self.text, compare.column, f"unknown key {compare.key!r}"
                             f"{did_you_mean(_canonical(compare.key), sorted(names))} (keys: config keys such as "
                             "optimizer.lr, summary figures such as test_accuracy, and status, name, id, host, "
                             "git.commit, git.dirty)")

    def matches(self, lookup: Callable[[str], tuple[bool, Any]]) -> bool:
        return _evaluate(self.node, lookup)


def parse_filter(text: str) -> Filter:
    return Filter(text, _Parser(text).parse())


def _canonical(key: str) -> str:
    for prefix in ("config.", "summary."):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _compares(node: Node) -> list[Compare]:
    if isinstance(node, Compare):
        return [node]
    if isinstance(node, Not):
        return _compares(node.part)
    return [c for part in node.parts for c in _compares(part)]


def _evaluate(node: Node, lookup: Callable[[str], tuple[bool, Any]]) -> bool:
    if isinstance(node, Not):
        return not _evaluate(node.part, lookup)
    if isinstance(node, BoolOp):
        results = (_evaluate(part, lookup) for part in node.parts)
        return all(results) if node.op == "and" else any(results)
    found, value = lookup(_canonical(node.key))
    return found and compare(value, node.op, node.value)


def compare(value: Any, op: str, literal: Any) -> bool:
    """``value op literal``: numbers as numbers (a numeric string too), else as text; ``~`` is
    case-insensitive "contains"; ordering against null or across types is false."""
    if op == "~":
        return value is not None and str(literal).lower() in str(value).lower()
    left, right = _comparable(value, literal)
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    if left is None or right is None or type(left) is not type(right):
        return False
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def _comparable(value: Any, literal: Any) -> tuple[Any, Any]:
    if isinstance(literal, bool) or literal is None:
        return (bool(value) if isinstance(value, (bool, int)) and literal is not None else value), literal
    if isinstance(literal, float):
        number = _number(value)
        return (number, literal) if number is not None else (str(value), str(literal))
    return (None if value is None else str(value)), str(literal)


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _error(text: str, column: int, message: str) -> FilterError:
    pointer = " " * (column - 1) + "^"
    shown = "".join(char if char.isprintable() else "?" for char in text)  # no control characters echoed; columns kept
    return FilterError(f"--where: {message} at column {column}\n  {shown}\n  {pointer}")
