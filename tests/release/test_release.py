"""`make release` is reproducible and its images survive a real registry.

Two copies of the tree at different paths, each with its own CARGO_HOME (a
copy of the crate registry cache, built `--offline`), run `make release`; the
module, its checksum and both image digests must equal the worktree's
build/release. Then Debian's docker-registry on loopback receives both images
(skopeo), and they are pulled back (skopeo for the compat image, oras for the
Wasm artifact) and checked against the manifest digests and the module's sha256.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import oras.client
import pytest

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "build" / "release"
VENV = ROOT / ".venv"
CARGO_HOME = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
WASM_LAYER = "application/vnd.wasm.content.layer.v1+wasm"
WASM_CONFIG = "application/vnd.wasm.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_date_epoch() -> str:
    """The Makefile's: the last commit that changed the code."""
    out = subprocess.run(["git", "log", "-1", "--format=%ct", "--", "src", "Cargo.toml", "Cargo.lock"], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def copy_tree(dest: Path) -> None:
    """The tracked and untracked-but-not-ignored files, as a fresh clone would have them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        src = ROOT / os.fsdecode(name)
        if not src.is_file() or src.is_symlink():
            continue
        target = dest / os.fsdecode(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def copy_cargo_home(dest: Path) -> None:
    """A CARGO_HOME of its own: the registry index and .crate cache, no extracted sources."""
    for part in ("index", "cache"):
        shutil.copytree(CARGO_HOME / "registry" / part, dest / "registry" / part, symlinks=True)


def make_release_in(checkout: Path, cargo_home: Path, epoch: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("CARGO_TARGET_DIR", "RUSTFLAGS", "MAKEFLAGS", "MFLAGS")}
    env.update(CARGO_HOME=str(cargo_home), CARGO_NET_OFFLINE="true", SOURCE_DATE_EPOCH=epoch)
    log = (checkout.parent / "make-release.log").open("w")
    return subprocess.Popen(
        ["make", "--no-print-directory", "release", f"VENV={VENV}"],
        cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def release_of(directory: Path) -> dict:
    info = json.loads((directory / "release.json").read_text())
    info["module"] = (directory / "mpass_guard.wasm").read_bytes()
    info["sha256_file"] = (directory / "mpass_guard.wasm.sha256").read_text()
    return info


@pytest.fixture(scope="module")
def shipped() -> dict:
    """The worktree's own `make release` output (make release-test builds it first)."""
    assert (RELEASE / "release.json").is_file(), "run `make release` first (make release-test does)"
    return release_of(RELEASE)


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory, shipped) -> list[dict]:
    epoch = str(shipped["source_date_epoch"])
    assert epoch == source_date_epoch(), "build/release is stale: run `make release` again"
    base = tmp_path_factory.mktemp("repro")
    places = [base / "one" / "mpass-guard", base / "two" / "deeper" / "checkout"]
    builds = []
    for i, checkout in enumerate(places):
        copy_tree(checkout)
        cargo_home = base / f"cargo-home-{i}"
        copy_cargo_home(cargo_home)
        builds.append(make_release_in(checkout, cargo_home, epoch))
    for checkout, build in zip(places, builds):
        rc = build.wait(timeout=1800)
        log = (checkout.parent / "make-release.log").read_text()
        assert rc == 0, f"make release in {checkout} failed:\n{log[-4000:]}"
    return [release_of(checkout / "build" / "release") for checkout in places]


def test_two_checkouts_with_their_own_cargo_home_build_the_same_module_as_the_release(shipped, rebuilt):
    for other in rebuilt:
        assert sha256(other["module"]) == sha256(shipped["module"])
        assert other["module"] == shipped["module"]
        assert other["sha256_file"] == shipped["sha256_file"]


def test_the_released_module_names_no_builder_path(shipped):
    module = shipped["module"]
    for path in {str(ROOT), str(CARGO_HOME), str(Path.home())}:
        assert path.encode() not in module, f"{path} is embedded in the module"


def test_the_checksum_file_is_what_sha256sum_checks():
    done = subprocess.run(["sha256sum", "--check", "mpass_guard.wasm.sha256"], cwd=RELEASE, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_both_images_have_the_same_digests_when_rebuilt(shipped, rebuilt):
    for other in rebuilt:
        assert other["images"] == shipped["images"]
        assert other["module_sha256"] == shipped["module_sha256"] == sha256(shipped["module"])


# ---------------------------------------------------------------- registry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Debian's docker-registry on a free loopback port, storage in a temp dir."""
    base = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (base / "registry.log").open("w")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    host = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (base / "registry.log").read_text()
            try:
                with urllib.request.urlopen(f"http://{host}/v2/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "registry did not answer /v2/"
            time.sleep(0.2)
        yield host
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def skopeo(*args: str) -> bytes:
    done = subprocess.run(["skopeo", *args], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


@pytest.fixture(scope="module")
def pushed(registry, shipped) -> dict:
    refs = {}
    for kind, image in shipped["images"].items():
        ref = f"{registry}/mpass-guard:{image['tag']}"
        skopeo("copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
               f"oci:{RELEASE / 'oci'}:{image['tag']}", f"docker://{ref}")
        refs[kind] = ref
    return refs


def test_the_registry_serves_both_manifests_under_the_released_digests(pushed, shipped):
    for kind, ref in pushed.items():
        raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}")
        assert f"sha256:{sha256(raw)}" == shipped["images"][kind]["digest"]


def test_the_compat_image_pulled_back_has_one_layer_with_plugin_wasm(pushed, shipped, tmp_path):
    digest = shipped["images"]["compat"]["digest"]
    ref = pushed["compat"].rsplit(":", 1)[0] + f"@{digest}"
    skopeo("copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp_path / 'pulled'}:x")
    blobs = tmp_path / "pulled" / "blobs" / "sha256"
    manifest = json.loads((blobs / digest.split(":")[1]).read_bytes())
    assert [layer["mediaType"] for layer in manifest["layers"]] == [OCI_LAYER]
    layer = (blobs / manifest["layers"][0]["digest"].split(":")[1]).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        members = {m.name.lstrip("/"): m for m in tar.getmembers() if m.isfile()}
        assert list(members) == ["plugin.wasm"]
        module = tar.extractfile(members["plugin.wasm"]).read()
    assert sha256(module) == shipped["module_sha256"]


def test_the_wasm_artifact_pulled_back_by_oras_is_the_module(pushed, shipped, tmp_path):
    host, rest = pushed["wasm"].split("/", 1)
    client = oras.client.OrasClient(hostname=host, insecure=True)
    manifest = client.get_manifest(pushed["wasm"])
    assert manifest["config"]["mediaType"] == WASM_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [WASM_LAYER]
    files = client.pull(target=pushed["wasm"], outdir=str(tmp_path))
    assert [Path(f).name for f in files] == ["plugin.wasm"]
    assert sha256(Path(files[0]).read_bytes()) == shipped["module_sha256"]
    assert rest.endswith(shipped["images"]["wasm"]["tag"])
