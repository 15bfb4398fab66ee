"""ZenML pipelines and orchestrator-side scripts for the drills, run in a subprocess from a
ZenML repo in a tmp dir (see ``test_zenml_drills.py``).

Usage: python drill_pipelines.py SCENARIO [args]
  slow FLAG RUN_NAME      a run whose operator step waits until FLAG exists (DRILL_TTL: its Job's TTL)
  status RUN_NAME         a fresh orchestrator process asks the operator for the step's status
  resume RUN_NAME         ... waits for it, cleans up, prints the run's status
  secretive RUN_NAME      a step using a ZenML secret and a sensitive step environment value
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

from zenml import pipeline, step
from zenml.config import DockerSettings

IMAGE = os.environ.get("K8SSO_TEST_IMAGE", "registry.k8sso.local/k8sso/step:latest")
OPERATOR = os.environ.get("K8SSO_OPERATOR", "k8s-drill")
DOCKER = DockerSettings(skip_build=True, parent_image=IMAGE)
SECRET_NAME = "drill-secret"


_TTL = os.environ.get("DRILL_TTL")


@step(
    step_operator=OPERATOR,
    settings={"docker": DOCKER, "step_operator": {"ttl_seconds_after_finished": int(_TTL)} if _TTL else {}},
)
def slow(flag: str) -> int:
    print("slow step started", flush=True)
    deadline = time.time() + 180
    while not os.path.exists(flag) and time.time() < deadline:
        time.sleep(0.2)
    print("slow step done" if os.path.exists(flag) else "slow step gave up", flush=True)
    return 42


@pipeline(enable_cache=False)
def slow_pipeline(flag: str) -> None:
    slow(flag)


def _digest(name: str) -> str:
    return hashlib.sha256(os.environ.get(name, "").encode()).hexdigest()


@step(
    step_operator=OPERATOR,
    secrets=[SECRET_NAME],
    environment={"DRILL_ENV_TOKEN": os.environ.get("DRILL_ENV_TOKEN", "")},
    settings={"docker": DOCKER, "step_operator": {"cleanup_policy": "keep"}},
)
def secretive() -> str:
    # never print a secret: only a digest, so the test can tell the values arrived
    for name in ("DRILL_SECRET_TOKEN", "DRILL_ENV_TOKEN"):
        print(f"sha256 {name} {_digest(name)}", flush=True)
    return "ok"


@pipeline(enable_cache=False)
def secretive_pipeline() -> None:
    secretive()


def _step_of(run_name: str):
    from zenml.client import Client

    client = Client()
    run = client.get_pipeline_run(run_name)
    return client, run, run.steps["slow"]


def main(argv: list[str]) -> int:
    scenario, args = argv[0], argv[1:]
    if scenario == "slow":
        flag, run_name = args
        run = slow_pipeline.with_options(run_name=run_name)(flag=flag)
        print(f"RUN-STATUS {run.status.value}", flush=True)
    elif scenario == "status":
        client, _run, step_run = _step_of(args[0])
        operator = client.active_stack.step_operator
        print(f"STEP-STATUS {operator.get_status(step_run).value}", flush=True)
    elif scenario == "resume":
        client, _run, step_run = _step_of(args[0])
        operator = client.active_stack.step_operator
        status = operator.wait(step_run)
        print(f"STEP-STATUS {status.value}", flush=True)
        operator.cleanup_step_submission(step_run)
        print(f"RUN-STATUS {client.get_pipeline_run(args[0]).status.value}", flush=True)
    elif scenario == "secretive":
        run = secretive_pipeline.with_options(run_name=args[0])()
        print(f"RUN-STATUS {run.status.value}", flush=True)
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
