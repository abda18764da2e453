"""Fill ``.whl/`` with the wheels the device machine lacks, at the image's versions.

The device has no network and its own Python (3.12) and torch, so the bench carries wheels. Each
package below is taken at the version ``requirements.lock`` pins for the image: the bench then
runs the image's stack wherever the device's Python can, and ``matrix_bench.py`` records in every
JSON each locked package whose version on the device differs (torch, numpy: the device's own).

    python3 bench/device_wheels.py            # downloads into .whl/, replacing other versions
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "docker/transformers-4.37/requirements.lock"

# What the device's Python lacks for the worker: the model stack above torch, ms-vlmeval and
# llava (installed without dependencies, as in the image) and ms-vlmeval's import-time needs.
# Absent on purpose (too big to carry, never called by the LLaVA benchmarks; bench/README.md):
# datasets, decord, jieba, av, qwen_vl_utils, openai.
DEVICE_PACKAGES = [
    "transformers",
    "tokenizers",
    "huggingface-hub",
    "hf-xet",
    "accelerate",
    "safetensors",
    "sentencepiece",
    "protobuf",
    "einops",
    "shortuuid",
    "llava-torch",
    "ms-vlmeval",
    "pandas",
    "pytz",
    "tzdata",
    "openpyxl",
    "et-xmlfile",
    "xlsxwriter",
    "sty",
    "termcolor",
    "validators",
    "levenshtein",
    "rapidfuzz",
    "nltk",
    "rouge",
    "math-verify",
    "latex2sympy2-extended",
    "antlr4-python3-runtime",
    "pylatexenc",
    "json-repair",
    "num2words",
    "docopt",
    "timeout-decorator",
]
DEVICE_PYTHON = "3.12"
DEVICE_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path = LOCK) -> dict[str, str]:
    """Package -> version of every ``name==version`` line of the lock."""
    pins = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9_.\-]*)(?:\[[^\]]*\])?==([^\s\\;]+)", line)
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def fetch(name: str, version: str, dest: Path) -> str:
    """A wheel of ``name==version`` for the device in ``dest``: a binary one if PyPI has it,
    else built here from the sdist (pure-Python packages only). Returns how it was got."""
    spec = f"{name}=={version}"
    platforms = [arg for p in DEVICE_PLATFORMS for arg in ("--platform", p)]
    binary = pip(
        "download", "--quiet", "--no-deps", "--only-binary", ":all:", "--python-version",
        DEVICE_PYTHON, *platforms, "--dest", str(dest), spec,
    )  # fmt: skip
    if binary.returncode == 0:
        return "wheel"
    with tempfile.TemporaryDirectory() as tmp:
        built = pip("wheel", "--quiet", "--no-deps", "--no-binary", ":all:", "-w", tmp, spec)
        wheels = list(Path(tmp).glob("*-py3-none-any.whl")) + list(Path(tmp).glob("*-py2.py3-*"))
        if built.returncode or not wheels:
            raise RuntimeError(
                f"{spec}: no wheel for Python {DEVICE_PYTHON} and no pure-Python build:\n"
                f"{binary.stderr[-800:]}{built.stderr[-800:]}"
            )
        for wheel in wheels:
            wheel.replace(dest / wheel.name)
    return "built from sdist"


def drop_other_versions(dest: Path, name: str, version: str) -> None:
    for wheel in dest.glob("*.whl"):
        wheel_name, wheel_version = wheel.name.split("-")[:2]
        if canonical(wheel_name) == name and wheel_version != version:
            wheel.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".whl")
    args = parser.parse_args()
    args.dest.mkdir(exist_ok=True)
    pins = locked_versions()
    missing = [name for name in DEVICE_PACKAGES if name not in pins]
    if missing:
        sys.exit(f"not in {LOCK.name}: {', '.join(missing)} (the lock is the image's versions)")
    for name in DEVICE_PACKAGES:
        how = fetch(name, pins[name], args.dest)
        drop_other_versions(args.dest, name, pins[name])
        print(f"{name}=={pins[name]}: {how}")
    size = sum(w.stat().st_size for w in args.dest.glob("*.whl"))
    print(f"{args.dest}: {len(list(args.dest.glob('*.whl')))} wheels, {size / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
