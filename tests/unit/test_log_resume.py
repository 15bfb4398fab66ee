"""Log resumption: no line twice, none lost, across reconnects."""

from k8s_step_operator.kube.logs import LogFollower


class FakeResp:
    def __init__(self, lines, fail_after=None):
        self.lines, self.fail_after = lines, fail_after

    def stream(self, amt=None, decode_content=False):
        for i, line in enumerate(self.lines):
            if self.fail_after is not None and i == self.fail_after:
                raise ConnectionError("dropped")
            yield (line + "\n").encode()

    def release_conn(self):
        pass


def test_reconnect_skips_already_printed_lines(mocker):
    lines = [
        "2026-01-01T00:00:01.000000001Z a",
        "2026-01-01T00:00:01.000000001Z b",  # same timestamp as a
        "2026-01-01T00:00:01.500000000Z c",
        "2026-01-01T00:00:02.000000000Z d",
    ]
    calls = []

    def fake_request(api, method, path, query, timeout=None, stream=False):
        calls.append(query.get("sinceTime"))
        if len(calls) == 1:
            return FakeResp(lines, fail_after=2)  # a and b printed, then a drop
        return FakeResp(lines)  # the server replays from the second

    mocker.patch("k8s_step_operator.kube.rest.request", side_effect=fake_request)
    mocker.patch("k8s_step_operator.kube.logs.threading.Event.wait", return_value=False)
    seen = []
    follower = LogFollower(None, "ns", "pod", "main", seen.append)
    follower.run_here()
    assert seen == ["a", "b", "c", "d"]
    assert calls == [None, "2026-01-01T00:00:01Z"]
    assert follower.reconnects == 1


def test_a_stream_the_kubelet_breaks_off_with_its_own_message_is_resumed_not_printed(mocker):
    """Seen with 500 steps on a node at its inotify limit: the kubelet ends the follow with a line of its own."""
    lines = ["2026-01-01T00:00:01.000000001Z token start", "2026-01-01T00:00:09.000000001Z token done"]
    calls = []

    def fake_request(api, method, path, query, timeout=None, stream=False):
        calls.append(query.get("sinceTime"))
        if len(calls) == 1:
            return FakeResp([lines[0], "failed to create fsnotify watcher: too many open files"])
        return FakeResp(lines)  # from the last second: the first line again (skipped), then the rest

    mocker.patch("k8s_step_operator.kube.rest.request", side_effect=fake_request)
    mocker.patch("k8s_step_operator.kube.logs.threading.Event.wait", return_value=False)
    seen = []
    follower = LogFollower(None, "ns", "pod", "main", seen.append)
    follower.run_here()
    assert seen == ["token start", "token done"]
    assert calls == [None, "2026-01-01T00:00:01Z"]
    assert follower.reconnects == 1 and "too many open files" in follower.broken


class BlockingResp(FakeResp):
    """A follow that delivers its lines, then blocks until shut down (a stream the kubelet has not ended)."""

    def __init__(self, lines):
        super().__init__(lines)
        import threading

        self.shut = threading.Event()

    def stream(self, amt=None, decode_content=False):
        yield from super().stream(amt, decode_content)
        assert self.shut.wait(10), "the follow was never shut down"
        raise ConnectionError("shut down")

    def shutdown(self):
        self.shut.set()


def test_an_interrupted_follow_ends_and_reads_once_only_the_lines_it_missed(mocker):
    import threading

    lines = ["2026-01-01T00:00:01.000000001Z a", "2026-01-01T00:00:01.000000001Z b", "2026-01-01T00:00:03.2Z c"]
    queries = []

    def fake_request(api, method, path, query, timeout=None, stream=False):
        queries.append((query.get("follow"), query.get("sinceTime")))
        if len(queries) == 1:
            return BlockingResp(lines[:2])
        return FakeResp(lines)  # the non-follow read from the last second: a and b again, then c

    mocker.patch("k8s_step_operator.kube.rest.request", side_effect=fake_request)
    seen = []
    follower = LogFollower(None, "ns", "pod", "main", seen.append)
    reader = threading.Thread(target=follower.run_here)
    reader.start()
    while len(seen) < 2:
        threading.Event().wait(0.01)
    follower.interrupt()
    follower.interrupt()  # again (each watch nudge may): no second read
    reader.join(5)
    assert not reader.is_alive() and follower.cut and follower.join(0)
    assert seen == ["a", "b", "c"] and follower.reconnects <= 1
    assert queries == [(True, None), (False, "2026-01-01T00:00:01Z")]  # no second follow


def test_a_follow_interrupted_before_it_began_reads_the_whole_log_once(mocker):
    lines = ["2026-01-01T00:00:01Z a", "2026-01-01T00:00:02Z b"]
    queries = []

    def fake_request(api, method, path, query, timeout=None, stream=False):
        queries.append(query.get("follow"))
        return FakeResp(lines)

    mocker.patch("k8s_step_operator.kube.rest.request", side_effect=fake_request)
    seen = []
    follower = LogFollower(None, "ns", "pod", "main", seen.append)
    follower.interrupt()  # the pod reported the container ended before anyone followed it
    follower.run_here()
    assert seen == ["a", "b"] and queries == [False]


def test_a_stopped_follow_reads_nothing_more(mocker):
    """stop() is for a step being cleaned up: nobody waits for its last lines."""
    request = mocker.patch("k8s_step_operator.kube.rest.request", return_value=FakeResp(["2026-01-01T00:00:01Z a"]))
    seen = []
    follower = LogFollower(None, "ns", "pod", "main", seen.append)
    follower.stop()
    follower.run_here()
    assert seen == [] and not request.called and follower.join(0)


def test_an_interrupt_after_the_stream_ended_by_itself_changes_nothing(mocker):
    lines = ["2026-01-01T00:00:01Z a"]
    mocker.patch("k8s_step_operator.kube.rest.request", return_value=FakeResp(lines))
    seen = []
    follower = LogFollower(None, "ns", "pod", "main", seen.append)
    follower.run_here()
    follower.interrupt()
    assert seen == ["a"] and not follower.cut


def test_the_rest_of_a_cut_log_is_read_on_the_lasting_reader_thread_not_the_followers(mocker):
    """The cut took the follow's connection: the new one's TLS handshake belongs in a lasting thread."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    lines = ["2026-01-01T00:00:01Z a", "2026-01-01T00:00:02Z b"]
    threads = []

    def fake_request(api, method, path, query, timeout=None, stream=False):
        threads.append((query.get("follow"), threading.current_thread().name))
        return FakeResp(lines)

    mocker.patch("k8s_step_operator.kube.rest.request", side_effect=fake_request)
    seen = []
    with ThreadPoolExecutor(1, thread_name_prefix="rest") as readers:
        follower = LogFollower(None, "ns", "pod", "main", seen.append, rest_reader=readers)
        follower.interrupt()
        follower.run_here()
    assert seen == ["a", "b"] and len(threads) == 1
    assert threads[0][0] is False and threads[0][1].startswith("rest")


def test_a_cut_log_is_read_here_when_the_reader_is_shut_down(mocker):
    """At interpreter exit the pool refuses new work: the rest is still read, in the follower's thread."""
    from concurrent.futures import ThreadPoolExecutor

    mocker.patch("k8s_step_operator.kube.rest.request", return_value=FakeResp(["2026-01-01T00:00:01Z a"]))
    readers = ThreadPoolExecutor(1)
    readers.shutdown()
    seen = []
    follower = LogFollower(None, "ns", "pod", "main", seen.append, rest_reader=readers)
    follower.interrupt()
    follower.run_here()
    assert seen == ["a"]
