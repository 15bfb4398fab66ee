"""securityContext on a process node: the user a container runs as, runAsNonRoot, fsGroup and fsUser.

A container's field wins over the pod's (``runAsUser``, ``runAsGroup``, ``runAsNonRoot``),
as in the kubelet. This node's "images" are the machine's own programs, so an image's
default user is root and ``/etc/passwd``/``/etc/group`` are the machine's.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Any

IMAGE_UID = 0  # the user every image on this node runs as unless runAsUser says otherwise


@dataclass(frozen=True)
class RunAs:
    """The credentials of a container's command: uid, primary gid and supplementary groups."""

    uid: int
    gid: int
    groups: tuple[int, ...]


def _pod_context(pod: dict) -> dict[str, Any]:
    return pod["spec"].get("securityContext") or {}


def effective(pod: dict, container: dict, field: str) -> Any:
    """A securityContext field as the container sees it: its own value, else the pod's."""
    own = (container.get("securityContext") or {}).get(field)
    return own if own is not None else _pod_context(pod).get(field)


def fs_group(pod: dict) -> int | None:
    value = _pod_context(pod).get("fsGroup")
    return int(value) if value is not None else None


def _passwd(uid: int) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwuid(uid)
    except KeyError:
        return None


def run_as(pod: dict, container: dict) -> RunAs | None:
    """The container's credentials; None when the pod sets none (it keeps the agent's)."""
    uid, gid = effective(pod, container, "runAsUser"), effective(pod, container, "runAsGroup")
    supplemental = [int(g) for g in _pod_context(pod).get("supplementalGroups") or []]
    group = fs_group(pod)
    if uid is None and gid is None and not supplemental and group is None:
        return None
    uid = IMAGE_UID if uid is None else int(uid)
    user = _passwd(uid)
    gid = int(gid) if gid is not None else (user.pw_gid if user else 0)
    groups = [gid, *(os.getgrouplist(user.pw_name, gid) if user else []), *supplemental]
    if group is not None:
        groups.append(group)
    return RunAs(uid, gid, tuple(dict.fromkeys(groups)))


def home_for(uid: int) -> str:
    """HOME for a user the image names no HOME for: its passwd entry, else ``/`` (as runc does)."""
    user = _passwd(uid)
    return user.pw_dir if user else "/"


def non_root_violation(pod: dict, container: dict) -> str | None:
    """The kubelet's refusal when ``runAsNonRoot`` cannot hold; None if the container may start."""
    if not effective(pod, container, "runAsNonRoot"):
        return None
    meta = pod["metadata"]
    where = f'(pod: "{meta["name"]}_{meta["namespace"]}({meta.get("uid", "")})", container: {container["name"]})'
    uid = effective(pod, container, "runAsUser")
    if uid is not None:
        return f"container's runAsUser breaks non-root policy {where}" if int(uid) == 0 else None
    return f"container has runAsNonRoot and image will run as root {where}"  # IMAGE_UID is 0


def fs_user(pod: dict) -> int | None:
    """The projected token's owner: the one runAsUser every (init) container shares, else None."""
    spec = pod["spec"]
    uids = {effective(pod, c, "runAsUser") for c in [*(spec.get("initContainers") or []), *spec.get("containers", [])]}
    if len(uids) != 1 or None in uids:
        return None
    return int(uids.pop())
