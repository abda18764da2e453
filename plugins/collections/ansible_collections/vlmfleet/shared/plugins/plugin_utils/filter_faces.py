"""The project's filter plugins as faces that import their code on first use.

Ansible imports every file of ``plugins/filter`` for each task that uses any filter, in the
task's own worker process, so a face that imported its module at the top would make every such
task pay for the imports of the whole collection (numpy among them). A face made here imports
``plugin_utils.<module>`` when one of its filters is first called in that process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from importlib import import_module
from typing import Any

PACKAGE = "ansible_collections.vlmfleet.shared.plugins.plugin_utils"


def lazy_filters(
    module: str, functions: Iterable[str] | Mapping[str, str]
) -> dict[str, Callable[..., Any]]:
    """{filter name: face} for ``plugin_utils.<module>``'s functions: an iterable of names
    (each filter named as its function) or a mapping of filter name to function name."""
    names = functions if isinstance(functions, Mapping) else {f: f for f in functions}
    return {filter_name: face(module, function) for filter_name, function in names.items()}


def face(module: str, function: str) -> Callable[..., Any]:
    """A function that calls ``plugin_utils.<module>.<function>``, imported on its first call."""

    def target() -> Callable[..., Any]:
        return getattr(import_module(f"{PACKAGE}.{module}"), function)

    def call(*args: Any, **kwargs: Any) -> Any:
        return target()(*args, **kwargs)

    call.__name__ = call.__qualname__ = function
    call.target = target  # type: ignore[attr-defined]
    call.__doc__ = f"{PACKAGE}.{module}.{function}, imported when first called."
    return call
