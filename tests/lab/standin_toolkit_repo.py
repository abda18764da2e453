#!/usr/bin/env python3
"""Build a signed flat apt repository holding STAND-IN NVIDIA Container Toolkit packages.

NVIDIA's repository cannot be reached from the test machines, so the molecule scenario serves
this one instead and gives the nvidia_container_toolkit role only its URL and key. The packages
carry NVIDIA's names and a version, say in their description that they are stand-ins, and
`nvidia-ctk runtime configure` edits daemon.json the way the real tool does (adds
runtimes.nvidia, keeps every other key, optionally sets default-runtime).

    standin_toolkit_repo.py OUT_DIR     # writes OUT_DIR/{*.deb,Packages,Release,InRelease,gpgkey}
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from email.utils import formatdate
from pathlib import Path

VERSION = "1.17.8-1"
STANDIN = "STAND-IN for tests, not NVIDIA's software"

NVIDIA_CTK = r'''#!/usr/bin/python3
"""Stand-in nvidia-ctk: the `runtime configure` and `cdi generate` subcommands only."""
import argparse, json, os, sys

p = argparse.ArgumentParser(prog="nvidia-ctk")
sub = p.add_subparsers(dest="cmd", required=True)
rt = sub.add_parser("runtime").add_subparsers(dest="rtcmd", required=True)
conf = rt.add_parser("configure")
conf.add_argument("--runtime", default="docker")
conf.add_argument("--config", default="/etc/docker/daemon.json")
conf.add_argument("--set-as-default", action="store_true")
cdi = sub.add_parser("cdi").add_subparsers(dest="cdicmd", required=True)
gen = cdi.add_parser("generate")
gen.add_argument("--output", required=True)
a = p.parse_args()
if a.cmd == "cdi":
    sys.exit("nvidia-ctk (stand-in): cdi generate: no NVIDIA GPU on this machine")
if a.runtime != "docker":
    sys.exit(f"nvidia-ctk (stand-in): unsupported runtime {a.runtime!r}")
try:
    with open(a.config) as f:
        config = json.load(f)
except FileNotFoundError:
    config = {}
config.setdefault("runtimes", {})["nvidia"] = {"args": [], "path": "nvidia-container-runtime"}
if a.set_as_default:
    config["default-runtime"] = "nvidia"
os.makedirs(os.path.dirname(a.config) or ".", exist_ok=True)
with open(a.config, "w") as f:
    json.dump(config, f, indent=4, sort_keys=True)
    f.write("\n")
print(f"INFO Wrote updated config to {a.config}")
print("INFO It is recommended that docker daemon be restarted.")
'''

# Runs containers with runc: enough for `docker run --runtime nvidia` without a GPU.
RUNTIME = """#!/bin/sh
# Stand-in nvidia-container-runtime: no GPU hooks, plain runc.
exec runc "$@"
"""

PACKAGES: dict[str, dict[str, str]] = {
    "nvidia-container-toolkit": {
        "/usr/bin/nvidia-ctk": NVIDIA_CTK,
        "/usr/bin/nvidia-container-runtime": RUNTIME,
    },
    "nvidia-container-toolkit-base": {},
    "libnvidia-container-tools": {},
    "libnvidia-container1": {},
}
DEPENDS = {
    "nvidia-container-toolkit": "nvidia-container-toolkit-base (= {v}), "
    "libnvidia-container-tools (= {v}), python3"
}


def run(*argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kw)  # type: ignore[call-overload]


def build_deb(name: str, files: dict[str, str], out: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "DEBIAN").mkdir()
        depends = DEPENDS.get(name, "").format(v=VERSION)
        control = [
            f"Package: {name}",
            f"Version: {VERSION}",
            "Architecture: all",
            "Maintainer: vlm-fleet tests <tests@invalid>",
            "Section: utils",
            "Priority: optional",
        ]
        if depends:
            control.append(f"Depends: {depends}")
        control.append(f"Description: {STANDIN}\n {name} as served by the molecule lab.")
        (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
        for path, text in files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            target.chmod(0o755)
        deb = out / f"{name}_{VERSION}_all.deb"
        run("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb))
        return deb


def control_of(deb: Path) -> str:
    return run("dpkg-deb", "-f", str(deb)).stdout.strip()


def packages_index(debs: list[Path], out: Path) -> str:
    stanzas = []
    for deb in debs:
        data = deb.read_bytes()
        stanzas.append(
            control_of(deb)
            + f"\nFilename: ./{deb.name}\nSize: {len(data)}"
            + f"\nMD5sum: {hashlib.md5(data).hexdigest()}"
            + f"\nSHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    return "\n".join(stanzas)


def sign(out: Path) -> None:
    gnupghome = Path(tempfile.mkdtemp(prefix="standin-gpg-"))
    try:
        gnupghome.chmod(0o700)
        env = {**os.environ, "GNUPGHOME": str(gnupghome)}
        uid = "vlm-fleet lab stand-in repository <lab@invalid>"
        gpg = ["gpg", "--batch", "--yes"]
        run(*gpg, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never", env=env)
        (out / "gpgkey").write_text(run(*gpg, "--armor", "--export", uid, env=env).stdout)
        release = str(out / "Release")
        signer = [*gpg, "--local-user", uid]
        run(*signer, "--clearsign", "--output", str(out / "InRelease"), release, env=env)
        run(*signer, "--armor", "--detach-sign", "--output", release + ".gpg", release, env=env)
    finally:
        run("gpgconf", "--kill", "all", env={**os.environ, "GNUPGHOME": str(gnupghome)})
        shutil.rmtree(gnupghome, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    debs = [build_deb(name, files, out) for name, files in PACKAGES.items()]
    index = packages_index(debs, out)
    (out / "Packages").write_text(index)
    digest = hashlib.sha256(index.encode()).hexdigest()
    (out / "Release").write_text(
        "Origin: vlm-fleet lab (stand-in)\nLabel: stand-in nvidia-container-toolkit\n"
        f"Date: {formatdate(usegmt=True)}\nSHA256:\n {digest} {len(index.encode())} Packages\n"
    )
    sign(out)
    print(f"stand-in toolkit repository: {out} ({', '.join(PACKAGES)} {VERSION})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
