"""Success and failure conditions for resource steps (pure: no Kubernetes client).

Two condition languages are accepted:

* **Argo grammar** (what existing KFP v1 ``ResourceOp`` conditions are written in):
  a Kubernetes label selector whose keys are dot-separated JSON paths into the
  object, ``req ("," req)*`` with ``req`` one of ``path``, ``!path``,
  ``path=v``, ``path==v``, ``path!=v``, ``path in (a,b)``, ``path notin (a,b)``,
  ``path>INT``, ``path<INT``. Accepted texts are exactly those Argo's
  ``labels.Parse`` accepts (paths: at most 63 characters of ``A-Z a-z 0-9 - _ .``,
  optionally behind a lowercase ``prefix/``; values: unquoted, at most 63
  characters of the same set, may be empty), except that an empty path
  segment (``a..b``) is rejected as a typo. gjson's ``#`` queries are *not*
  available because Argo's key validation rejects ``#``.
  Evaluation mirrors Argo (gjson over the object's JSON): numeric segments
  index arrays (``status.conditions.0.type``); values render like gjson's
  ``String()`` -- booleans ``true``/``false``, ``2.0`` as ``2``, ``null`` as the
  empty string, objects/arrays as compact JSON. A missing field makes
  ``=``/``==``/``in``/``>``/``<``/``path`` false and ``!=``/``notin``/``!path``
  true. ``>``/``<`` parse the field as a base-10 int64; a non-integer field
  makes the requirement false.
* **CEL** (as in Kubernetes ValidatingAdmissionPolicy): the object is bound as
  ``object``. See :func:`parse_condition` for how a text is recognised as CEL
  and :class:`CelCondition` for the evaluation rules.

:func:`evaluate` combines a success and a failure condition the way Argo's
executor does; read its docstring for the exact semantics.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import cel

__all__ = [
    "ALLOWED_FORMS",
    "CEL_PREFIX",
    "CelCondition",
    "CelExpression",
    "Condition",
    "ConditionError",
    "Operator",
    "Requirement",
    "Selector",
    "Verdict",
    "compile_cel",
    "compile_expression",
    "evaluate",
    "free_variables",
    "is_cel",
    "lookup",
    "parse_condition",
    "parse_conditions",
    "parse_optional_condition",
    "parse_selector",
    "render_value",
]


class ConditionError(ValueError):
    """A condition that cannot be parsed, compiled or evaluated."""


# --------------------------------------------------------------------------- #
# Argo grammar: model
# --------------------------------------------------------------------------- #


class Operator(str, enum.Enum):
    """Operators of the Argo (label-selector) grammar."""

    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    GREATER_THAN = ">"
    LESS_THAN = "<"


ALLOWED_FORMS: tuple[str, ...] = (
    "path",
    "!path",
    "path=value",
    "path==value",
    "path!=value",
    "path in (v1,v2)",
    "path notin (v1,v2)",
    "path>INT",
    "path<INT",
)

_MISSING: Any = object()
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
_INT_RE = re.compile(r"[+-]?[0-9]+")
_DIGITS_RE = re.compile(r"[0-9]+")
_NAME_RE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE_RE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def lookup(obj: Any, path: str) -> Any:
    """Resolve a dot-separated path like gjson does; return ``_MISSING`` if absent.

    Mapping keys are matched literally (so a numeric segment on a mapping is a
    key); on a list a segment of ASCII digits is an index.
    """
    current = obj
    for segment in path.split("."):
        if isinstance(current, Mapping):
            if segment not in current:
                return _MISSING
            current = current[segment]
        elif isinstance(current, Sequence) and not isinstance(current, (str, bytes)):
            if not _DIGITS_RE.fullmatch(segment):
                return _MISSING
            index = int(segment)
            if index >= len(current):
                return _MISSING
            current = current[index]
        else:
            return _MISSING
    return current


def render_value(value: Any) -> str:
    """Render a JSON value as the string Argo compares (gjson ``Result.String()``)."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return format(Decimal(repr(value)), "f")
    if isinstance(value, str):
        return value
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return str(value)


def _parse_int64(text: str) -> int | None:
    """Parse like Go's ``strconv.ParseInt(s, 10, 64)``; None when it would fail."""
    if not _INT_RE.fullmatch(text):
        return None
    number = int(text)
    if number < _INT64_MIN or number > _INT64_MAX:
        return None
    return number


@dataclass(frozen=True)
class Requirement:
    """One ``path <op> values`` requirement of an Argo condition."""

    path: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Evaluate this requirement over a JSON object (Kubernetes semantics)."""
        found = lookup(obj, self.path)
        op = self.operator
        if op is Operator.EXISTS:
            return found is not _MISSING
        if op is Operator.DOES_NOT_EXIST:
            return found is _MISSING
        if op in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN):
            return found is not _MISSING and render_value(found) in self.values
        if op in (Operator.NOT_EQUALS, Operator.NOT_IN):
            return found is _MISSING or render_value(found) not in self.values
        # GREATER_THAN / LESS_THAN
        if found is _MISSING:
            return False
        actual = _parse_int64(render_value(found))
        wanted = _parse_int64(self.values[0]) if len(self.values) == 1 else None
        if actual is None or wanted is None:
            return False
        return actual > wanted if op is Operator.GREATER_THAN else actual < wanted

    def describe(self, obj: Mapping[str, Any]) -> str:
        """Say what the object holds at this requirement's path."""
        found = lookup(obj, self.path)
        if found is _MISSING:
            return f"{self.path} is missing"
        return f"{self.path} is {render_value(found)!r}"

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.path
        if op is Operator.DOES_NOT_EXIST:
            return f"!{self.path}"
        if op in (Operator.IN, Operator.NOT_IN):
            return f"{self.path} {op.value} ({','.join(self.values)})"
        return f"{self.path}{op.value}{self.values[0]}"


@dataclass(frozen=True)
class Selector:
    """A parsed Argo condition: requirements AND'ed (or OR'ed with ``any_of``)."""

    text: str
    requirements: tuple[Requirement, ...]
    field: str = "condition"
    any_of: bool = False

    @property
    def kind(self) -> str:
        """Condition language: always ``"argo"``."""
        return "argo"

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """True when all (``any_of``: any) requirements match."""
        return self.check(obj)[0]

    def check(self, obj: Mapping[str, Any]) -> tuple[bool, str]:
        """Evaluate and explain: ``(matched, human reason)``."""
        results = [(req, req.matches(obj)) for req in self.requirements]
        if self.any_of:
            for req, ok in results:
                if ok:
                    return True, f"{self.field} requirement '{req}' matched ({req.describe(obj)})"
            details = "; ".join(f"'{req}': {req.describe(obj)}" for req in self.requirements)
            return False, f"{self.field} {self.text!r}: no requirement matched ({details})"
        failing = [req for req, ok in results if not ok]
        if not failing:
            details = "; ".join(req.describe(obj) for req in self.requirements)
            return True, f"{self.field} {self.text!r} matched ({details})"
        details = "; ".join(f"'{req}' is false: {req.describe(obj)}" for req in failing)
        return False, f"{self.field} {self.text!r} not met ({details})"

    def with_any_of(self, any_of: bool) -> Selector:
        """Return a copy that ORs (True) or ANDs (False) its requirements."""
        return dataclasses.replace(self, any_of=any_of)


# --------------------------------------------------------------------------- #
# Argo grammar: lexer and parser (same acceptance as k8s labels.Parse)
# --------------------------------------------------------------------------- #

_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")


class _Tok(str, enum.Enum):
    IDENT = "identifier"
    IN = "in"
    NOTIN = "notin"
    EQ = "="
    DEQ = "=="
    NEQ = "!="
    NOT = "!"
    GT = ">"
    LT = "<"
    LPAREN = "("
    RPAREN = ")"
    COMMA = ","
    EOS = "end of condition"


_SYMBOLS: dict[str, _Tok] = {
    "=": _Tok.EQ,
    "==": _Tok.DEQ,
    "!=": _Tok.NEQ,
    "!": _Tok.NOT,
    ">": _Tok.GT,
    "<": _Tok.LT,
    "(": _Tok.LPAREN,
    ")": _Tok.RPAREN,
    ",": _Tok.COMMA,
}

_BINARY_OPERATORS: dict[_Tok, Operator] = {
    _Tok.IN: Operator.IN,
    _Tok.NOTIN: Operator.NOT_IN,
    _Tok.EQ: Operator.EQUALS,
    _Tok.DEQ: Operator.DOUBLE_EQUALS,
    _Tok.NEQ: Operator.NOT_EQUALS,
    _Tok.GT: Operator.GREATER_THAN,
    _Tok.LT: Operator.LESS_THAN,
}


@dataclass(frozen=True)
class _Token:
    kind: _Tok
    text: str
    pos: int

    def shown(self) -> str:
        return "end of condition" if self.kind is _Tok.EOS else repr(self.text)


class _SyntaxError(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


def _lex(text: str) -> list[_Token]:
    """Split into tokens: runs of special symbols greedily, identifiers otherwise."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            tokens.append(_Token(_Tok.EOS, "", n))
            return tokens
        if text[i] in _SPECIAL:
            best: tuple[str, int] | None = None
            j = i
            while j < n and text[j] in _SPECIAL:
                candidate = text[i : j + 1]
                if candidate in _SYMBOLS:
                    best = (candidate, j + 1)
                elif best is not None:
                    break
                j += 1
            assert best is not None  # every single special character is a symbol
            symbol, end = best
            tokens.append(_Token(_SYMBOLS[symbol], symbol, i))
            i = end
        else:
            j = i
            while j < n and text[j] not in _SPECIAL and text[j] not in _WHITESPACE:
                j += 1
            word = text[i:j]
            kind = {"in": _Tok.IN, "notin": _Tok.NOTIN}.get(word, _Tok.IDENT)
            tokens.append(_Token(kind, word, i))
            i = j


def _path_problem(path: str) -> str | None:
    """Why ``path`` is not a valid Argo condition key (k8s qualified name), if it isn't."""
    if "#" in path:
        return (
            f"path {path!r} uses a gjson '#' query, which Argo's condition grammar rejects "
            "(use a CEL condition to search arrays)"
        )
    parts = path.split("/")
    if len(parts) > 2:
        return f"path {path!r} may contain at most one '/'"
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.fullmatch(prefix):
            return f"the part of {path!r} before '/' must be a lowercase DNS subdomain"
    if not name:
        return f"path {path!r} is empty after '/'"
    if len(name) > 63:
        return f"path {path!r} is {len(name)} characters long; Argo allows at most 63"
    if not _NAME_RE.fullmatch(name):
        return (
            f"path {path!r} may only contain letters, digits, '-', '_' and '.', "
            "and must start and end with a letter or digit"
        )
    if "" in path.split("."):
        return f"path {path!r} has an empty segment"
    return None


def _value_problem(value: str) -> str | None:
    """Why ``value`` is not a valid (label) value, if it isn't."""
    if value[:1] in ("'", '"'):
        return f"value {value} is quoted; values are written without quotes"
    if len(value) > 63:
        return f"value {value!r} is {len(value)} characters long; at most 63 are allowed"
    if not _LABEL_VALUE_RE.fullmatch(value):
        return (
            f"value {value!r} may only contain letters, digits, '-', '_' and '.', "
            "and must start and end with a letter or digit"
        )
    return None


class _Parser:
    """Recursive-descent parser following k8s ``labels.Parse``."""

    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.index = 0

    def _peek(self, values: bool = True) -> _Token:
        return self._as_value(self.tokens[self.index], values)

    def _next(self, values: bool = True) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return self._as_value(token, values)

    @staticmethod
    def _as_value(token: _Token, values: bool) -> _Token:
        # 'in'/'notin' are plain identifiers where keys or values are expected.
        if values and token.kind in (_Tok.IN, _Tok.NOTIN):
            return _Token(_Tok.IDENT, token.text, token.pos)
        return token

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        if self._peek().kind is _Tok.EOS:
            return requirements
        while True:
            token = self._peek()
            if token.kind not in (_Tok.IDENT, _Tok.NOT):
                raise _SyntaxError(f"expected a path or '!path', found {token.shown()}", token.pos)
            requirement = self._requirement()
            requirements.append(requirement)
            token = self._next()
            if token.kind is _Tok.EOS:
                return requirements
            if token.kind is not _Tok.COMMA:
                raise _SyntaxError(self._after_requirement_message(requirement, token), token.pos)
            following = self._peek()
            if following.kind not in (_Tok.IDENT, _Tok.NOT):
                raise _SyntaxError(f"expected a path after ',', found {following.shown()}", following.pos)

    @staticmethod
    def _after_requirement_message(requirement: Requirement, token: _Token) -> str:
        message = f"expected ',' or end of condition after '{requirement}', found {token.shown()}"
        if requirement.operator is Operator.DOES_NOT_EXIST and token.kind in _BINARY_OPERATORS:
            message += " ('!path' takes no operator or value)"
        elif token.text.lower() in ("||", "&&", "or", "and", "|", "&"):
            message += " (this grammar has no OR/AND keywords: ',' means AND; use CEL for OR)"
        elif token.kind is _Tok.IDENT:
            message += " (values cannot contain spaces)"
        return message

    def _requirement(self) -> Requirement:
        first = self._next()
        negated = first.kind is _Tok.NOT
        key = self._next() if negated else first
        if key.kind is not _Tok.IDENT:
            raise _SyntaxError(f"expected a path, found {key.shown()}", key.pos)
        problem = _path_problem(key.text)
        if problem:
            raise _SyntaxError(problem, key.pos)
        if negated:
            return Requirement(key.text, Operator.DOES_NOT_EXIST)
        if self._peek().kind in (_Tok.EOS, _Tok.COMMA):
            return Requirement(key.text, Operator.EXISTS)
        op_token = self._next(values=False)
        operator = _BINARY_OPERATORS.get(op_token.kind)
        if operator is None:
            raise _SyntaxError(
                f"expected an operator (=, ==, !=, in, notin, >, <) after path {key.text!r}, "
                f"found {op_token.shown()}",
                op_token.pos,
            )
        if operator in (Operator.IN, Operator.NOT_IN):
            values = self._value_set()
        else:
            values = [self._exact_value(operator)]
        for value, pos in values:
            if operator in (Operator.GREATER_THAN, Operator.LESS_THAN) and value.startswith("-"):
                raise _SyntaxError(
                    f"negative numbers ({value!r}) cannot be written in this grammar; use CEL", pos
                )
            problem = _value_problem(value)
            if problem:
                raise _SyntaxError(problem, pos)
            if operator in (Operator.GREATER_THAN, Operator.LESS_THAN) and _parse_int64(value) is None:
                raise _SyntaxError(
                    f"'{operator.value}' needs an integer value, found {value!r}", pos
                )
        unique = tuple(dict.fromkeys(value for value, _ in values))
        return Requirement(key.text, operator, unique)

    def _exact_value(self, operator: Operator) -> tuple[str, int]:
        token = self._peek()
        if token.kind in (_Tok.EOS, _Tok.COMMA):
            return "", token.pos
        token = self._next()
        if token.kind is _Tok.IDENT:
            return token.text, token.pos
        message = f"expected a value after '{operator.value}', found {token.shown()}"
        if operator in (Operator.GREATER_THAN, Operator.LESS_THAN) and token.kind is _Tok.EQ:
            message += " ('>=' and '<=' are not supported: use path>N-1 or path<N+1)"
        raise _SyntaxError(message, token.pos)

    def _value_set(self) -> list[tuple[str, int]]:
        token = self._next()
        if token.kind is not _Tok.LPAREN:
            raise _SyntaxError(f"expected '(' after in/notin, found {token.shown()}", token.pos)
        token = self._peek()
        if token.kind is _Tok.RPAREN:
            self._next()
            return [("", token.pos)]
        if token.kind not in (_Tok.IDENT, _Tok.COMMA):
            raise _SyntaxError(f"expected a value, ',' or ')', found {token.shown()}", token.pos)
        values: list[tuple[str, int]] = []
        while True:
            token = self._next()
            if token.kind is _Tok.IDENT:
                values.append((token.text, token.pos))
                following = self._peek()
                if following.kind is _Tok.COMMA:
                    continue
                if following.kind is _Tok.RPAREN:
                    break
                raise _SyntaxError(f"expected ',' or ')', found {following.shown()}", following.pos)
            if token.kind is _Tok.COMMA:
                if not values:
                    values.append(("", token.pos))
                following = self._peek()
                if following.kind is _Tok.RPAREN:
                    values.append(("", following.pos))
                    break
                if following.kind is _Tok.COMMA:
                    self._next()
                    values.append(("", following.pos))
                continue
            raise _SyntaxError(f"expected a value or ',', found {token.shown()}", token.pos)
        self._next()  # the ')' seen by the lookahead above
        return values


def _syntax_message(field: str, text: str, error: _SyntaxError) -> str:
    one_line = "".join(" " if ch in "\t\r\n" else ch for ch in text)
    return (
        f"{field}: cannot parse condition {text!r}: {error.message} (column {error.pos + 1})\n"
        f"    {one_line}\n"
        f"    {' ' * error.pos}^\n"
        f"Allowed requirements, comma-separated (all must hold): {', '.join(ALLOWED_FORMS)}. "
        "Values are unquoted (at most 63 characters of letters, digits, '-', '_', '.'). "
        f"For OR, quoting or searching arrays use CEL, e.g. "
        f"\"{CEL_PREFIX} object.status.conditions.exists(c, c.type == 'Ready')\"."
    )


def parse_selector(text: str, field: str = "condition", *, any_of: bool = False) -> Selector:
    """Parse an Argo condition; raise :class:`ConditionError` naming ``field`` if invalid.

    ``any_of=True`` ORs the requirements (Argo's actual failure-condition behaviour).
    A blank text is an error here; use :func:`parse_optional_condition` for "unset".
    """
    if not text.strip():
        raise ConditionError(f"{field}: the condition is empty")
    try:
        requirements = _Parser(text).parse()
    except _SyntaxError as error:
        raise ConditionError(_syntax_message(field, text, error)) from None
    return Selector(text=text, requirements=tuple(requirements), field=field, any_of=any_of)


# --------------------------------------------------------------------------- #
# CEL
# --------------------------------------------------------------------------- #

CEL_PREFIX = "cel:"

# First identifier is ``object`` followed by a field access, possibly behind
# leading '!', '(' or function calls such as ``has(`` / ``size(``.
_CEL_AUTODETECT_RE = re.compile(r"[\s!(]*(?:[A-Za-z_][A-Za-z0-9_]*\s*\(\s*[!(\s]*)*object\s*[.\[]")
_MACRO_VARS_RE = re.compile(
    r"\b(?:all|exists|exists_one|existsOne|map|filter|bind|transformList|transformMap)\s*\(\s*"
    r"([A-Za-z_][A-Za-z0-9_]*)\s*,(?:\s*([A-Za-z_][A-Za-z0-9_]*)\s*,)?"
)
_CEL_BUILTIN_NAMES = frozenset(
    {"int", "uint", "double", "bool", "string", "bytes", "list", "map",
     "null_type", "type", "dyn", "cel", "math", "strings", "optional"}
)


@dataclass(frozen=True, eq=False)
class CelCondition:
    """A compiled CEL condition over ``object``.

    Evaluation rules: the result must be a bool, otherwise :class:`ConditionError`
    (naming the field) is raised. A *missing* map key or list index anywhere in the
    evaluation (``no such key``, index out of range) makes the condition **false**
    -- the object may simply not have that status yet -- so guard optional fields
    with ``has()`` (which works as usual on the last field:
    ``has(object.status.x)``) only when "absent" must mean something else. Other
    runtime errors (undefined variable or function, type mismatch such as
    ``'a' > 1``, division by zero) mean the expression is broken and raise
    :class:`ConditionError` instead of polling forever.
    """

    text: str
    source: str
    program: Any
    field: str = "condition"

    @property
    def kind(self) -> str:
        """Condition language: always ``"cel"``."""
        return "cel"

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Evaluate the expression with ``object`` bound to ``obj``."""
        return self.check(obj)[0]

    def check(self, obj: Mapping[str, Any]) -> tuple[bool, str]:
        """Evaluate and explain: ``(matched, human reason)``."""
        try:
            result = self.program.execute({"object": obj})
        except KeyError as exc:
            missing = exc.args[0] if exc.args else "?"
            return False, f"{self.field} {self.source!r} is false (no such key: {missing!r})"
        except LookupError as exc:
            return False, f"{self.field} {self.source!r} is false ({exc})"
        except Exception as exc:  # noqa: BLE001 - the CEL runtime raises plain builtins
            raise ConditionError(
                f"{self.field}: CEL expression {self.source!r} failed to evaluate: {exc}"
            ) from exc
        if not isinstance(result, bool):
            raise ConditionError(
                f"{self.field}: CEL expression {self.source!r} must return a bool, "
                f"got {type(result).__name__} {result!r}"
            )
        return result, f"{self.field} {self.source!r} is {'true' if result else 'false'}"


def free_variables(program: Any, source: str) -> list[str]:
    """Variables a compiled program reads, without macro-bound names (``c`` in ``exists(c, ...)``) and CEL's own."""
    bound: set[str] = set()
    for match in _MACRO_VARS_RE.finditer(source):
        bound.update(name for name in match.groups() if name)
    return list(dict.fromkeys(n for n in program.variables() if n not in _CEL_BUILTIN_NAMES | bound))


def _compile_program(expr: str, field: str) -> tuple[str, Any]:
    """``(stripped source, program)``; ConditionError naming ``field`` when empty or not CEL."""
    source = expr.strip()
    if not source:
        raise ConditionError(f"{field}: the CEL expression is empty")
    try:
        return source, cel.compile(source)
    except Exception as exc:  # noqa: BLE001 - the compiler raises ValueError today
        raise ConditionError(f"{field}: CEL expression {source!r} does not compile: {exc}") from None


def compile_cel(expr: str, field: str = "condition", *, text: str | None = None) -> CelCondition:
    """Compile a CEL expression (without ``cel:`` prefix); raise ConditionError if invalid."""
    source, program = _compile_program(expr, field)
    unknown = [name for name in free_variables(program, source) if name != "object"]
    if unknown:
        hint = " (the resource is bound as 'object', not 'self')" if "self" in unknown else ""
        raise ConditionError(
            f"{field}: CEL expression {source!r} uses undefined variable(s) "
            f"{', '.join(repr(name) for name in unknown)}; only 'object' is defined{hint}"
        )
    return CelCondition(text=text if text is not None else expr, source=source, program=program, field=field)


@dataclass(frozen=True, eq=False)
class CelExpression:
    """A compiled CEL expression over named values (a CEL step's inputs); ``variables`` in order of use."""

    source: str
    program: Any
    variables: tuple[str, ...]
    field: str = "expression"

    def evaluate(self, values: Mapping[str, Any]) -> Any:
        """The expression's value; ConditionError naming the field when a variable is unbound or it fails."""
        missing = [name for name in self.variables if name not in values]
        if missing:
            raise ConditionError(
                f"{', '.join(missing)}: the CEL expression {self.source!r} reads {'them' if len(missing) > 1 else 'it'}"
                f" but no value was bound; its inputs: {', '.join(self.variables)}"
            )
        try:
            return self.program.execute({name: values[name] for name in self.variables})
        except Exception as exc:  # noqa: BLE001 - the CEL runtime raises plain builtins
            detail = f"no such key: {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else str(exc)
            raise ConditionError(f"{self.field}: CEL expression {self.source!r} failed to evaluate: {detail}") from exc


def compile_expression(expr: Any, field: str = "expression") -> CelExpression:
    """Compile a CEL expression whose free variables are named inputs; ConditionError naming ``field``."""
    if not isinstance(expr, str):
        raise ConditionError(f"{field}: expected a CEL expression (a string), got {type(expr).__name__}")
    source, program = _compile_program(expr, field)
    return CelExpression(source, program, tuple(free_variables(program, source)), field)


# --------------------------------------------------------------------------- #
# Public entry points
# --------------------------------------------------------------------------- #


@runtime_checkable
class Condition(Protocol):
    """What :func:`evaluate` needs from a condition."""

    @property
    def text(self) -> str:
        """The text the user wrote."""
        ...

    @property
    def kind(self) -> str:
        """``"argo"`` or ``"cel"``."""
        ...

    @property
    def field(self) -> str:
        """The argument the condition came from, e.g. ``success_condition``."""
        ...

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether the condition holds for ``obj``."""
        ...

    def check(self, obj: Mapping[str, Any]) -> tuple[bool, str]:
        """``(matches, human-readable reason)``."""
        ...


def is_cel(text: str) -> bool:
    """Whether :func:`parse_condition` treats ``text`` as CEL.

    Rule: the stripped text starts with ``cel:`` (case-insensitive), or its first
    identifier -- after any leading ``!``, ``(`` and function-call openings such as
    ``has(`` or ``size(`` -- is ``object`` followed by ``.`` or ``[``. An Argo path
    cannot meaningfully start with ``object.`` (Kubernetes objects have no
    top-level ``object`` field), so no working Argo condition changes meaning.
    Anything else (e.g. ``'Ready' in object.x`` or ``true && ...``) needs ``cel:``.
    """
    stripped = text.strip()
    return stripped[: len(CEL_PREFIX)].lower() == CEL_PREFIX or bool(_CEL_AUTODETECT_RE.match(stripped))


def parse_condition(text: str, field: str = "condition", *, any_of: bool = False) -> Condition:
    """Parse a condition in either language; see :func:`is_cel` for the rule.

    ``any_of`` ORs the comma-separated requirements of an Argo condition (use it for
    failure conditions, see :func:`evaluate`); it has no effect on CEL.
    """
    stripped = text.strip()
    if stripped[: len(CEL_PREFIX)].lower() == CEL_PREFIX:
        return compile_cel(stripped[len(CEL_PREFIX) :], field, text=text)
    if _CEL_AUTODETECT_RE.match(stripped):
        return compile_cel(stripped, field, text=text)
    return parse_selector(text, field, any_of=any_of)


def parse_optional_condition(
    text: str | None, field: str = "condition", *, any_of: bool = False
) -> Condition | None:
    """Like :func:`parse_condition` but ``None`` or a blank text means "no condition"."""
    if text is None or not text.strip():
        return None
    return parse_condition(text, field, any_of=any_of)


def parse_conditions(
    success: str | None, failure: str | None
) -> tuple[Condition | None, Condition | None]:
    """Parse a step's ``success_condition`` and ``failure_condition`` (failure OR'ed)."""
    return (
        parse_optional_condition(success, "success_condition"),
        parse_optional_condition(failure, "failure_condition", any_of=True),
    )


class Verdict(str, enum.Enum):
    """Outcome of one evaluation of a resource's conditions."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def evaluate(
    obj: Mapping[str, Any], success: Condition | None, failure: Condition | None
) -> tuple[Verdict, str]:
    """Decide success/failure of a resource step from one observation of the object.

    Semantics (Argo's executor, ``matchConditions``):

    * Neither condition: SUCCEEDED immediately.
    * The failure condition is checked first; if it matches: FAILED.
    * Argo documents failure requirements as AND'ed like any label selector but in
      fact ORs them (any comma-separated requirement matching fails the step). For
      compatibility with existing conditions we keep the OR: parse failure
      conditions with ``any_of=True`` (:func:`parse_conditions` does). This
      function uses each condition's own semantics and does not re-interpret them.
    * Success requirements are AND'ed: all must match for SUCCEEDED, else PENDING.
    * Only a failure condition: the first evaluation that is not a failure counts
      as SUCCEEDED.

    ``obj`` must be the object's JSON form (as returned by the API server).
    Returns the verdict and a human-readable reason naming what matched (or not).
    A broken CEL expression raises :class:`ConditionError`.
    """
    if success is None and failure is None:
        return Verdict.SUCCEEDED, "no success or failure condition set"
    if failure is not None:
        failed, reason = failure.check(obj)
        if failed:
            return Verdict.FAILED, reason
        if success is None:
            return Verdict.SUCCEEDED, f"no success condition set and {reason}"
    assert success is not None
    succeeded, reason = success.check(obj)
    return (Verdict.SUCCEEDED if succeeded else Verdict.PENDING), reason
