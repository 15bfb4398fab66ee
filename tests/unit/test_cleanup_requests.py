"""Which requests submit sends (a dry run unless the preflight checked the step, the Job; then, on a
sender thread, its Secret owned by it; on a refusal half-way the Job is deleted again), and which DELETE clean-up and cancel send. The Job owns its pods, Secret and Service, so removing a
step is one DELETE of the Job (garbage collection takes the rest); keeping the pods for debugging is
one DELETE of the Secret (the Job's TTL removes the pods later)."""

import datetime as dt

import pytest

from k8s_step_operator.pod_status import Phase, Verdict
from k8s_step_operator.settings import K8sStepOperatorSettings
from k8s_step_operator.step_operator import K8sStepOperator
from k8s_step_operator.submission import Submission


@pytest.fixture
def deletes(mocker):
    calls = []

    def record(self, settings, path, propagation="Background"):
        calls.append((path.split("/ns/")[1], propagation))

    mocker.patch.object(K8sStepOperator, "_delete", record)
    return calls


def sub(policy, phase, **settings):
    settings = K8sStepOperatorSettings(cleanup_policy=policy, **settings)
    return Submission("ns", "j", "s", settings, dt.datetime.now(dt.timezone.utc), verdict=Verdict(phase))


def operator_with(mocker, submission, pod_phases):
    watch = mocker.Mock()
    watch.select.return_value = [({"metadata": {"name": f"j-{i}"}, "status": {"phase": p}}, False) for i, p in enumerate(pod_phases)]
    mocker.patch.object(K8sStepOperator, "_watch", return_value=watch)
    mocker.patch.object(K8sStepOperator, "_locate", return_value=submission)
    operator = K8sStepOperator.__new__(K8sStepOperator)
    operator._known = {}
    return operator


JOB = ("jobs/j", "Background")  # the Job goes, and garbage collection takes its pods, Secret, Service
SECRET = ("secrets/j-env", "Background")  # only the Secret goes; the pods stay until the Job's TTL


@pytest.mark.parametrize(
    "policy, phase, pod_phases, expected",
    [
        ("delete-succeeded", Phase.SUCCEEDED, ["Succeeded"], [JOB]),
        ("delete-succeeded", Phase.FAILED, ["Failed"], [SECRET]),
        ("keep", Phase.SUCCEEDED, ["Succeeded"], [SECRET]),
        ("delete", Phase.FAILED, ["Failed"], [JOB]),
        # failed fast (image pull, startup timeout): keeping it would leave it Pending until the TTL
        ("delete-succeeded", Phase.FAILED, ["Pending"], [JOB]),
        ("delete-succeeded", Phase.FAILED, [], [JOB]),
        # one pod of two failed after running: worth keeping
        ("delete-succeeded", Phase.FAILED, ["Failed", "Pending"], [SECRET]),
    ],
)
def test_cleanup_deletes(mocker, deletes, policy, phase, pod_phases, expected):
    operator = operator_with(mocker, sub(policy, phase), pod_phases)
    operator.cleanup_step_submission(mocker.Mock(id="run-1"))
    assert deletes == expected


def test_cancel_deletes_the_job(mocker, deletes):
    operator = operator_with(mocker, sub("keep", Phase.RUNNING), ["Running"])
    operator.cancel(mocker.Mock(id="run-1"))
    assert deletes == [JOB]


# ------------------------------------------------------------------ submit's requests
@pytest.fixture
def sent(monkeypatch):
    """``kube.rest.request`` answered like an API server; ``fail`` names a path suffix to refuse."""
    from kubernetes.client.exceptions import ApiException

    from k8s_step_operator.kube import rest

    calls, fail = [], set()

    def fake(api, method, path, query=None, body=None, **kwargs):
        calls.append((method, path.split("/ns/")[1], dict(query or {})))
        if any(path.endswith(f) and method == "POST" for f in fail):
            raise ApiException(status=422, reason="Unprocessable Entity")
        if method == "POST":
            return {**body, "metadata": {**body["metadata"], "uid": "u-1"}}
        return {**(body or {}), "metadata": {"name": path.rsplit("/", 1)[1]}}

    monkeypatch.setattr(rest, "request", fake)
    yield calls, fail
    while _SUBMITTERS:  # a batch still lingering sends its Secret here, not into the next test's fake
        pool = _SUBMITTERS.pop()._sender_pool
        if pool is not None:
            pool.shutdown(wait=True)


def _job(pod_count=1, name="train", **settings):
    from k8s_step_operator import jobs, manifest

    settings = K8sStepOperatorSettings(pod_count=pod_count, **settings)
    identity = manifest.StepIdentity("run", "pipe", name, "0f8fad5b-d9cb-469f-a165-70867728950e")
    pod = manifest.build_pod(settings, identity, "img", ["true"], "ns")
    job = jobs.build_job(pod, name, ttl_seconds_after_finished=60, pod_count=pod_count, queue_name=settings.queue_name)
    return settings, pod, job, manifest.build_env_secret(f"{name}-env", "ns", identity, {"A": "1"}, owner=name)


def _operator(mocker):
    import threading

    from k8s_step_operator.secret_batches import SecretBatches

    mocker.patch.object(K8sStepOperator, "api", new=object())  # rest.request is faked: any client does
    mocker.patch.object(K8sStepOperator, "_watch", return_value=mocker.Mock())
    operator = K8sStepOperator.__new__(K8sStepOperator)
    operator._batches, operator._senders_lock, operator._sender_pool = SecretBatches(), threading.Lock(), None
    return operator


def _follow(operator, settings, created, secret, sub=None):
    """What a sender thread does after submit returned: the (one-step) batch's Secret, then the Service."""
    sub = sub or Submission("ns", created["metadata"]["name"], "train", settings, dt.datetime.now(dt.timezone.utc), batched=True)
    batch = operator._batches.join(("ns", "run"), secret["metadata"]["name"])
    operator._post_batch(operator._batches.hand_in(batch, sub, created, secret))
    return sub


def test_submit_is_a_dry_run_then_the_job_then_its_secret_owned_by_it(sent, mocker):
    calls, _ = sent
    settings, pod, job, secret = _job()
    operator = _operator(mocker)
    operator._dry_run_pod(settings, pod, job)  # as _admit asks it for a step the preflight did not check
    _follow(operator, settings, operator.create_job(settings, job), secret)  # on a sender thread, after submit returned
    assert calls == [("POST", "pods", {"dryRun": "All"}), ("POST", "jobs", {}), ("POST", "secrets", {})]
    assert job["spec"]["suspend"] is False  # running at once: nothing to resume


def test_a_step_the_preflight_checked_is_two_requests(sent, mocker):
    calls, _ = sent
    settings, _pod, job, secret = _job()
    operator = _operator(mocker)
    _follow(operator, settings, operator.create_job(settings, job), secret)
    assert [(m, p) for m, p, _ in calls] == [("POST", "jobs"), ("POST", "secrets")]


def test_the_secret_is_owned_by_the_created_job(mocker):
    bodies = []

    def fake(api, method, path, query=None, body=None, **kwargs):
        bodies.append(body)
        return {**body, "metadata": {**body["metadata"], "uid": "job-uid"}}

    from k8s_step_operator.kube import rest

    mocker.patch.object(rest, "request", fake)
    settings, _pod, job, secret = _job()
    operator = _operator(mocker)
    _follow(operator, settings, operator.create_job(settings, job), secret)
    owner = bodies[1]["metadata"]["ownerReferences"]
    assert owner == [{"apiVersion": "batch/v1", "kind": "Job", "name": "train", "uid": "job-uid"}]


def test_several_pods_add_the_service_and_a_queue_leaves_the_job_to_kueue(sent, mocker):
    calls, _ = sent
    settings, pod, job, secret = _job(pod_count=2, queue_name="gpus")
    operator = _operator(mocker)
    operator._dry_run_pod(settings, pod, job)
    _follow(operator, settings, operator.create_job(settings, job), secret)
    assert [(m, p) for m, p, _ in calls] == [("POST", "pods"), ("POST", "jobs"), ("POST", "secrets"), ("POST", "services")]
    assert job["spec"]["suspend"] is True  # Kueue resumes it once admitted


def test_a_refused_secret_deletes_the_job_again_and_fails_the_step(sent, mocker):
    calls, fail = sent
    fail.add("/secrets")
    settings, _pod, job, secret = _job()
    operator = _operator(mocker)
    step = _follow(operator, settings, operator.create_job(settings, job), secret)
    assert step.refused.startswith("the API server refused the step's Secret: ")
    assert [(m, p) for m, p, _ in calls][-1] == ("DELETE", "jobs/train")  # garbage collection takes the rest
    assert step.follow_up is None or step.follow_up.done()


def test_the_reason_names_the_object_and_tells_a_refusal_from_a_transport_error(sent, mocker):
    """A refused Service of a multi-pod step is named as the Service; a Secret that never reached the
    API server is not called refused."""
    from k8s_step_operator.kube import rest

    calls, fail = sent
    fail.add("/services")
    settings, _pod, job, secret = _job(pod_count=2)
    operator = _operator(mocker)
    step = _follow(operator, settings, operator.create_job(settings, job), secret)
    assert step.refused.startswith("the API server refused the step's Service: ")
    assert step.refused.endswith(", so its job was deleted again")

    answered = rest.request

    def unreachable(api, method, path, query=None, body=None, **kwargs):
        if method == "POST" and path.endswith("/secrets"):
            raise ConnectionRefusedError(111, "Connection refused")
        return answered(api, method, path, query=query, body=body, **kwargs)

    mocker.patch.object(rest, "request", unreachable)
    lost = _follow(operator, settings, operator.create_job(settings, job), secret)
    assert lost.refused.startswith("the step's Secret could not be sent to the API server (ConnectionRefusedError: ")
    assert "refused the step's" not in lost.refused


def test_submit_returns_after_the_job_and_a_refused_secret_fails_the_step_and_wakes_its_waiters(sent, mocker):
    """The Secret is sent after submit returned: its refusal becomes the step's verdict, the Job is
    deleted again, and a waiter on the Job is woken (no pod may ever come to wake it)."""
    from k8s_step_operator.submission import judge

    calls, fail = sent
    fail.add("/secrets")
    settings, _pod, job, secret = _job()
    operator = _operator(mocker)
    watch = mocker.Mock()
    mocker.patch.object(K8sStepOperator, "_watch", return_value=watch)
    step = _follow(operator, settings, operator.create_job(settings, job), secret)
    assert [(m, p) for m, p, _ in calls] == [("POST", "jobs"), ("POST", "secrets"), ("DELETE", "jobs/train")]
    assert step.refused.startswith("the API server refused the step's Secret: ") and "Unprocessable Entity" in step.refused
    watch.poke.assert_called_once_with("train")
    verdict = judge(step, [], [])
    assert verdict.phase is Phase.FAILED and verdict.reason == step.refused


def test_steps_submitted_while_a_secret_is_out_share_the_next_one(sent, mocker):
    """One run's fan-out: the first step's Secret goes alone; the steps whose Jobs were created while it
    was out share the next Secret, owned by all their Jobs; a refusal of it fails each of them."""
    import threading

    from k8s_step_operator.kube import rest

    calls, _ = sent
    answered = rest.request
    out, release = threading.Event(), threading.Event()
    bodies = []

    def slow_first_secret(api, method, path, query=None, body=None, **kwargs):
        if method == "POST" and path.endswith("/secrets"):
            bodies.append(body)
            if len(bodies) == 1:
                out.set()
                release.wait(5)  # the first Secret is out while the others are created
            else:
                from kubernetes.client.exceptions import ApiException

                raise ApiException(status=422, reason="Unprocessable Entity")  # the second Secret is refused
        return answered(api, method, path, query=query, body=body, **kwargs)

    mocker.patch.object(rest, "request", slow_first_secret)
    operator = _operator(mocker)
    steps = []
    for name in ("a", "b", "c", "d"):
        settings, _pod, job, secret = _job(name=name)
        batch = operator._batches.join(("ns", "run"), secret["metadata"]["name"])
        from k8s_step_operator.submission import StepObjects, with_env_secret

        objects = with_env_secret(StepObjects("ns", name, {}, job, secret), batch.name)
        created = operator.create_job(settings, objects.job)
        sub = Submission("ns", name, name, settings, dt.datetime.now(dt.timezone.utc), env_secret=batch.name, batched=True)
        sub.follow_up = batch.done
        steps.append(sub)
        operator._send_batch(operator._batches.hand_in(batch, sub, created, secret))
        if name == "a":
            assert out.wait(5)
    release.set()
    for sub in steps:
        sub.follow_up.result(timeout=5)
    operator._sender_pool.shutdown(wait=True)
    assert [b["metadata"]["name"] for b in bodies] == ["a-env", "b-env"]
    assert [r["name"] for r in bodies[1]["metadata"]["ownerReferences"]] == ["b", "c", "d"]
    assert sorted(bodies[1]["stringData"]) == ["b.A", "c.A", "d.A"]
    assert [s.secret for s in steps] == ["a-env", "b-env", "b-env", "b-env"]
    assert steps[0].refused == "" and all(s.refused.startswith("the API server refused the step's Secret") for s in steps[1:])
    assert sorted(p for m, p, _ in calls if m == "DELETE") == ["jobs/b", "jobs/c", "jobs/d"]


def test_the_shared_secret_goes_once_every_step_reading_it_has_read_it(sent, mocker):
    calls, _ = sent
    operator = _operator(mocker)
    subs = []
    batch = operator._batches.join(("ns", "run"), "a-env")
    operator._batches.join(("ns", "run"), "b-env")
    for name in ("a", "b"):
        settings, _pod, job, secret = _job(name=name)
        sub = Submission("ns", name, name, settings, dt.datetime.now(dt.timezone.utc), env_secret="a-env", batched=True)
        subs.append(sub)
        ready = operator._batches.hand_in(batch, sub, operator.create_job(settings, job), secret)
    operator._post_batch(ready)
    operator._release_env(subs[0], now=True)
    assert not [p for m, p, _ in calls if m == "DELETE"]  # b's pod has not read it yet
    operator._release_env(subs[1], now=True)
    assert [p for m, p, _ in calls if m == "DELETE"] == ["secrets/a-env"]


def test_a_refused_dry_run_creates_nothing(sent, mocker):
    from kubernetes.client.exceptions import ApiException

    calls, fail = sent
    fail.add("/pods")
    with pytest.raises(ValueError, match=r"^step `\S+`: the step's Pod") as refused:
        settings, pod, job, _secret = _job()
        _operator(mocker)._dry_run_pod(settings, pod, job)
    assert isinstance(refused.value.__cause__, ApiException)
    assert calls == [("POST", "pods", {"dryRun": "All"})]


def test_api_requests_time_out_after_30_s_unless_set():
    assert K8sStepOperator._timeout(K8sStepOperatorSettings()) == 30.0
    assert K8sStepOperator._timeout(K8sStepOperatorSettings(api_request_timeout=5)) == 5.0


_SUBMITTERS: list = []  # the operators a test built, drained by ``sent``


def _submitter(mocker):
    """A real operator (built like ZenML builds it) whose watch and ZenML user are stand-ins."""
    import uuid

    from zenml.enums import StackComponentType

    from k8s_step_operator.flavor import K8sStepOperatorConfig
    from k8s_step_operator.submission import User

    now = dt.datetime.now()
    operator = K8sStepOperator(
        name="k8s", id=uuid.uuid4(), config=K8sStepOperatorConfig(kubernetes_namespace="ns"), flavor="k8s",
        type=StackComponentType.STEP_OPERATOR, user=None, created=now, updated=now,
    )
    mocker.patch.object(K8sStepOperator, "api", new=object())
    mocker.patch.object(K8sStepOperator, "_watch")
    mocker.patch("k8s_step_operator.step_operator._active_user", return_value=User("u"))
    _SUBMITTERS.append(operator)
    return operator


def _info(mocker, step: str, image: str = "img:1"):
    import uuid
    from types import SimpleNamespace

    return SimpleNamespace(
        pipeline_step_name=step, run_name="run", run_id=uuid.uuid4(), step_run_id=uuid.uuid4(),
        pipeline=SimpleNamespace(name="pipe"), snapshot=SimpleNamespace(project_id=uuid.uuid4()),
        config=SimpleNamespace(command=None, parameters={}), step_run=SimpleNamespace(regular_inputs={}),
        get_image=lambda key: image,
    )


def test_a_fan_out_of_one_step_is_dry_run_once_per_distinct_pod(sent, mocker):
    calls, _ = sent
    operator = _submitter(mocker)
    plain, big = K8sStepOperatorSettings(), K8sStepOperatorSettings(pod_settings={"resources": {"requests": {"cpu": "2"}}})
    for i in range(3):
        operator._submit(_info(mocker, f"fan-{i}"), ["true"], {"A": "1"}, plain)
    operator._submit(_info(mocker, "other-image", image="img:2"), ["true"], {}, plain)
    operator._submit(_info(mocker, "bigger"), ["true"], {}, big)
    dry_runs = [p for m, p, q in calls if q.get("dryRun")]
    # the first of the fan-out, another image, other settings: each a pod's and a Secret's dry run, side by side
    assert sorted(dry_runs) == ["pods"] * 3 + ["secrets"] * 3
    for step in operator._known.values():
        step.follow_up.result(timeout=5)  # each Secret follows its Job on a sender thread
    posts = [p for m, p, _ in calls if m == "POST" and not _.get("dryRun")]
    assert sorted(posts) == ["jobs"] * 5 + ["secrets"] * 5


def test_concurrent_submits_of_one_step_share_one_dry_run(sent, mocker):
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from k8s_step_operator.kube import rest

    calls, _ = sent
    answered = rest.request
    in_flight = []

    def slow(api, method, path, query=None, body=None, **kwargs):
        if (query or {}).get("dryRun") and path.endswith("/pods"):
            in_flight.append(threading.get_ident())
            time.sleep(0.2)  # the fan-out's other submits arrive while the first dry run is out
        return answered(api, method, path, query=query, body=body, **kwargs)

    mocker.patch.object(rest, "request", slow)
    operator = _submitter(mocker)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: operator._submit(_info(mocker, f"fan-{i}"), ["true"], {}, K8sStepOperatorSettings()),
                      range(8)))
    assert len(in_flight) == 1
    assert sum(1 for m, p, _ in calls if p == "jobs") == 8


def test_a_step_the_preflight_passed_is_not_dry_run_again(sent, mocker):
    calls, _ = sent
    operator = _submitter(mocker)
    settings = K8sStepOperatorSettings()
    operator._preflight_passed.add(operator._preflight_key("train", settings.model_dump_json()))
    operator._submit(_info(mocker, "train"), ["true"], {}, settings)
    operator._known.popitem()[1].follow_up.result(timeout=5)  # the Secret follows on a sender thread
    assert [(m, p) for m, p, _ in calls] == [("POST", "jobs"), ("POST", "secrets")]


def test_a_secret_the_dry_run_refuses_stops_submit_before_anything_exists(sent, mocker):
    """The Secret is sent after submit returns; its dry run (with the pod's) is what can still refuse the
    step while nothing exists — e.g. no permission to create secrets."""
    from kubernetes.client.exceptions import ApiException

    calls, fail = sent
    fail.add("/secrets")
    with pytest.raises(ApiException):
        _submitter(mocker)._submit(_info(mocker, "train"), ["true"], {}, K8sStepOperatorSettings())
    assert sorted((m, p, tuple(q.items())) for m, p, q in calls) == [
        ("POST", "pods", (("dryRun", "All"),)), ("POST", "secrets", (("dryRun", "All"),))
    ]


def test_the_pods_refusal_wins_over_the_secrets_and_both_dry_runs_end_before_submit_raises(sent, mocker):
    """The two dry runs go out side by side; the pod's refusal (it names the setting) is the one raised,
    and the Secret's dry run has finished by then (no thread left asking)."""
    import threading

    from k8s_step_operator.kube import rest

    calls, fail = sent
    fail.update({"/pods", "/secrets"})
    answered = rest.request
    both_out = threading.Barrier(2, timeout=5)

    def together(api, method, path, query=None, body=None, **kwargs):
        both_out.wait()  # fails unless the other dry run is in flight at the same time
        return answered(api, method, path, query=query, body=body, **kwargs)

    mocker.patch.object(rest, "request", together)
    with pytest.raises(ValueError, match="train"):
        _submitter(mocker)._submit(_info(mocker, "train"), ["true"], {}, K8sStepOperatorSettings())
    assert sorted(p for _, p, _ in calls) == ["pods", "secrets"]
    assert not [t for t in threading.enumerate() if t.name == "k8sso-dry-run"]


def test_a_template_the_preflight_passed_spares_its_dynamic_invocations_the_dry_run(sent, mocker):
    """A dynamic pipeline runs its steps under other names (``train_2``, ...) with their template's settings;
    the preflight dry-ran the template with the image it will run (a skipped build's parent image), so those
    submits make no dry run; one with another image does."""
    from types import SimpleNamespace

    calls, _ = sent
    operator = _submitter(mocker)
    settings = K8sStepOperatorSettings()
    mocker.patch.object(K8sStepOperator, "_settings", lambda self, container: settings)
    mocker.patch.object(K8sStepOperator, "_review_access", lambda self, *args: [])
    docker = SimpleNamespace(skip_build=True, parent_image="img:1")
    template = SimpleNamespace(
        config=SimpleNamespace(uses_step_operator=lambda name: True, command=None, docker_settings=docker, parameters={}),
        spec=SimpleNamespace(inputs={}),
    )
    operator._preflight(SimpleNamespace(step_configurations={"train": template}, pipeline_configuration=SimpleNamespace(name="pipe")))
    preflight_calls = len(calls)
    assert preflight_calls and all(q.get("dryRun") for _, _, q in calls)  # the template's objects, dry-run
    for i in (2, 3):
        operator._submit(_info(mocker, f"train_{i}"), ["true"], {"A": "1"}, settings)
    assert not [p for _, p, q in calls[preflight_calls:] if q.get("dryRun")]
    operator._submit(_info(mocker, "train_4", image="img:2"), ["true"], {}, settings)
    assert sorted(p for _, p, q in calls[preflight_calls:] if q.get("dryRun")) == ["pods", "secrets"]


def test_an_interrupted_follow_up_deletes_the_job_and_lets_the_interrupt_through(sent, mocker):
    from k8s_step_operator.kube import rest

    calls, _ = sent
    answered = rest.request

    def interrupted(api, method, path, query=None, body=None, **kwargs):
        if method == "POST" and path.endswith("/secrets"):
            raise KeyboardInterrupt
        return answered(api, method, path, query=query, body=body, **kwargs)

    mocker.patch.object(rest, "request", interrupted)
    settings, _pod, job, secret = _job()
    operator = _operator(mocker)
    created = operator.create_job(settings, job)
    with pytest.raises(KeyboardInterrupt):
        _follow(operator, settings, created, secret)
    assert [(m, p) for m, p, _ in calls][-1] == ("DELETE", "jobs/train")


def test_steps_submitted_back_to_back_from_one_thread_share_one_secret(sent, mocker):
    """Each submit returns after its Job's POST; the Secret lingers for the next step (one Secret for
    both), bounded far below the time the kubelet takes to reach the container."""
    calls, _ = sent
    operator = _submitter(mocker)
    operator._batches.quiet, operator._batches.max_linger = 1.0, 5.0  # however slow this machine is
    settings = K8sStepOperatorSettings()
    run_id = None
    for step in ("a", "b"):
        info = _info(mocker, step)
        info.run_id = run_id = run_id or info.run_id  # one run
        operator._preflight_passed.add(operator._preflight_key(step, settings.model_dump_json()))
        operator._submit(info, ["true"], {"TOKEN": step}, settings)
    futures = {sub.follow_up for sub in operator._known.values()}
    assert len(futures) == 1  # one batch
    futures.pop().result(timeout=5)
    assert [(m, p.split("/")[0]) for m, p, _ in calls] == [("POST", "jobs"), ("POST", "jobs"), ("POST", "secrets")]
