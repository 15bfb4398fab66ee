"""Follow a container's log and resume after disconnects without repeating lines.

Lines are requested with ``timestamps=true``; after a drop we ask again from
the last timestamp (the API rounds ``sinceTime`` down to seconds) and skip what
was already printed: every line at or before the last printed timestamp, with
a count for several lines sharing that exact timestamp.

A line without a timestamp is not the container's: it is the kubelet giving up on
the stream and saying why in it (``failed to create fsnotify watcher: too many open
files`` when a node follows more logs than its inotify limit allows). It is not
printed; the stream is resumed as after a drop.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections import deque
from concurrent.futures import Executor
from typing import Any, Callable

from kubernetes import client

from .client import Client
from .errors import BadRequest, NotFound

log = logging.getLogger(__name__)
TAIL_LINES = 10
_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


class StreamBroken(Exception):
    """The kubelet ended a log stream with its own message instead of the container's lines."""


def split_timestamp(line: str) -> tuple[str, str]:
    """Split ``2024-01-01T00:00:00.123456789Z text`` into (timestamp, text)."""
    stamp, _, text = line.partition(" ")
    return stamp, text


def _stamp_key(stamp: str) -> tuple[str, int]:
    """A sortable key for an RFC 3339 (nano) timestamp: (seconds part, nanoseconds)."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    return head, int((frac + "000000000")[:9]) if frac else 0


class LogFollower:
    """Stream one container's log lines to ``emit`` in a background thread."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        pod: str,
        container: str,
        emit: Callable[[str], None],
        max_attempts: int = 30,
        rest_reader: Executor | None = None,
    ) -> None:
        """``rest_reader``: lasting threads to read the rest of a cut log on (see :meth:`run_here`)."""
        self.api = api
        self.rest_reader = rest_reader
        self.namespace = namespace
        self.pod = pod
        self.container = container
        self.emit = emit
        self.max_attempts = max_attempts
        self.lines = 0
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)  # the last lines, for a failure's reason
        self.reconnects = 0
        self.broken = ""  # the kubelet's last message when it broke the stream off
        self._last: tuple[str, int] | None = None
        self._same_stamp = 0
        self._skip = 0
        self.cut = False  # ended by interrupt(), not by the server
        self._followed = False  # the follow is over (an interrupt from then on changes nothing)
        self._done = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._resp: Any = None

    def start(self) -> "LogFollower":
        """Follow in a thread of its own."""
        threading.Thread(target=self.run_here, name=f"logs-{self.pod}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def interrupt(self) -> None:
        """From another thread: end the follow now (the container has ended by its pod's account, the
        stream may not have: the kubelet looks at a quiet log file once a second); :meth:`run_here` then
        reads once, without following, what the follow had not delivered. Idempotent."""
        with self._lock:
            if self._followed or self.cut:
                return
            self.cut = True
            self._stop.set()
            resp = self._resp
        if resp is not None:
            try:
                resp.shutdown()
            except Exception:  # noqa: BLE001 - best effort: the read ends with the container anyway
                pass

    def _catch_up(self) -> None:
        """Read once, without following, the lines after the last one printed (skipping those already
        printed): after :meth:`interrupt`, the container has ended and nothing more comes."""
        self._skip = self._same_stamp
        try:
            lines = Client(self.api, policy=None).log_lines(
                self.namespace, self.pod, container=self.container, timestamps=True, since_time=self._since()
            )
            for raw in lines:
                self._take(raw)
        except Exception as exc:  # noqa: BLE001 - the step's verdict stands without its last lines
            log.debug("could not read the rest of the log of %s/%s: %s", self.pod, self.container, exc)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the log has been read to its end (container finished); True when it was."""
        return self._done.wait(timeout)

    def _since(self) -> str | None:
        if self._last is None:
            return None
        return self._last[0] + "Z"

    def _accept(self, stamp: str) -> bool:
        """False for a line already printed before a reconnect."""
        key = _stamp_key(stamp)
        if self._last is not None:
            if key < self._last:
                return False
            if key == self._last:
                if self._skip > 0:
                    self._skip -= 1
                    return False
                self._same_stamp += 1
                return True
        self._last = key
        self._same_stamp = 1
        self._skip = 0
        return True

    def _take(self, raw: bytes) -> None:
        """Print one line of the stream unless it was printed before a reconnect; a line without a
        timestamp is the kubelet breaking the stream off (:class:`StreamBroken`)."""
        line = raw.decode("utf-8", errors="replace")
        stamp, text = split_timestamp(line)
        if not _STAMP.fullmatch(stamp):
            raise StreamBroken(line.strip())
        if self._accept(stamp):
            self.lines += 1
            self.tail.append(text)
            self.emit(text)

    def _opened(self, resp: Any) -> None:
        """The follow's response, kept for :meth:`interrupt` (shut at once if interrupted meanwhile)."""
        with self._lock:
            self._resp = resp
            stopped = self._stop.is_set()
        if stopped:
            resp.shutdown()

    def run_here(self) -> None:
        """Follow the log in the calling thread until the container ends, or :meth:`stop`/:meth:`interrupt`
        (then read the rest once, on ``rest_reader`` if given: the cut took the follow's connection with
        it, and the new one's TLS handshake in a short-lived thread — each step's waiting thread — grows
        that thread's heap, about 50 KiB per step measured with one step in flight, where a lasting thread
        reuses what it freed before)."""
        try:
            self._follow()
            with self._lock:
                self._followed = True
            if self.cut:
                self._read_rest()
        finally:
            self._done.set()

    def _read_rest(self) -> None:
        if self.rest_reader is not None:
            try:
                self.rest_reader.submit(self._catch_up).result()
                return
            except RuntimeError:  # the reader is shut down (the interpreter is exiting): read it here
                pass
        self._catch_up()

    def _follow(self) -> None:
        attempts = 0
        while not self._stop.is_set() and attempts < self.max_attempts:
            attempts += 1
            self._skip = self._same_stamp
            try:
                lines = Client(self.api, policy=None).log_lines(
                    self.namespace, self.pod, container=self.container, follow=True, timestamps=True,
                    since_time=self._since(), on_open=self._opened,
                )
                try:
                    for raw in lines:
                        if self._stop.is_set():
                            return
                        self._take(raw)
                finally:
                    with self._lock:
                        self._resp = None
                return  # the server ended the follow: the container finished
            except (BadRequest, NotFound) as exc:
                if self._last is None:
                    # container not started yet, or pod gone; retry a few times
                    self._stop.wait(0.2)
                    continue
                if isinstance(exc, NotFound):
                    return
                self.reconnects += 1
                self._stop.wait(min(0.2 * attempts, 2.0))
            except StreamBroken as exc:
                log.debug("the kubelet broke off the log stream of %s/%s: %s", self.pod, self.container, exc)
                self.broken = str(exc)
                self.reconnects += 1
                self._stop.wait(min(0.2 * attempts, 2.0))
            except Exception as exc:  # noqa: BLE001 - other refusals and transport errors: resume
                log.debug("log stream of %s dropped: %s", self.pod, exc)
                self.reconnects += 1
                self._stop.wait(min(0.2 * attempts, 2.0))
        if not self._stop.is_set():
            log.warning(
                "gave up following the log of %s/%s after %d attempts%s; read it with kubectl logs while the pod exists",
                self.pod, self.container, attempts, f" (the kubelet said: {self.broken})" if self.broken else "",
            )


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
