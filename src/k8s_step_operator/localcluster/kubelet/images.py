"""Image references: validation (InvalidImageName), normalisation and the node's image policy.

The process node ignores images for execution; it only pretends to hold the ones
matching its glob patterns so that pull failures behave like on a real node.
"""

from __future__ import annotations

import hashlib
import re
from fnmatch import fnmatchcase

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_COMPONENT}(?:/{_COMPONENT})*)(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)


class InvalidImageName(ValueError):
    """The reference cannot be parsed (the kubelet's InvalidImageName)."""


def parse(image: str) -> tuple[str, str | None, str | None]:
    """Split a reference into (name, tag, digest); raise InvalidImageName like the kubelet."""
    match = _REFERENCE.match(image)
    if not match:
        why = "invalid reference format"
        if image != image.lower() and _REFERENCE.match(image.lower()):
            why += ": repository name must be lowercase"
        raise InvalidImageName(f'Failed to apply default image tag "{image}": couldn\'t parse image name "{image}": {why}')
    return match.group("name"), match.group("tag"), match.group("digest")


def with_default_tag(image: str) -> str:
    """``python`` → ``python:latest`` (unless a tag or digest is present)."""
    name, tag, digest = parse(image)
    if tag is None and digest is None:
        return image + ":latest"
    return image


def normalise(image: str) -> str:
    """Docker's normalised name: ``python:3.11`` → ``docker.io/library/python:3.11``."""
    image = with_default_tag(image)
    first, _, rest = image.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        if not rest:
            return "docker.io/library/" + image
        return "docker.io/" + image
    return image


def image_id(image: str) -> str:
    """A stable fake content digest for the image the node 'has'."""
    full = normalise(image)
    name = full.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return f"{name}@sha256:{hashlib.sha256(full.encode()).hexdigest()}"


class ImagePolicy:
    """Which images this node has: glob patterns matched against the reference as given and normalised."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = list(patterns)

    def present(self, image: str) -> bool:
        full = normalise(image)
        familiar = full.removeprefix("docker.io/library/").removeprefix("docker.io/")
        candidates = {image, with_default_tag(image), full, familiar}
        return any(fnmatchcase(c, p) for c in candidates for p in self.patterns)

    @staticmethod
    def pull_error(image: str) -> str:
        full = normalise(image)
        return (
            f'failed to pull and unpack image "{full}": failed to resolve reference "{full}": '
            f"pull access denied, repository does not exist or may require authorization: {full}: not found "
            "(process node: the image matches none of the node's image patterns)"
        )
