"""KFP's flip-coin condition sample in ZenML: CEL steps drive a dynamic pipeline's branches.

The KFP v1 original (``samples/core/condition/condition.py``), with the step
after both branches from the KFP-Tekton guide::

    flip = flip_coin_op()
    with dsl.Condition(flip.output == 'heads'):
        random_num_head = get_random_int_op(0, 9)
        with dsl.Condition(random_num_head.output > 5):
            print_op('heads and %s > 5!' % random_num_head.output)
        with dsl.Condition(random_num_head.output <= 5):
            print_op('heads and %s <= 5!' % random_num_head.output)
    with dsl.Condition(flip.output == 'tails'):
        random_num_tail = get_random_int_op(10, 19)
        ...                                             # > 15 / <= 15
    print_op('after random_num_head random_num_tail').after(random_num_head, random_num_tail)

KFP-Tekton writes each condition as a CEL custom task (``CEL_ConditionOp``).
Here each is a :func:`cel_step` over pipeline values — the coin (an upstream
output), the random number and the thresholds (pipeline parameters) — whose
``outcome`` :func:`run_when` reads to run or skip a branch. As in Tekton, the
step after both branches depends on a skipped one, so it is skipped, not run.
The coin, number and message steps run in pods on the ``k8s`` step operator.

Run it from a ZenML repository whose active stack has a ``k8s`` step operator::

    python kfp_flip_coin_conditions.py [--coin heads|tails|random ...] [--step-operator NAME] [--image IMAGE]

(also ``K8SSO_STEP_OPERATOR``, ``K8SSO_IMAGE``). It prints ``RESULT {...}`` with one entry per coin.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from typing import Any, Optional

from zenml import pipeline, step
from zenml.config import DockerSettings

from k8s_step_operator.steps import cel_step, run_when
from k8s_step_operator.steps.flow import skipped_steps


def _options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coin", nargs="+", default=["random"], choices=["heads", "tails", "random"])
    parser.add_argument("--step-operator", default=os.environ.get("K8SSO_STEP_OPERATOR", "k8s-local"))
    parser.add_argument("--image", default=os.environ.get("K8SSO_IMAGE", "registry.k8sso.local/k8sso/step:latest"))
    return parser.parse_args(sys.argv[1:] if __name__ == "__main__" else [])


OPTIONS = _options()
POD = {"docker": DockerSettings(skip_build=True, parent_image=OPTIONS.image)}


@step(step_operator=OPTIONS.step_operator, settings=POD)
def flip_coin(forced: Optional[str] = None) -> str:
    """Heads or tails (``forced`` decides, for tests)."""
    result = forced or random.choice(["heads", "tails"])
    print(f"flipped {result}")
    return result


@step(step_operator=OPTIONS.step_operator, settings=POD)
def get_random_int(low: int, high: int) -> int:
    """A random integer in [low, high]."""
    value = random.randint(low, high)
    print(f"random number {value}")
    return value


@step(step_operator=OPTIONS.step_operator, settings=POD)
def print_msg(msg: str, num: Optional[int] = None) -> str:
    """Print a message (``{}`` is replaced by ``num``)."""
    text = msg.format(num)
    print(text)
    return text


# The conditions, compiled now: a typo fails here, before any run.
is_heads = cel_step("flip == 'heads'", name="condition_heads")
is_tails = cel_step("flip == 'tails'", name="condition_tails")
above = cel_step("num > threshold", name="condition_above")
at_most = cel_step("num <= threshold", name="condition_at_most")


@pipeline(dynamic=True, enable_cache=False, settings=POD)
def flipcoin(coin: str = "", heads_threshold: int = 5, tails_threshold: int = 15) -> None:
    """Shows how conditions over pipeline values branch a run (KFP's ``dsl.Condition``)."""
    flip = flip_coin(coin or None)
    outcomes: dict[str, Any] = {}

    head = run_when(get_random_int, 0, 9, when=is_heads(flip=flip, id="condition_heads"), id="random_num_head")
    outcomes["random_num_head"] = head
    for cond, word, msg in ((above, "above", "heads and {} > 5!"), (at_most, "at_most", "heads and {} <= 5!")):
        check = run_when(cond, num=head, threshold=heads_threshold, id=f"condition_head_{word}")
        outcomes[f"print_head_{word}"] = run_when(print_msg, msg, head, when=check, id=f"print_head_{word}")

    tail = run_when(get_random_int, 10, 19, when=is_tails(flip=flip, id="condition_tails"), id="random_num_tail")
    outcomes["random_num_tail"] = tail
    for cond, word, msg in ((above, "above", "tails and {} > 15!"), (at_most, "at_most", "tails and {} <= 15!")):
        check = run_when(cond, num=tail, threshold=tails_threshold, id=f"condition_tail_{word}")
        outcomes[f"print_tail_{word}"] = run_when(print_msg, msg, tail, when=check, id=f"print_tail_{word}")

    outcomes["print_after_both"] = run_when(
        print_msg, "after random_num_head random_num_tail", after=[head, tail], id="print_after_both"
    )
    SKIPPED.append(skipped_steps(outcomes))


SKIPPED: list[dict[str, str]] = []


if __name__ == "__main__":
    from zenml.client import Client

    report = []
    for coin in OPTIONS.coin:
        run = Client().get_pipeline_run(flipcoin(coin="" if coin == "random" else coin).id)
        outputs = {name: {k: a[0].load() for k, a in s.outputs.items()} for name, s in run.steps.items()}
        report.append({
            "coin": coin,
            "status": str(run.status.value),
            "ran": sorted(run.steps),
            "outputs": {name: out.get("output", out.get("outcome")) for name, out in outputs.items()},
            "skipped": SKIPPED[-1] if SKIPPED else {},
        })
    print("RESULT " + json.dumps(report))
