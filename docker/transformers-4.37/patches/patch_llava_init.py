"""Make LLaVA's model imports fail loudly.

llava-torch 1.2.2.post1's ``llava/model/__init__.py`` wraps its three imports in a bare
``try/except: pass``. Any import error (a wrong transformers, a missing dependency) is swallowed
and resurfaces much later as ``NameError: LlavaLlamaForCausalLM`` inside the builder, hiding the
real cause. This replaces the file with the same imports, unguarded.

Idempotent: an already patched file is left alone. Any other content fails (exit 1) naming
both hashes, because a new LLaVA release needs a human to look at this again.

    python patch_llava_init.py [SITE_PACKAGES_DIR]
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

ORIGINAL_SHA256 = "ee39b249ed24855167f1d22459f04a8c13aa06d06f3778573175013d5b5fecd5"
PATCHED = """\
# Patched by the vlm-eval image (patches/patch_llava_init.py): the original wrapped these
# imports in a bare try/except that hid the real import error.
from .language_model.llava_llama import LlavaLlamaForCausalLM, LlavaConfig
from .language_model.llava_mpt import LlavaMptForCausalLM, LlavaMptConfig
from .language_model.llava_mistral import LlavaMistralForCausalLM, LlavaMistralConfig
"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def target(site_packages: str | None) -> Path:
    if site_packages:
        return Path(site_packages) / "llava" / "model" / "__init__.py"
    # find_spec of a top-level package locates it without running its __init__.
    spec = importlib.util.find_spec("llava")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("patch_llava_init: package 'llava' (llava-torch) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model" / "__init__.py"


def patch(path: Path) -> str:
    data = path.read_bytes()
    digest = sha256(data)
    patched_digest = sha256(PATCHED.encode())
    if digest == patched_digest:
        return "already patched"
    if digest != ORIGINAL_SHA256:
        raise SystemExit(
            f"patch_llava_init: {path} has sha256 {digest}; expected the llava-torch "
            f"1.2.2.post1 original {ORIGINAL_SHA256} or the patched file {patched_digest}. "
            "LLaVA changed: review the file and update this patch."
        )
    path.write_text(PATCHED, encoding="utf-8")
    return "patched"


def main(argv: list[str]) -> int:
    path = target(argv[1] if len(argv) > 1 else None)
    print(f"patch_llava_init: {path}: {patch(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
