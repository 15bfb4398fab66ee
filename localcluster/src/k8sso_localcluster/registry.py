"""The local OCI registry (Debian's ``docker-registry``, i.e. distribution v2) and pushes to it.

Every local cluster runs its own registry process on loopback over plain HTTP, all of them serving the
same storage directory under the cache; images are pushed once, when their inputs change
(``ensure_images``). The nodes' containerd resolves ``registry.k8sso.local`` to that process.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from . import processes
from .images import (
    BUILDERS,
    MEDIA_CONFIG,
    MEDIA_LAYER,
    MEDIA_MANIFEST,
    Image,
    _digest_file,
    record_current,
    registry_storage,
)

REGISTRY_BINARY = "docker-registry"


def registry_binary() -> str:
    found = shutil.which(REGISTRY_BINARY)
    if not found:
        raise FileNotFoundError("docker-registry is missing: apt-get install docker-registry (scripts/setup.sh does)")
    return found


def write_config(path: Path, port: int, storage: Path, read_only: bool = False) -> Path:
    """A distribution v2 configuration: filesystem storage, loopback, plain HTTP."""
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "maintenance": {"uploadpurging": {"enabled": False}, "readonly": {"enabled": read_only}},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def wait_ready(port: int, timeout: float = 30.0) -> None:
    def ok() -> bool:
        status, _, _ = request(port, "GET", "/v2/")
        return status == 200

    processes.wait_until(ok, timeout, interval=0.05, what=f"registry on 127.0.0.1:{port}")


def request(port: int, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _push_blob(port: int, repo: str, digest: str, data: bytes | Path, size: int) -> None:
    status, _, _ = request(port, "HEAD", f"/v2/{repo}/blobs/{digest}")
    if status == 200:
        return
    status, headers, body = request(port, "POST", f"/v2/{repo}/blobs/uploads/")
    if status != 202:
        raise RuntimeError(f"registry: starting an upload to {repo} answered {status}: {body[:300]!r}")
    location = urllib.parse.urlsplit(headers["location"])
    query = (location.query + "&" if location.query else "") + "digest=" + urllib.parse.quote(digest)
    payload = data.open("rb") if isinstance(data, Path) else data
    try:
        status, _, body = request(port, "PUT", f"{location.path}?{query}", body=payload,
                                  headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
    finally:
        if isinstance(data, Path):
            payload.close()
    if status != 201:
        raise RuntimeError(f"registry: upload of {digest} to {repo} answered {status}: {body[:300]!r}")


def push(port: int, image: Image) -> str:
    """Push layers, config and manifest; tag it with every tag. Returns the manifest digest."""
    repo = f"k8sso/{image.repository}"
    layers = []
    for layer in image.layers:
        digest, size = _digest_file(layer), layer.stat().st_size
        _push_blob(port, repo, digest, layer, size)
        layers.append({"mediaType": MEDIA_LAYER, "digest": digest, "size": size})
    config = json.dumps(image.config, sort_keys=True, separators=(",", ":")).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    _push_blob(port, repo, config_digest, config, len(config))
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": layers,
    }, sort_keys=True, separators=(",", ":")).encode()
    for tag in image.tags:
        status, headers, body = request(port, "PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
                                        headers={"Content-Type": MEDIA_MANIFEST})
        if status != 201:
            raise RuntimeError(f"registry: manifest {repo}:{tag} answered {status}: {body[:300]!r}")
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def ensure_images(names: tuple[str, ...] = tuple(BUILDERS)) -> dict[str, str]:
    """Build what changed and push it into the registry storage; returns name -> reference."""
    storage = registry_storage()
    storage.mkdir(parents=True, exist_ok=True)
    built = {name: BUILDERS[name]() for name in names}
    port = processes.free_port()
    with tempfile.TemporaryDirectory(prefix="k8sso-registry-") as tmp:
        config = write_config(Path(tmp) / "config.yml", port, storage)
        proc = processes.spawn([registry_binary(), "serve", str(config)], Path(tmp) / "registry.log")
        try:
            wait_ready(port)
            for image in built.values():
                started = time.monotonic()
                push(port, image)  # blobs already there are skipped; tags (latest) are set again
                print(f"pushed {image.reference} in {time.monotonic() - started:.1f}s", file=sys.stderr)
        finally:
            processes.stop(proc)
    references = {name: image.reference for name, image in built.items()}
    record_current(references)
    return references


if __name__ == "__main__":
    for name, reference in ensure_images().items():
        print(f"{name} {reference}")
