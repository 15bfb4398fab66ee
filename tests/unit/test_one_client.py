"""One way to the API, one list+watch loop, typed errors: ``kube/rest.py`` alone calls the ApiClient
(``kube/connection.py`` only repairs ZenML's connector check), ``kube/client.py`` alone builds requests on it,
``kube/reflector.py`` alone opens watches, and outside ``kube/`` errors are told apart by their class, never by
comparing status numbers or searching their text."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "k8s_step_operator"

# `exc.status == 404`, `exc.status in (400, 404)`, `getattr(exc, "status", None) != 403`, ...
NUMERIC_STATUS = r"\bstatus\b[^\n=!<>]{0,12}?(?:==|!=|<=|>=|\bnot in\b|\bin\b)\s*[\[({]?\s*\d{3}\b"


def _users(pattern: str) -> set[str]:
    found = set()
    for path in SRC.rglob("*.py"):
        text = re.sub(r'""".*?"""', "", path.read_text(), flags=re.S)  # docstrings may name them
        text = re.sub(r"#.*", "", text)  # and comments
        if re.search(pattern, text):
            found.add(str(path.relative_to(SRC)))
    return found


def _outside_kube(pattern: str) -> set[str]:
    return {name for name in _users(pattern) if not name.startswith("kube/")}


def test_only_the_rest_module_calls_the_api_client() -> None:
    assert _users(r"\.call_api\(") == {"kube/rest.py", "kube/connection.py"}
    # no typed API classes (CoreV1Api, BatchV1Api, ...), no client-side watch helper
    assert _users(r"\b[A-Z]\w*V\d\w*Api\(|\bVersionApi\(|CustomObjectsApi\(|kubernetes\.watch|kubernetes import watch") == set()


def test_only_the_client_builds_requests() -> None:
    assert _users(r"\brest\.request\b|\brest import\b[^\n]*\brequest\b|\brest\.iter_lines\b") == {
        "kube/client.py"
    }


def test_only_the_reflector_opens_watches() -> None:
    assert _users(r"\bopen_watch\(|\bwatch_events\(") == {"kube/client.py", "kube/rest.py", "kube/reflector.py"}
    assert _users(r"\bclass \w+\(threading\.Thread\)") <= {"kube/reflector.py"}


def test_errors_are_told_apart_by_class_outside_kube() -> None:
    assert _outside_kube(NUMERIC_STATUS) == set()
    by_text = r"\bin str\((?:exc|err|error|e)\)|[\"']HTTP \d{3}[\"'] in\b|(?:not found|already exists)[\"'] in\b"
    assert _users(by_text) == set()


def test_the_patterns_catch_what_they_are_for() -> None:
    for line in ("if exc.status == 404:", "if exc.status in (400, 404):", 'getattr(e, "status", None) == 403'):
        assert re.search(NUMERIC_STATUS, line), line
    for line in ('if obj.get("status") == "True":', 'status = {"code": 404}', "exc.status or 0"):
        assert not re.search(NUMERIC_STATUS, line), line
    assert "kube/errors.py" in _users(NUMERIC_STATUS)  # where the numbers belong
