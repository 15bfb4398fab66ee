"""One way to the API and one list+watch loop: ``kube/rest.py`` sends every request (``kube/connection.py``
only repairs ZenML's connector check), and ``kube/reflector.py`` is the only code that opens a watch."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "k8s_step_operator"


def _users(pattern: str) -> set[str]:
    found = set()
    for path in SRC.rglob("*.py"):
        text = re.sub(r'""".*?"""', "", path.read_text(), flags=re.S)  # docstrings may name them
        if re.search(pattern, text):
            found.add(str(path.relative_to(SRC)))
    return found


def test_only_the_rest_module_sends_requests() -> None:
    assert _users(r"\.call_api\(") == {"kube/rest.py", "kube/connection.py"}
    # no typed API classes (CoreV1Api, BatchV1Api, ...), no client-side watch helper
    assert _users(r"\b[A-Z]\w*V\d\w*Api\(|\bVersionApi\(|CustomObjectsApi\(|kubernetes\.watch|kubernetes import watch") == set()


def test_only_the_reflector_opens_watches() -> None:
    assert _users(r"\bopen_watch\(|\bwatch_events\(") == {"kube/client.py", "kube/rest.py", "kube/reflector.py"}
    assert _users(r"\bclass \w+\(threading\.Thread\)") <= {"kube/reflector.py"}
