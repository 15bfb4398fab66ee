"""kubectl-style JSONPath for ``attribute_outputs`` (pure: no Kubernetes client).

Accepted forms (one expression; kubectl's text templates, ``range``/``end`` and
several ``{...}`` blocks are not supported)::

    {.metadata.name}            .metadata.name            metadata.name
    {.status.conditions[0].type}          {.status.conditions[-1].type}
    {.status.conditions[?(@.type=="Ready")].status}       {.items[*].metadata.name}
    {.metadata.labels.app\\.kubernetes\\.io/name}         {.metadata.labels['app.kubernetes.io/name']}
    {..name}   {.spec.containers[0:2].image}   {$.metadata.name}

Field names run up to the next unescaped ``.`` or ``[`` (``\\.`` is a literal dot,
so label and annotation keys with ``/`` work as in kubectl). Bracket parts
(indexes, slices, ``*``, unions, quoted keys and ``?(...)`` filters with
``==``, ``!=``, ``<``, ``>``, ``<=``, ``>=``, ``=~``, ``&&``, ``||``) are evaluated
by ``jsonpath-ng``'s extended parser.

Result of :func:`extract`: one match gives the matched Python value as-is
(scalars, dicts and lists alike -- the caller serializes); several matches
give a list of them; no match raises :class:`JsonPathError` unless a
``default`` is given. Note that ``kubectl get -o jsonpath`` (and so Argo)
prints an empty string for a missing field; pass ``default=""`` to get that.
"""

from __future__ import annotations

import functools
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng.ext import parse as _ng_parse

__all__ = ["JsonPathError", "compile_jsonpath", "extract", "validate_jsonpath"]

_NO_DEFAULT: Any = object()
_UNSUPPORTED_KEYWORDS = ("range", "end", "else", "if")


class JsonPathError(ValueError):
    """A JSONPath that cannot be parsed or that matched nothing."""


class _TranslateError(Exception):
    def __init__(self, message: str, pos: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


def _scan_quoted(text: str, start: int) -> int:
    """Return the index just past the quoted string starting at ``start``."""
    quote = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    raise _TranslateError(f"unterminated {quote} string", start)


def _has_unquoted(text: str, chars: str) -> int | None:
    """Position of the first of ``chars`` outside quotes, or None."""
    i = 0
    while i < len(text):
        if text[i] in "'\"":
            i = _scan_quoted(text, i)
            continue
        if text[i] in chars:
            return i
        i += 1
    return None


def _strip_template(expr: str) -> tuple[str, int]:
    """Remove kubectl's ``{...}`` wrapper; return the inner text and its offset in ``expr``."""
    text = expr.strip()
    if not text:
        raise _TranslateError("the expression is empty")
    offset = len(expr) - len(expr.lstrip())
    if text.startswith("{"):
        if not text.endswith("}"):
            closing = _has_unquoted(text, "}")
            if closing is not None:
                raise _TranslateError(
                    "text around a {...} expression is not supported; give just the expression",
                    offset + closing + 1,
                )
            raise _TranslateError("missing closing '}'", offset + len(text))
        body = text[1:-1]
        inner = body.strip()
        offset += 1 + len(body) - len(body.lstrip())
        brace = _has_unquoted(inner, "{}")
        if brace is not None:
            raise _TranslateError(
                "only a single {...} expression is supported (no text templates or several blocks)"
            )
    else:
        brace = _has_unquoted(text, "{}")
        if brace is not None:
            raise _TranslateError(
                "text around a {...} expression is not supported; give just the expression",
                offset + brace,
            )
        inner = text
    first_word = inner.split(None, 1)[0] if inner.split() else ""
    if first_word in _UNSUPPORTED_KEYWORDS:
        raise _TranslateError(f"kubectl's '{first_word}' templates are not supported")
    if not inner:
        raise _TranslateError("the expression is empty")
    return inner, offset


def _quote_name(name: str, pos: int) -> str:
    if '"' not in name:
        return f'"{name}"'
    if "'" not in name:
        return f"'{name}'"
    raise _TranslateError(f"field name {name!r} contains both quote characters", pos)


def _matching_bracket(text: str, start: int) -> int:
    """Index of the ``]`` closing the ``[`` at ``start`` (quotes and nesting aware)."""
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch in "'\"":
            i = _scan_quoted(text, i)
            continue
        if ch in "[(":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth == 0:
                if ch != "]":
                    raise _TranslateError("unbalanced ')' inside '[...]'", i)
                return i
        i += 1
    raise _TranslateError("missing closing ']'", start)


def _read_name(text: str, start: int) -> tuple[str, int]:
    """Read a field name up to an unescaped '.' or '['; ``\\.`` is a literal dot."""
    chars: list[str] = []
    i = start
    while i < len(text) and text[i] not in ".[":
        if text[i] == "\\" and i + 1 < len(text):
            chars.append(text[i + 1])
            i += 2
            continue
        if text[i] in "]()'\"{}" or text[i].isspace():
            raise _TranslateError(f"unexpected {text[i]!r} in a field name", i)
        chars.append(text[i])
        i += 1
    return "".join(chars), i


def _translate(inner: str, offset: int) -> str:
    """Translate a kubectl JSONPath (without braces, at ``offset`` in the original)."""
    text = inner
    if text.startswith("$"):
        text = text[1:]
        offset += 1
    elif text[0] not in ".[":
        text = "." + text  # bare form: metadata.name
        offset -= 1
    if text in ("", "."):
        return "$"
    try:
        return _translate_steps(text)
    except _TranslateError as error:
        if error.pos is not None:
            error.pos += offset
        raise


def _translate_steps(text: str) -> str:
    """Translate ``.name`` / ``..name`` / ``[...]`` steps; positions relative to ``text``."""
    out = ["$"]
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == ".":
            recursive = text.startswith("..", i)
            i += 2 if recursive else 1
            if recursive:
                out.append("..")
            if i < len(text) and text[i] == "[":
                if not recursive:
                    raise _TranslateError("expected a field name after '.'", i)
                continue
            name, end = _read_name(text, i)
            if not name:
                raise _TranslateError("expected a field name after '.'", i)
            if not recursive:
                out.append(".")
            out.append("*" if name == "*" else _quote_name(name, i))
            i = end
        elif ch == "[":
            end = _matching_bracket(text, i)
            if not text[i + 1 : end].strip():
                raise _TranslateError("empty '[]'", i)
            out.append(text[i : end + 1])
            i = end + 1
        else:
            raise _TranslateError(f"unexpected {ch!r}; expected '.' or '['", i)
    return "".join(out)


@functools.lru_cache(maxsize=256)
def _compile(expr: str) -> JSONPath:
    inner, offset = _strip_template(expr)
    translated = _translate(inner, offset)
    try:
        return _ng_parse(translated)
    except Exception as exc:  # noqa: BLE001 - jsonpath-ng raises assorted exception types
        raise _TranslateError(f"invalid JSONPath: {exc} (parsing {translated!r})") from None


def compile_jsonpath(expr: str, field: str = "attribute_outputs") -> JSONPath:
    """Parse a kubectl-style JSONPath; raise :class:`JsonPathError` naming ``field``."""
    try:
        return _compile(expr)
    except _TranslateError as error:
        where = f" at position {error.pos + 1}" if error.pos is not None else ""
        raise JsonPathError(f"{field}: cannot parse JSONPath {expr!r}: {error.message}{where}") from None


def validate_jsonpath(expr: str, field: str = "attribute_outputs") -> None:
    """Check a JSONPath up front (before anything is created)."""
    compile_jsonpath(expr, field)


def extract(
    obj: Any, expr: str, field: str = "attribute_outputs", *, default: Any = _NO_DEFAULT
) -> Any:
    """Evaluate ``expr`` over ``obj``: one match → the value, several → a list.

    No match raises :class:`JsonPathError` naming ``field`` and ``expr``, unless
    ``default`` is given (then it is returned).
    """
    path = compile_jsonpath(expr, field)
    values = [match.value for match in path.find(obj)]
    if not values:
        if default is not _NO_DEFAULT:
            return default
        raise JsonPathError(f"{field}: JSONPath {expr!r} matched nothing in the object")
    return values[0] if len(values) == 1 else values
