"""A pod's volumes on the host, ready to be bind-mounted into its containers.

emptyDir is a directory under the pod's state dir (medium Memory: a tmpfs mounted in
the agent's private mount namespace, so the host never sees it and it dies with the
agent); hostPath and claims resolve to host paths; configMap, secret, downwardAPI and
projected volumes are rendered with the kubelet's atomic writer (``..data`` symlink
swap) on a tmpfs, re-rendered on ``refresh()``, and service-account tokens are renewed
at 80 % of their lifetime. Failures raise ``VolumeError`` with the kubelet's wording.
With the pod's ``fsGroup``, emptyDir and API-data volumes belong to that group (setgid
directories, group read, emptyDir group write) and projected tokens are 0600 owned by
the runAsUser all the pod's containers share, as the kubelet does; hostPath and claims
are left as they are.
"""

from __future__ import annotations

import base64
import ctypes
import logging
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from . import security
from .envvars import ConfigError, field_value, resource_value
from .objects import ApiObjects, ObjectReadError
from .quantity import parse_quantity

log = logging.getLogger(__name__)
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
MS_NOSUID, MS_NODEV, MNT_DETACH = 2, 4, 2
TOKEN_MAX_AGE = 24 * 3600.0
API_DATA = ("configMap", "secret", "downwardAPI", "projected")


class VolumeError(Exception):
    """A volume could not be set up (the kubelet's FailedMount)."""


@dataclass
class HostVolume:
    path: Path
    readonly: bool = False
    is_file: bool = False


def mount_tmpfs(path: Path, size: int | None = None, mode: int = 0o755) -> bool:
    """Mount a tmpfs at ``path`` (in this process's mount namespace); False if not permitted."""
    opts = f"mode={mode:o}" + (f",size={size}" if size else "")
    rc = _libc.mount(b"tmpfs", str(path).encode(), b"tmpfs", ctypes.c_ulong(MS_NOSUID | MS_NODEV), opts.encode())
    if rc != 0:
        log.debug("tmpfs on %s: %s", path, os.strerror(ctypes.get_errno()))
        return False
    return True


def unmount(path: Path) -> None:
    _libc.umount2(str(path).encode(), MNT_DETACH)


def is_mountpoint(path: Path) -> bool:
    try:
        return os.path.ismount(path)
    except OSError:
        return False


# ----------------------------------------------------------------- atomic writer
def _current_files(target: Path) -> dict[str, tuple[bytes, int]]:
    data = target / "..data"
    files: dict[str, tuple[bytes, int]] = {}
    if not data.exists():
        return files
    base = data.resolve()
    for dirpath, _dirs, names in os.walk(base):
        for name in names:
            full = Path(dirpath) / name
            files[str(full.relative_to(base))] = (full.read_bytes(), stat.S_IMODE(full.stat().st_mode))
    return files


def _chown(path: Path, uid: int, gid: int) -> bool:
    try:
        os.chown(path, uid, gid)
        return True
    except OSError as exc:  # an agent without root: the volume keeps the agent's ownership
        log.warning("cannot give %s to uid %d gid %d: %s", path, uid, gid, exc)
        return False


def share_dir(path: Path, gid: int, mask: int) -> None:
    """fsGroup on a directory: group ``gid``, ``mask`` bits added (with setgid: new files get the group)."""
    if _chown(path, -1, gid):
        path.chmod(stat.S_IMODE(path.stat().st_mode) | mask | stat.S_ISGID)


def write_atomic(target: Path, files: dict[str, tuple[bytes, int]], gid: int | None = None,
                 uids: dict[str, int] | None = None) -> bool:
    """Publish ``files`` (relative path → (content, mode)) in ``target``; False if nothing changed.

    With ``gid`` (fsGroup) everything written belongs to that group; ``uids`` names owners of files.
    """
    target.mkdir(parents=True, exist_ok=True)
    if (target / "..data").exists() and _current_files(target) == files:
        return False
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + f"{time.time_ns() % 10**9:09d}"
    new_dir = target / stamp
    new_dir.mkdir(mode=0o755)
    owners = uids or {}
    for rel, (content, mode) in files.items():
        path = new_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        path.write_bytes(content)
        path.chmod(mode)
        if gid is not None or rel in owners:
            _chown(path, owners.get(rel, -1), -1 if gid is None else gid)
    if gid is not None:
        for directory in [target, new_dir, *(p for p in new_dir.rglob("*") if p.is_dir())]:
            share_dir(directory, gid, 0o550)
    old = os.readlink(target / "..data") if (target / "..data").is_symlink() else None
    tmp_link = target / "..data_tmp"
    tmp_link.unlink(missing_ok=True)
    os.symlink(stamp, tmp_link)
    os.replace(tmp_link, target / "..data")
    top = {rel.split("/", 1)[0] for rel in files}
    for name in top:
        link = target / name
        if not link.is_symlink():
            os.symlink(f"..data/{name}", link)
    for entry in target.iterdir():
        if not entry.name.startswith("..") and entry.name not in top and entry.is_symlink():
            entry.unlink()
    if old:
        shutil.rmtree(target / old, ignore_errors=True)
    return True


# -------------------------------------------------------------- content builders
def _mode(item: dict, default: int) -> int:
    return int(item["mode"]) if item.get("mode") is not None else default


def _kv_files(kind: str, obj: dict | None, ref: dict, default: int) -> dict[str, tuple[bytes, int]]:
    name = ref.get("name", "") if kind == "configmap" else ref.get("secretName") or ref.get("name", "")
    if obj is None:
        if ref.get("optional"):
            return {}
        raise VolumeError(f'{kind} "{name}" not found')
    if kind == "secret":
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    else:
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    items = ref.get("items")
    if not items:
        return {k: (v, default) for k, v in data.items()}
    files = {}
    for item in items:
        if item["key"] not in data:
            if ref.get("optional"):
                continue
            what = "config key" if kind == "configmap" else "secret key"
            raise VolumeError(f"{kind} references non-existent {what}: {item['key']}")
        files[item["path"]] = (data[item["key"]], _mode(item, default))
    return files


def _downward_files(pod: dict, items: list[dict], default: int, allocatable: dict) -> dict[str, tuple[bytes, int]]:
    files = {}
    for item in items:
        try:
            if "fieldRef" in item:
                value = field_value(pod, item["fieldRef"]["fieldPath"])
            else:
                ref = item["resourceFieldRef"]
                value = resource_value(pod, ref.get("containerName", ""), ref["resource"], ref.get("divisor"),
                                       allocatable)
        except ConfigError as exc:
            raise VolumeError(str(exc)) from exc
        files[item["path"]] = (value.encode(), _mode(item, default))
    return files


class PodVolumes:
    """Sets up, refreshes and tears down one pod's volumes."""

    def __init__(self, pod: dict, pod_dir: Path, objects: ApiObjects, allocatable: dict, tmpfs: bool = False) -> None:
        self.pod = pod
        self.tmpfs = tmpfs  # only where mounts die with the agent (its private mount namespace)
        self.dir = pod_dir / "volumes"
        self.objects = objects
        self.allocatable = allocatable
        self.paths: dict[str, HostVolume] = {}
        self.fs_group, self.fs_user = security.fs_group(pod), security.fs_user(pod)
        self._tokens: dict[tuple[str, int], tuple[str, float, float]] = {}

    @property
    def namespace(self) -> str:
        return self.pod["metadata"]["namespace"]

    def setup(self) -> None:
        """Prepare every volume not yet prepared; raise VolumeError for the first that fails."""
        for vol in self.pod["spec"].get("volumes") or []:
            if vol["name"] in self.paths:
                continue
            try:
                self.paths[vol["name"]] = self._setup_one(vol)
            except ObjectReadError as exc:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{vol["name"]}" : {exc}') from exc
            except VolumeError as exc:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{vol["name"]}" : {exc}') from exc

    def _setup_one(self, vol: dict) -> HostVolume:
        name = vol["name"]
        if "emptyDir" in vol:
            return self._empty_dir(name, vol["emptyDir"] or {})
        if "hostPath" in vol:
            return self._host_path(vol["hostPath"])
        if "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"]
            return self._claim(claim["claimName"], bool(claim.get("readOnly")))
        if "ephemeral" in vol:
            return self._claim(f"{self.pod['metadata']['name']}-{name}", False)
        for kind in API_DATA:
            if kind in vol:
                path = self.dir / name
                path.mkdir(parents=True, exist_ok=True)
                if self.tmpfs and not is_mountpoint(path):
                    mount_tmpfs(path)
                self._render(vol)
                return HostVolume(path, readonly=True)
        kinds = sorted(k for k in vol if k != "name")
        raise VolumeError(f"unsupported volume type {kinds}: a process node supports emptyDir, hostPath, "
                          "persistentVolumeClaim, ephemeral, configMap, secret, downwardAPI and projected")

    def _empty_dir(self, name: str, spec: dict) -> HostVolume:
        path = self.dir / name
        path.mkdir(parents=True, exist_ok=True)
        if spec.get("medium") == "Memory" and not is_mountpoint(path):
            size = int(parse_quantity(spec["sizeLimit"])) if spec.get("sizeLimit") else None
            if not self.tmpfs or not mount_tmpfs(path, size, 0o777):
                log.warning("emptyDir %s: tmpfs not permitted; using a plain directory", name)
        path.chmod(0o777)
        if self.fs_group is not None:
            share_dir(path, self.fs_group, 0o770)
        return HostVolume(path)

    @staticmethod
    def _host_path(spec: dict) -> HostVolume:
        path = Path(spec["path"])
        kind = spec.get("type") or ""
        if kind == "DirectoryOrCreate" and not path.exists():
            path.mkdir(parents=True, mode=0o755)
        elif kind == "FileOrCreate" and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o644)
        checks = {
            "Directory": (path.is_dir, "is not a directory"),
            "DirectoryOrCreate": (path.is_dir, "is not a directory"),
            "File": (path.is_file, "is not a file"),
            "FileOrCreate": (path.is_file, "is not a file"),
            "Socket": (path.is_socket, "is not a socket file"),
            "CharDevice": (path.is_char_device, "is not a character device"),
            "BlockDevice": (path.is_block_device, "is not a block device"),
        }
        if kind in checks:
            ok, why = checks[kind]
            if not ok():
                raise VolumeError(f"hostPath type check failed: {path} {why}")
        elif not path.exists():
            raise VolumeError(f"hostPath {path} does not exist")
        return HostVolume(path, is_file=path.is_file())

    def _claim(self, claim: str, readonly: bool) -> HostVolume:
        pvc = self.objects.pvc(self.namespace, claim)
        if pvc is None:
            raise VolumeError(f'persistentvolumeclaim "{claim}" not found')
        phase = (pvc.get("status") or {}).get("phase", "")
        volume = (pvc.get("spec") or {}).get("volumeName", "")
        if phase != "Bound" or not volume:
            raise VolumeError(f'PVC {self.namespace}/{claim} has non-bound phase ("{phase}") or empty '
                              f'pvc.Spec.VolumeName ("{volume}")')
        pv = self.objects.pv(volume)
        if pv is None:
            raise VolumeError(f'persistentvolume "{volume}" not found')
        spec = pv.get("spec") or {}
        source = (spec.get("hostPath") or {}).get("path") or (spec.get("local") or {}).get("path")
        if not source:
            kinds = sorted(k for k in spec if k not in ("accessModes", "capacity", "claimRef", "storageClassName",
                                                        "persistentVolumeReclaimPolicy", "volumeMode", "mountOptions",
                                                        "nodeAffinity"))
            raise VolumeError(f"persistent volume {volume} has an unsupported source {kinds}: "
                              "a process node mounts hostPath and local volumes")
        path = Path(source)
        if not path.exists() and "hostPath" in spec:
            path.mkdir(parents=True, mode=0o777, exist_ok=True)
        if not path.exists():
            raise VolumeError(f"path {path} of persistent volume {volume} does not exist")
        return HostVolume(path, readonly=readonly, is_file=path.is_file())

    # ------------------------------------------------------------ API data
    def _render(self, vol: dict) -> None:
        name = vol["name"]
        if "configMap" in vol:
            ref = vol["configMap"]
            files = _kv_files("configmap", self.objects.configmap(self.namespace, ref.get("name", "")), ref,
                              ref.get("defaultMode", 0o644))
        elif "secret" in vol:
            ref = vol["secret"]
            files = _kv_files("secret", self.objects.secret(self.namespace, ref.get("secretName", "")), ref,
                              ref.get("defaultMode", 0o644))
        elif "downwardAPI" in vol:
            ref = vol["downwardAPI"]
            files = _downward_files(self.pod, ref.get("items") or [], ref.get("defaultMode", 0o644), self.allocatable)
        else:
            files = self._projected(vol["projected"])
        if self.fs_group is not None:
            files = {rel: (content, mode | 0o440) for rel, (content, mode) in files.items()}
        tokens = [s["serviceAccountToken"]["path"] for s in (vol.get("projected") or {}).get("sources") or []
                  if "serviceAccountToken" in s]
        uids = {path: self.fs_user for path in tokens} if self.fs_user is not None else {}
        write_atomic(self.dir / name, files, self.fs_group, uids)

    def _projected(self, spec: dict) -> dict[str, tuple[bytes, int]]:
        default = spec.get("defaultMode", 0o644)
        files: dict[str, tuple[bytes, int]] = {}
        for source in spec.get("sources") or []:
            if "configMap" in source:
                ref = source["configMap"]
                files.update(_kv_files("configmap", self.objects.configmap(self.namespace, ref.get("name", "")), ref,
                                       default))
            elif "secret" in source:
                ref = source["secret"]
                files.update(_kv_files("secret", self.objects.secret(self.namespace, ref.get("name", "")), ref,
                                       default))
            elif "downwardAPI" in source:
                files.update(_downward_files(self.pod, source["downwardAPI"].get("items") or [], default,
                                             self.allocatable))
            elif "serviceAccountToken" in source:
                tok = source["serviceAccountToken"]
                token = self._token(tok.get("audience") or "", int(tok.get("expirationSeconds") or 3600))
                private = self.fs_user is not None or self.fs_group is not None  # the kubelet's 0600 then
                files[tok["path"]] = (token.encode(), 0o600 if private else default)
            else:
                raise VolumeError(f"unsupported projected source {sorted(source)} on a process node")
        return files

    def _token(self, audience: str, expiration: int) -> str:
        key = (audience, expiration)
        cached = self._tokens.get(key)
        if cached is None or time.time() >= self._token_due(cached):
            cached = self.objects.token(self.pod, audience or None, expiration)
            self._tokens[key] = cached
        return cached[0]

    @staticmethod
    def _token_due(cached: tuple[str, float, float]) -> float:
        _token, issued, expires = cached
        return issued + min(0.8 * (expires - issued), TOKEN_MAX_AGE)

    def refresh(self) -> float:
        """Re-render API-data volumes (new config map/secret content, renewed tokens); next token due time."""
        for vol in self.pod["spec"].get("volumes") or []:
            if vol["name"] in self.paths and any(k in vol for k in API_DATA):
                try:
                    self._render(vol)
                except (VolumeError, ObjectReadError) as exc:
                    log.warning("refreshing volume %s of %s/%s: %s", vol["name"], self.namespace,
                                self.pod["metadata"]["name"], exc)
        return min((self._token_due(t) for t in self._tokens.values()), default=time.time() + TOKEN_MAX_AGE)

    def teardown(self) -> None:
        """Unmount the pod's tmpfs volumes and delete the pod's volume directories."""
        if not self.dir.exists():
            return
        for entry in self.dir.iterdir():
            if is_mountpoint(entry):
                unmount(entry)
        shutil.rmtree(self.dir, ignore_errors=True)
