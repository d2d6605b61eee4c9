"""Package a built mpass_guard.wasm as a release (`make release`).

Writes to the output directory:
  mpass_guard.wasm, mpass_guard.wasm.sha256   the module and its checksum (sha256sum format)
  oci/                                          one OCI image layout holding both images:
    tag VERSION         the "compat" image Istio and Envoy Gateway pull: one
                        application/vnd.oci.image.layer.v1.tar+gzip layer with
                        /plugin.wasm, built by buildah
    tag VERSION-wasm    the Wasm OCI artifact: config application/vnd.wasm.config.v1+json,
                        one application/vnd.wasm.content.layer.v1+wasm layer (the module
                        itself); descriptors made and schema-checked by oras
  release.json        version, module sha256 and both manifest digests

Every timestamp is SOURCE_DATE_EPOCH, so the same module gives the same
manifest digests (with the same buildah version).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import oras.defaults
import oras.oci

WASM_CONFIG_MEDIA_TYPE = "application/vnd.wasm.config.v1+json"
WASM_LAYER_MEDIA_TYPE = "application/vnd.wasm.content.layer.v1+wasm"
OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"


class ReleaseError(Exception):
    """A release step failed; the message says which and why."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def run(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise ReleaseError(f"{cmd[0]} not found: run `make release-tools` (apt-get install buildah)") from e
    except subprocess.CalledProcessError as e:
        raise ReleaseError(f"{' '.join(cmd[:3])} failed: {e.stderr.strip()}") from e
    return done.stdout.strip()


def build_compat(module: Path, layout: Path, tag: str, epoch: int, work: Path) -> None:
    """The single-layer image with /plugin.wasm, in buildah's own throwaway storage."""
    buildah = [
        "buildah",
        "--root", str(work / "storage"),
        "--runroot", str(work / "run"),
        "--storage-driver", "vfs",
    ]
    staged = work / "plugin.wasm"
    shutil.copyfile(module, staged)
    container = run([*buildah, "from", "--quiet", "scratch"])
    run([*buildah, "copy", "--quiet", "--chmod", "0644", container, str(staged), "/plugin.wasm"])
    run([*buildah, "config", "--os", "wasip1", "--arch", "wasm", container])
    image = "localhost/mpass-guard:release"
    run([
        *buildah, "commit", "--quiet", "--format", "oci", "--omit-history",
        "--timestamp", str(epoch), "--rm", container, image,
    ])
    run([*buildah, "push", "--quiet", "--format", "oci", image, f"oci:{layout}:{tag}"])


def write_blob(layout: Path, data: bytes) -> str:
    hexdigest = hashlib.sha256(data).hexdigest()
    blob = layout / "blobs" / "sha256" / hexdigest
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    return f"sha256:{hexdigest}"


def add_wasm_artifact(module: Path, layout: Path, tag: str, created: str, work: Path) -> None:
    """The Wasm OCI artifact, added to the same layout under its own tag."""
    layer = oras.oci.NewLayer(str(module), media_type=WASM_LAYER_MEDIA_TYPE)
    layer["annotations"] = {oras.defaults.annotation_title: "plugin.wasm"}
    write_blob(layout, module.read_bytes())

    config_path = work / "wasm-config.json"
    config_path.write_bytes(canonical_json({
        "created": created,
        "architecture": "wasm",
        "os": "wasip1",
        "layerDigests": [layer["digest"]],
    }))
    config, _ = oras.oci.ManifestConfig(str(config_path), WASM_CONFIG_MEDIA_TYPE)
    write_blob(layout, config_path.read_bytes())

    manifest = oras.oci.NewManifest()
    manifest["mediaType"] = OCI_MANIFEST_MEDIA_TYPE
    manifest["config"] = config
    manifest["layers"] = [layer]
    manifest["annotations"] = {"org.opencontainers.image.created": created}
    data = canonical_json(manifest)
    digest = write_blob(layout, data)

    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    index["manifests"] = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != tag]
    index["manifests"].append({
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "digest": digest,
        "size": len(data),
        "annotations": {REF_NAME: tag},
    })
    index_path.write_bytes(canonical_json(index))


def manifest_digest(layout: Path, tag: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get(REF_NAME) == tag:
            return m["digest"]
    raise ReleaseError(f"tag {tag} missing from {layout}/index.json")


def release(module: Path, out: Path, version: str, epoch: int) -> dict:
    if not module.is_file():
        raise ReleaseError(f"{module} not found: run `make wasm` first")
    if module.read_bytes()[:4] != b"\0asm":
        raise ReleaseError(f"{module} is not a WebAssembly module")
    created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    out.mkdir(parents=True, exist_ok=True)
    shipped = out / "mpass_guard.wasm"
    shutil.copyfile(module, shipped)
    module_sha = sha256_file(shipped)
    (out / "mpass_guard.wasm.sha256").write_text(f"{module_sha}  mpass_guard.wasm\n")

    layout = out / "oci"
    shutil.rmtree(layout, ignore_errors=True)
    compat_tag, wasm_tag = version, f"{version}-wasm"
    with tempfile.TemporaryDirectory(prefix="mpass-guard-release-") as tmp:
        work = Path(tmp)
        try:
            build_compat(shipped, layout, compat_tag, epoch, work)
            add_wasm_artifact(shipped, layout, wasm_tag, created, work)
        finally:
            # buildah's vfs storage is root-owned layers; remove it with buildah's help if needed.
            subprocess.run(
                ["buildah", "--root", str(work / "storage"), "--runroot", str(work / "run"),
                 "--storage-driver", "vfs", "rm", "--all"],
                capture_output=True, check=False,
            )
    info = {
        "version": version,
        "source_date_epoch": epoch,
        "module_sha256": module_sha,
        "images": {
            "compat": {"tag": compat_tag, "digest": manifest_digest(layout, compat_tag)},
            "wasm": {"tag": wasm_tag, "digest": manifest_digest(layout, wasm_tag)},
        },
    }
    (out / "release.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", type=Path, required=True, help="the built mpass_guard.wasm")
    parser.add_argument("--out", type=Path, required=True, help="output directory (build/release)")
    parser.add_argument("--version", required=True, help="the release version, from Cargo.toml")
    parser.add_argument("--registry", default="registry.example.fi/mpass-guard",
                        help="repository named in the printed Istio url (default: %(default)s)")
    args = parser.parse_args()
    epoch_text = os.environ.get("SOURCE_DATE_EPOCH", "0")
    try:
        epoch = int(epoch_text)
    except ValueError:
        print(f"error: SOURCE_DATE_EPOCH={epoch_text!r} is not a number of seconds", file=sys.stderr)
        return 2
    try:
        info = release(args.module, args.out, args.version, epoch)
    except ReleaseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    compat, wasm = info["images"]["compat"], info["images"]["wasm"]
    print(f"mpass-guard {info['version']} in {args.out}/")
    print(f"  mpass_guard.wasm sha256   {info['module_sha256']}")
    print(f"  oci:{args.out}/oci:{compat['tag']:<12} compat image   {compat['digest']}")
    print(f"  oci:{args.out}/oci:{wasm['tag']:<12} Wasm artifact  {wasm['digest']}")
    print("Istio WasmPlugin, pinned by digest:")
    print(f"  url: oci://{args.registry}@{compat['digest']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
