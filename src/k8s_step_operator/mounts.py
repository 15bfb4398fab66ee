"""PURE: what a step's main container mounts besides its own pod settings.

Two settings feed it, both plain JSON data so that ZenML's merge of
pipeline-level and step-level settings (maps merged key by key, ``None``
ignored) composes them:

- ``pvolumes`` (KFP's PipelineVolume): mount path -> a string (a step input
  holding a PVC name, else a PVC name; the original form) or a mapping with
  exactly one source — ``input`` (a step input holding a PVC name: an upstream
  step's output, which also orders the steps), ``claim`` (an existing PVC) or
  ``volume`` (any Kubernetes volume source: ``emptyDir``, ``configMap``,
  ``secret``, ...) — and optionally ``sub_path`` and ``read_only``.
- ``workspaces`` (KFP-Tekton's pipeline workspaces): name -> a mapping with
  exactly one source — ``claim``, ``volume`` or ``claim_template`` (a
  ``PersistentVolumeClaimSpec``: one claim per run, named after the run) —
  and ``mount_path`` (default ``/workspace/<name>``), ``sub_path`` (may hold
  ``{run}`` and ``{step}``) and ``read_only``.

Field rules are checked when settings are built (:func:`normalize_pvolume`,
:func:`normalize_workspace`); "exactly one source" for a workspace only once
pipeline and step settings are merged (:func:`workspace_problems`).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from k8s_step_operator.names import dns1123_label, text_hash
from k8s_step_operator.validation import (
    entry_path,
    field_path,
    is_model_object,
    to_api_dict,
    validate_dns1123_label,
    validate_dns1123_subdomain,
)

PVOLUME_SOURCES = ("input", "claim", "volume")
PVOLUME_FIELDS = (*PVOLUME_SOURCES, "sub_path", "read_only")
WORKSPACE_SOURCES = ("claim", "volume", "claim_template")
WORKSPACE_FIELDS = (*WORKSPACE_SOURCES, "mount_path", "sub_path", "read_only")
WORKSPACE_ROOT = "/workspace"
SUB_PATH_PLACEHOLDERS = ("run", "step")
_ALIASES = {"subPath": "sub_path", "readOnly": "read_only", "mountPath": "mount_path", "claimTemplate": "claim_template"}
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_INPUT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

PVolume = Union[str, Dict[str, Any]]


@dataclass(frozen=True)
class Mount:
    """One volume mounted into the main container (volume named ``<prefix>-<hash of the path>``)."""

    path: str
    source: Dict[str, Any]
    sub_path: Optional[str] = None
    read_only: bool = False
    prefix: str = "pvol"

    def volume(self) -> Dict[str, Any]:
        """The pod's ``volumes`` item."""
        return {"name": self.volume_name, **self.source}

    def volume_mount(self) -> Dict[str, Any]:
        """The main container's ``volumeMounts`` item."""
        mount: Dict[str, Any] = {"name": self.volume_name, "mountPath": self.path}
        if self.sub_path:
            mount["subPath"] = self.sub_path
        if self.read_only:
            mount["readOnly"] = True
        return mount

    @property
    def volume_name(self) -> str:
        return f"{self.prefix}-{text_hash(self.path)}"


# ----------------------------------------------------------------- field rules
def _keys(value: Any, where: str, allowed: tuple[str, ...]) -> Dict[str, Any]:
    if is_model_object(value):
        raise ValueError(f"{where}: expected a mapping of {', '.join(allowed)}")
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a mapping with one of its fields {', '.join(allowed)}, got {type(value).__name__}")
    result = {}
    for key, item in value.items():
        name = _ALIASES.get(key, key)
        if name not in allowed:
            raise ValueError(f"{field_path(where, str(key))}: unknown field; allowed: {', '.join(allowed)}")
        if item is not None:
            result[name] = item
    return result


def absolute_path(path: Any, where: str) -> str:
    """A mount path: absolute, normalised, not ``/``."""
    if not isinstance(path, str) or not path.startswith("/") or posixpath.normpath(path) == "/":
        raise ValueError(f"{where}: the mount path must be absolute, e.g. '/mnt/data' (got {path!r})")
    return posixpath.normpath(path)


def sub_path(value: Any, where: str, placeholders: tuple[str, ...] = ()) -> str:
    """A relative path inside the volume, without ``..``; ``{name}`` placeholders only from ``placeholders``."""
    if not isinstance(value, str) or not value.strip("/"):
        raise ValueError(f"{where}: expected a non-empty relative path, e.g. 'data/' (got {value!r})")
    if value.startswith("/") or ".." in value.split("/"):
        raise ValueError(f"{where}: must be a relative path inside the volume, without '..' (got {value!r})")
    for name in _PLACEHOLDER_RE.findall(value):
        if name not in placeholders:
            allowed = ", ".join(f"{{{p}}}" for p in placeholders) or "none"
            raise ValueError(f"{where}: unknown placeholder {{{name}}}; allowed: {allowed}")
    return value


def _read_only(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    return value


def volume_source(value: Any, where: str) -> Dict[str, Any]:
    """Any Kubernetes volume source (``{"emptyDir": {}}``, ``V1Volume(config_map=...)``); its name is ignored."""
    data = to_api_dict(value, "V1Volume", where) if is_model_object(value) else value
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a volume source such as {{'emptyDir': {{}}}}, got {type(value).__name__}")
    data = to_api_dict({**data, "name": "x"}, "V1Volume", where)
    data.pop("name", None)
    if len(data) != 1:
        found = ", ".join(sorted(data)) or "none"
        raise ValueError(
            f"{where}: give exactly one volume source (emptyDir, configMap, secret, persistentVolumeClaim, ...); "
            f"found: {found}"
        )
    return dict(data)


def _one_source(entry: Mapping[str, Any], where: str, sources: tuple[str, ...]) -> Optional[str]:
    given = [key for key in sources if key in entry]
    if not given:
        return f"{where}: give one of {', '.join(sources)}"
    if len(given) > 1:
        return f"{where}: give only one of {', '.join(sources)} (got {' and '.join(given)})"
    return None


def normalize_pvolume(path: Any, value: Any) -> tuple[str, PVolume]:
    """One ``pvolumes`` entry, checked: (mount path, source string or mapping of normalised fields)."""
    where = entry_path("pvolumes", path)
    mount_path = absolute_path(path, where)
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{where}: must name a step input or a PVC (a non-empty string)")
        return mount_path, value
    entry = _keys(value, where, PVOLUME_FIELDS)
    problem = _one_source(entry, where, PVOLUME_SOURCES)
    if problem:
        raise ValueError(problem)
    if "input" in entry and not (isinstance(entry["input"], str) and _INPUT_RE.match(entry["input"])):
        raise ValueError(f"{field_path(where, 'input')}: expected the name of a step input, got {entry['input']!r}")
    return mount_path, _check_shared_fields(entry, where, ())


def normalize_workspace(name: Any, value: Any) -> Dict[str, Any]:
    """One ``workspaces`` entry with its fields checked (its source may come from another level)."""
    where = entry_path("workspaces", name)
    if not isinstance(name, str):
        raise ValueError(f"{where}: a workspace name is a string")
    validate_dns1123_label(name, where)
    entry = _keys(value, where, WORKSPACE_FIELDS)
    if "mount_path" in entry:
        entry["mount_path"] = absolute_path(entry["mount_path"], field_path(where, "mount_path"))
    if "claim_template" in entry:
        entry["claim_template"] = claim_template(entry["claim_template"], field_path(where, "claim_template"))
    return _check_shared_fields(entry, where, SUB_PATH_PLACEHOLDERS)


def _check_shared_fields(entry: Dict[str, Any], where: str, placeholders: tuple[str, ...]) -> Dict[str, Any]:
    """``claim``, ``volume``, ``sub_path`` and ``read_only``, as pvolumes and workspaces share them."""
    if "claim" in entry:
        validate_dns1123_subdomain(entry["claim"], field_path(where, "claim"))
    if "volume" in entry:
        entry["volume"] = volume_source(entry["volume"], field_path(where, "volume"))
    if "sub_path" in entry:
        entry["sub_path"] = sub_path(entry["sub_path"], field_path(where, "sub_path"), placeholders)
    if "read_only" in entry:
        entry["read_only"] = _read_only(entry["read_only"], field_path(where, "read_only"))
    return entry


def claim_template(value: Any, where: str) -> Dict[str, Any]:
    """A ``PersistentVolumeClaimSpec`` that requests storage."""
    spec = to_api_dict(value, "V1PersistentVolumeClaimSpec", where)
    if not isinstance(spec, dict) or not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
        raise ValueError(f"{where}.resources.requests.storage: required, e.g. {{'requests': {{'storage': '1Gi'}}}}")
    spec.setdefault("accessModes", ["ReadWriteOnce"])
    return spec


# ------------------------------------------------------ rules across the levels
def workspace_problems(workspaces: Mapping[str, Mapping[str, Any]], pvolumes: Mapping[str, PVolume]) -> List[str]:
    """What is wrong once pipeline and step settings are merged: a workspace without exactly one source,
    two mounts at one path. Each as ``field: why``."""
    problems = []
    taken = {path: entry_path("pvolumes", path) for path in pvolumes}
    for name, entry in workspaces.items():
        where = entry_path("workspaces", name)
        problem = _one_source(entry, where, WORKSPACE_SOURCES)
        if problem:
            problems.append(problem)
        path = workspace_mount_path(name, entry)
        if path in taken:
            problems.append(f"{field_path(where, 'mount_path')}: {path!r} is already mounted by {taken[path]}")
        taken[path] = where
    return problems


def workspace_mount_path(name: str, entry: Mapping[str, Any]) -> str:
    return str(entry.get("mount_path") or f"{WORKSPACE_ROOT}/{name}")


def templated(workspaces: Mapping[str, Mapping[str, Any]]) -> List[str]:
    """Names of the workspaces whose claim is made per run from a template."""
    return [name for name, entry in workspaces.items() if "claim_template" in entry]


# ------------------------------------------------------------------ per run
def run_claim_name(run_name: str, run_id: str, workspace: str) -> str:
    """The per-run claim of a templated workspace: ``<run>-<workspace>-<hash of the run id>``."""
    return f"{dns1123_label(f'{run_name}-{workspace}', 54)}-{text_hash(run_id)}"


def run_claim(
    workspace: str, entry: Mapping[str, Any], name: str, namespace: str, labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> Dict[str, Any]:
    """The ``PersistentVolumeClaim`` made from a workspace's template for one run."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "annotations": {**annotations, "k8s-step-operator.zenml.io/workspace": workspace},
        },
        "spec": dict(entry["claim_template"]),
    }


def workspace_mounts(
    workspaces: Mapping[str, Mapping[str, Any]], run_claims: Mapping[str, str], run: str, step: str
) -> List[Mount]:
    """The mounts of a step's workspaces; ``run_claims``: workspace name -> its per-run claim."""
    mounts = []
    for name, entry in workspaces.items():
        if "claim" in entry:
            source: Dict[str, Any] = {"persistentVolumeClaim": {"claimName": entry["claim"]}}
        elif "volume" in entry:
            source = dict(entry["volume"])
        else:
            source = {"persistentVolumeClaim": {"claimName": run_claims[name]}}
        path = entry.get("sub_path")
        mounts.append(Mount(
            workspace_mount_path(name, entry), source,
            path.replace("{run}", dns1123_label(run)).replace("{step}", dns1123_label(step)) if path else None,
            bool(entry.get("read_only")), "ws",
        ))
    return mounts


def pvolume_inputs(pvolumes: Mapping[str, PVolume]) -> Dict[str, str]:
    """Mount path -> the step input a source names for sure (the mapping form's ``input``)."""
    return {path: src["input"] for path, src in pvolumes.items() if isinstance(src, Mapping) and "input" in src}


def pvolume_mounts(pvolumes: Mapping[str, PVolume], value_of: Callable[[str], Any]) -> List[Mount]:
    """The mounts of ``pvolumes``; ``value_of(name)`` is a step input's value (KeyError: no such input).

    A string names a step input if the step has one by that name, else a PVC. An input's value is a
    PVC name or a volume step's manifest (its ``metadata.name``).
    """
    mounts = []
    for path, source in pvolumes.items():
        where = entry_path("pvolumes", path)
        entry: Mapping[str, Any] = {"claim_or_input": source} if isinstance(source, str) else source
        if "volume" in entry:
            mounts.append(_mount(path, dict(entry["volume"]), entry))
            continue
        if "claim" in entry:
            claim = entry["claim"]
        elif "input" in entry:
            try:
                claim = _claim_of(value_of(entry["input"]), field_path(where, "input"), entry["input"])
            except KeyError:
                raise ValueError(f"{field_path(where, 'input')}: the step has no input {entry['input']!r}") from None
        else:
            try:
                claim = _claim_of(value_of(source), where, source)  # type: ignore[arg-type]
            except KeyError:
                claim = source
        validate_dns1123_subdomain(claim, where)
        mounts.append(_mount(path, {"persistentVolumeClaim": {"claimName": claim}}, entry))
    return mounts


def _mount(path: str, source: Dict[str, Any], entry: Mapping[str, Any]) -> Mount:
    return Mount(path, source, entry.get("sub_path"), bool(entry.get("read_only")))


def _claim_of(value: Any, where: str, name: str) -> str:
    if isinstance(value, Mapping):  # a volume step's manifest output
        value = (value.get("metadata") or {}).get("name", "")
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: input {name!r} must hold a PVC name (a string), got {type(value).__name__}")
    return value
