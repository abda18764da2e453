"""What VLMEvalKit's import would cost a slot if it imported only the modules the slot uses.

    python3 bench/lazy_import_probe.py [--without-config] > lazy-import.json

A fresh process (run it in its own): torch and transformers' Llama first (a slot imports them
anyway), then the package ``vlmeval`` and its ``vlmeval.dataset`` are entered without running
their ``__init__`` (empty package modules over the real folders, this process only), and the
modules a LLaVA slot of the seed matrix uses are imported one by one: what a lazy
``vlmeval.dataset`` (``build_dataset`` importing only the module of the benchmark it builds) and
an ``__init__`` without the CLI would leave. ``vlmeval.config`` (``supported_VLM``) still
imports every model wrapper; ``--without-config`` enters ``vlmeval.vlm`` bare too and imports
only LLaVA's wrapper in place of ``vlmeval.config`` and ``vlmeval.inference`` (which imports
``vlmeval.config``): the floor, had ``supported_VLM`` been lazy too.

Prints each module's seconds, or the error where a module needs what a skipped ``__init__``
defines. Names the used modules take from ``vlmeval.dataset`` at import (``img_root_map``,
``DATASET_TYPE``, ...) come from the dataset modules already imported, else from a placeholder
never called here; they are listed: what a lazy ``vlmeval.dataset`` must define for real.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

FIRST = ("torch", "transformers.models.llama.modeling_llama", "llava.model.builder")
# The seed matrix's dataset classes live in these (image_base is their base); then the
# worker's other entry points.
USED = (
    "vlmeval.smp",
    "vlmeval.dataset.image_base",
    "vlmeval.dataset.image_mcq",
    "vlmeval.dataset.image_yorn",
    "vlmeval.dataset.image_vqa",
    "vlmeval.dataset.utils",
)
WITH_CONFIG = ("vlmeval.config", "vlmeval.inference")
WITHOUT_CONFIG = ("vlmeval.vlm.llava",)


def bare_package(name: str, folder: Path, asked: list[str] | None = None) -> None:
    """``name`` as a package over ``folder`` whose ``__init__`` has not run; with ``asked``,
    a missing name is looked up in its imported submodules, else a placeholder (recorded)."""
    module = types.ModuleType(name)
    module.__path__ = [str(folder)]
    module.__package__ = name

    def lookup(attr: str) -> Any:
        if asked is None or attr.startswith("__"):
            raise AttributeError(attr)
        for loaded, sub in list(sys.modules.items()):
            if loaded.startswith(name + ".") and hasattr(sub, attr):
                asked.append(f"{attr} (from {loaded})")
                return getattr(sub, attr)
        asked.append(f"{attr} (placeholder)")

        def placeholder(*_: Any, **__: Any) -> Any:
            raise NotImplementedError(f"{name}.{attr}: a lazy package must define it")

        return placeholder

    module.__getattr__ = lookup  # type: ignore[method-assign]
    sys.modules[name] = module


def timed(module: str) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        importlib.import_module(module)
        error = None
    except Exception as exc:  # the probe reports what a bare package lacks
        error = f"{type(exc).__name__}: {exc}"[:300]
    return {"module": module, "seconds": round(time.perf_counter() - start, 2), "error": error}


def main() -> int:
    without_config = "--without-config" in sys.argv[1:]
    out: dict[str, Any] = {"without_config": without_config}
    out["before"] = [timed(m) for m in FIRST]
    spec = importlib.util.find_spec("vlmeval")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("vlmeval is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    bare_package("vlmeval", root)
    asked: list[str] = []
    bare_package("vlmeval.dataset", root / "dataset", asked)
    if without_config:
        bare_package("vlmeval.vlm", root / "vlm", asked)
    start = time.perf_counter()
    used = USED + (WITHOUT_CONFIG if without_config else WITH_CONFIG)
    out["used"] = [timed(m) for m in used]
    out["used_seconds"] = round(time.perf_counter() - start, 2)
    out["names_asked_of_vlmeval_dataset"] = sorted(set(asked))
    out["torchvision_loaded"] = "torchvision" in sys.modules
    out["sympy_loaded"] = "sympy" in sys.modules
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
