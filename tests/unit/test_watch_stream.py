"""Watch streams: opening (``Client.open_watch``), decoding (``rest.watch_events``) and the one list+watch
loop (``kube.reflector.Reflector``, as ``object_watch.stream`` sets it up)."""

from __future__ import annotations

import json
import queue
from typing import Any, Callable, Iterator

import pytest
from kubernetes.client.exceptions import ApiException

from k8s_step_operator.kube import rest
from k8s_step_operator.kube.client import Client
from k8s_step_operator.kube.errors import Gone
from k8s_step_operator.steps.object_watch import stream as Stream


def _line(kind: str, obj: dict) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def _pod(name: str, rv: str) -> dict:
    return {"metadata": {"name": name, "resourceVersion": rv}}


class FakeResp:
    """A chunked streaming response; ``between`` runs after each chunk has been consumed."""

    def __init__(self, chunks: list[bytes], between: Callable[[int], None] | None = None) -> None:
        self.chunks = chunks
        self.between = between
        self.released = False
        self.shut = False

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        for i, chunk in enumerate(self.chunks):
            yield chunk
            if self.between is not None:
                self.between(i)

    def release_conn(self) -> None:
        self.released = True

    def shutdown(self) -> None:
        self.shut = True


def test_events_are_decoded_in_order_with_bookmarks() -> None:
    data = _line("ADDED", _pod("a", "1")) + b"\n" + _line("BOOKMARK", {"metadata": {"resourceVersion": "2"}})
    data += _line("DELETED", _pod("a", "3")).rstrip(b"\n")  # the last line may lack its newline
    resp = FakeResp([data[i : i + 13] for i in range(0, len(data), 13)])  # chunks cut mid-line
    events = list(rest.watch_events(resp))
    assert events == [
        ("ADDED", _pod("a", "1")),
        ("BOOKMARK", {"metadata": {"resourceVersion": "2"}}),
        ("DELETED", _pod("a", "3")),
    ]
    assert resp.released


def test_error_410_raises_gone_after_the_earlier_events() -> None:
    resp = FakeResp(
        [
            _line("ADDED", _pod("a", "1")),
            _line("ERROR", {"code": 410, "message": "too old resource version: 1 (5)"}),
            _line("MODIFIED", _pod("a", "6")),
        ]
    )
    seen = []
    with pytest.raises(Gone, match="too old resource version: 1"):
        for event in rest.watch_events(resp):
            seen.append(event)
    assert seen == [("ADDED", _pod("a", "1"))]
    assert resp.released


@pytest.mark.parametrize(
    "error, status, reason",
    [({"code": 403, "message": "forbidden"}, 403, "forbidden"), ({}, 500, "watch error")],
)
def test_other_errors_raise_api_exception_with_the_code(error: dict, status: int, reason: str) -> None:
    resp = FakeResp([_line("ERROR", error)])
    with pytest.raises(ApiException) as info:
        list(rest.watch_events(resp))
    assert not isinstance(info.value, Gone)
    assert info.value.status == status
    assert info.value.reason == reason


def _recording_request(monkeypatch: pytest.MonkeyPatch, answers: list[Any]) -> list[tuple[str, str, dict, dict]]:
    """Replace ``rest.request``: answer each call with the next of ``answers`` (raised if an exception)."""
    calls: list[tuple[str, str, dict, dict]] = []

    def fake(api: Any, method: str, path: str, query: Any = None, **kwargs: Any) -> Any:
        calls.append((method, path, dict(query or {}), kwargs))
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    monkeypatch.setattr(rest, "request", fake)
    return calls


def test_watch_opens_with_bookmarks_and_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    resp = FakeResp([_line("ADDED", _pod("a", "4"))])
    calls = _recording_request(monkeypatch, [resp])
    events = list(rest.watch_events(Client(None, policy=None).open_watch("/api/v1/pods", "3", {"labelSelector": "x=y"}, server_timeout=20)))
    assert events == [("ADDED", _pod("a", "4"))]
    method, path, query, kwargs = calls[0]
    assert (method, path) == ("GET", "/api/v1/pods")
    assert query == {
        "labelSelector": "x=y",
        "watch": True,
        "resourceVersion": "3",
        "allowWatchBookmarks": True,
        "timeoutSeconds": 20,
    }
    assert kwargs == {"timeout": (10.0, 50), "stream": True}


def test_open_watch_turns_410_into_gone_and_passes_other_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    _recording_request(monkeypatch, [ApiException(status=410), ApiException(status=503)])
    with pytest.raises(Gone):
        Client(None, policy=None).open_watch("/api/v1/pods", "3")
    with pytest.raises(ApiException) as info:
        Client(None, policy=None).open_watch("/api/v1/pods", "3")
    assert not isinstance(info.value, Gone)
    assert info.value.status == 503


def _drain(out: "queue.Queue[tuple[str, str, Any]]") -> list[tuple[str, str, Any]]:
    items = []
    while not out.empty():
        items.append(out.get_nowait())
    return items


def test_stream_tracks_resource_version_and_hides_bookmarks(monkeypatch: pytest.MonkeyPatch) -> None:
    resp = FakeResp([_line("ADDED", _pod("a", "5")), _line("BOOKMARK", {"metadata": {"resourceVersion": "7"}})])
    calls = _recording_request(monkeypatch, [resp])
    out: "queue.Queue[tuple[str, str, Any]]" = queue.Queue()
    stream = Stream(None, "object", "/api/v1/namespaces/ns/pods", "metadata.name=a", out, start_rv="3")
    stream._watch_once()
    assert _drain(out) == [("object", "ADDED", _pod("a", "5"))]
    assert stream.resource_version == "7"
    _method, _path, query, kwargs = calls[0]
    assert query["fieldSelector"] == "metadata.name=a"
    assert query["resourceVersion"] == "3"
    assert query["timeoutSeconds"] == 300
    assert kwargs["timeout"] == (10.0, 330)
    assert stream._resp is None


def test_stream_relists_after_gone_and_close_shuts_the_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    out: "queue.Queue[tuple[str, str, Any]]" = queue.Queue()
    stream = Stream(None, "object", "/api/v1/namespaces/ns/pods", "metadata.name=a", out, start_rv="3")
    expired = FakeResp([_line("ERROR", {"code": 410, "message": "expired"})])
    second = FakeResp(
        [_line("MODIFIED", _pod("a", "10")), _line("MODIFIED", _pod("a", "11"))],
        between=lambda i: stream.close() if i == 0 else None,  # closed from "another thread" mid-watch
    )
    listed = {"items": [_pod("a", "9")], "metadata": {"resourceVersion": "9"}}
    calls = _recording_request(monkeypatch, [expired, listed, second])
    stream.run()  # in this thread: ends once closed
    assert [(q.get("watch"), q.get("resourceVersion")) for _m, _p, q, _k in calls] == [
        (True, "3"),
        (None, None),
        (True, "9"),
    ]
    assert _drain(out) == [
        ("object", "LIST", [_pod("a", "9")]),
        ("object", "MODIFIED", _pod("a", "10")),
    ]
    assert second.shut
    assert second.released
    assert stream._resp is None
