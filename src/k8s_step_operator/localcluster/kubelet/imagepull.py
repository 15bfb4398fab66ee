"""Image 'pulls' on a process node: the kubelet's waiting reasons, events and back-off, without registries."""

from __future__ import annotations

from typing import Callable

from . import images
from .status import ContainerRecord

Emit = Callable[[str, str, str], None]  # (type, reason, message)


def ensure_image(rec: ContainerRecord, container: dict, policy: images.ImagePolicy, emit: Emit, now: float,
                 backoff_initial: float, backoff_max: float) -> tuple[bool, float | None]:
    """(image ready, when to look again); sets InvalidImageName/ErrImageNeverPull/ErrImagePull/ImagePullBackOff."""
    image = container.get("image", "")
    try:
        _name, tag, digest = images.parse(image)
    except images.InvalidImageName as exc:
        rec.wait("InvalidImageName", str(exc))
        emit("Warning", "InspectFailed", str(exc))
        emit("Warning", "Failed", "Error: InvalidImageName")
        return False, now + 60
    pull = container.get("imagePullPolicy") or ("Always" if tag in (None, "latest") and not digest else "IfNotPresent")
    present = policy.present(image)
    if pull == "Never" and not present:
        msg = f'Container image "{image}" is not present with pull policy of Never'
        rec.wait("ErrImageNeverPull", msg)
        emit("Warning", "ErrImageNeverPull", msg)
        emit("Warning", "Failed", "Error: ErrImageNeverPull")
        return False, now + 60
    if present:
        if pull == "Always":
            emit("Normal", "Pulling", f'Pulling image "{image}"')
            emit("Normal", "Pulled", f'Successfully pulled image "{image}" in 0s (0s including waiting). '
                 "Image size: 0 bytes.")
        else:
            emit("Normal", "Pulled", f'Container image "{image}" already present on machine')
        rec.extra.pop("pull_backoff", None)
        return True, None
    error = policy.pull_error(image)
    until, delay = rec.extra.get("pull_backoff", (0.0, 0.0))
    if now < until:
        rec.wait("ImagePullBackOff", f'Back-off pulling image "{image}": ErrImagePull: {error}')
        emit("Normal", "BackOff", f'Back-off pulling image "{image}"')
        emit("Warning", "Failed", "Error: ImagePullBackOff")
        return False, until
    emit("Normal", "Pulling", f'Pulling image "{image}"')
    emit("Warning", "Failed", f'Failed to pull image "{image}": {error}')
    emit("Warning", "Failed", "Error: ErrImagePull")
    rec.wait("ErrImagePull", error)
    delay = backoff_initial if not delay else min(delay * 2, backoff_max)
    rec.extra["pull_backoff"] = (now + delay, delay)
    return False, now + 1.0  # show ImagePullBackOff while waiting, like the kubelet's next sync
