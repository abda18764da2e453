"""Run a module or script with stand-ins for import-only modules the GPU machine lacks.

    VLMFLEET_BENCH_STANDINS=datasets,decord python bench/standin_launch.py -m vlmfleet.worker ...
    VLMFLEET_BENCH_STANDINS=datasets python bench/standin_launch.py bench/attn_worker.py ...

ms-vlmeval imports every dataset module when ``vlmeval`` is imported, so video, Chinese-text and
HF-datasets libraries must import even though the LLaVA image benchmarks never call them. The GPU
machine has no network and carried wheels are capped at 64 MiB, so the bench replaces the big ones
(named in $VLMFLEET_BENCH_STANDINS) by inert stand-ins - only where the real module is absent: the
stand-in finder sits last on sys.meta_path. Nothing the benchmarks run touches them; a call into
one returns an inert object rather than doing work, so it would show up as a wrong answer.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import runpy
import sys
import types
from typing import Any


class _Inert:
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def __iter__(self) -> Any:
        return iter(())

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        return (object,)


class StandinModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _Inert()


class StandinFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.used: set[str] = set()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.split(".")[0] not in self.names:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: Any) -> types.ModuleType:
        self.used.add(spec.name.split(".")[0])
        module = StandinModule(spec.name)
        module.__path__ = []
        module.__version__ = "0+standin"
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def install() -> StandinFinder | None:
    names = {
        n.strip() for n in os.environ.get("VLMFLEET_BENCH_STANDINS", "").split(",") if n.strip()
    }
    if not names:
        return None
    finder = StandinFinder(names)
    sys.meta_path.append(finder)
    return finder


def main() -> None:
    install()
    if len(sys.argv) < 2:
        sys.exit("usage: standin_launch.py (-m MODULE | SCRIPT) [ARGS...]")
    if sys.argv[1] == "-m":
        module = sys.argv[2]
        sys.argv = [module, *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script = sys.argv[1]
        sys.argv = sys.argv[1:]
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
