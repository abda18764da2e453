"""Import everything the worker imports, and report versions (first step on a new machine)."""

import importlib
import platform

NAMES = (
    "vlmeval",
    "vlmeval.config",
    "vlmeval.dataset",
    "vlmeval.vlm",
    "vlmeval.inference",
    "llava.model.builder",
    "vlmfleet.worker",
    "vlmfleet.families.llava",
    "vlmfleet.families.llava_wrapper",
    "vlmfleet.families.llava_batched",
)


def main() -> None:
    for name in NAMES:
        importlib.import_module(name)
    mods = {n: importlib.import_module(n) for n in ("numpy", "pandas", "torch", "transformers")}
    torch = mods["torch"]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no cuda"
    print(platform.python_version(), {n: m.__version__ for n, m in mods.items()}, gpu)
    print("imports ok")


main()
