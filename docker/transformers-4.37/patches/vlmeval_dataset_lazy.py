"""VLMEvalKit's ``vlmeval.dataset``, importing only the module of the benchmark asked for.

Installed by the vlm-eval image (patches/patch_vlmeval_lazy.py) as ``vlmeval/dataset/__init__.py``
in place of ms-vlmeval 0.0.20's, which imports every dataset module (and through them torchvision,
sympy, ...) to build its class lists. The original is kept unchanged as
``vlmeval.dataset._eager``; ``vlmeval.dataset._lazy_index`` was generated from it when the image
was built: where each name the original binds by an import comes from, its ``DATASET_CLASSES`` by
name, and for every dataset name they list the first class listing it, which is the class the
original's ``build_dataset`` builds.

``build_dataset``, ``DATASET_TYPE``, ``DATASET_MODALITY`` and ``dataset_class`` answer from the
index and import the module of that class only. Any other name resolves on first access (PEP 562):
a name the original imports from elsewhere comes from there, the rest (``DATASET_CLASSES``,
``SUPPORTED_DATASETS``, ``ConcatDataset``, ...) from the original, which then imports everything
as it always did. Once the original has run, every function here answers from it, so
a class added to its lists counts as it did there.

A class lists a dataset name at run time once its table changes (a custom benchmark added to its
``DATASET_URL``); a table can change only once its module is imported, so the classes already
imported are asked first, in the original's order. A name no class lists (a custom file, a video
setting) goes to the original.
"""

import importlib
import inspect
import sys
import types

from . import _lazy_index as _index

_ORIGINAL = f"{__name__}._eager"
_VIDEO_CONFIG = f"{__name__}.video_dataset_config"
_VIDEO_SETTINGS = frozenset(_index.VIDEO_SETTINGS)


def _original():
    """The original module, importing every dataset module the first time."""
    return importlib.import_module(_ORIGINAL)


def _original_if_run():
    """The original module once it has run to its end (its ``__all__`` is its last name), else
    None."""
    module = sys.modules.get(_ORIGINAL)
    return module if module is not None and "__all__" in vars(module) else None


def _bound(name):
    """What the original binds ``name`` to by one of its imports."""
    module, attribute = _index.IMPORTED[name]
    imported = importlib.import_module(module)
    return imported if attribute is None else getattr(imported, attribute)


def _named(name):
    """A name of the original's namespace: from its import, or from the original itself."""
    return _bound(name) if name in _index.IMPORTED else getattr(_original(), name)


def _if_imported(name):
    """A name of the original's namespace if the module that defines it is imported (wholly or in
    part), else None."""
    module = _index.IMPORTED[name][0] if name in _index.IMPORTED else _ORIGINAL
    attribute = _index.IMPORTED[name][1] if name in _index.IMPORTED else name
    imported = sys.modules.get(module)
    return None if imported is None else getattr(imported, attribute, None)


def _indexed_class(dataset):
    """The first class listing ``dataset``, found without the original; None where the original
    answers: it has run, or no class lists the name."""
    if _original_if_run() is not None or not isinstance(dataset, str):
        return None
    listed = _index.FIRST_CLASS.get(dataset)
    for position in range(len(_index.CLASSES) if listed is None else listed):
        cls = _if_imported(_index.CLASSES[position])
        if cls is not None and dataset in cls.supported_datasets():
            return cls
    return None if listed is None else _named(_index.CLASSES[listed])


def _is_video_setting(dataset_name):
    """Whether ``dataset_name`` is one of video_dataset_config's settings, which the original's
    ``build_dataset`` builds before looking at any class."""
    config = sys.modules.get(_VIDEO_CONFIG)
    table = getattr(config, "supported_video_datasets", None)
    return dataset_name in (_VIDEO_SETTINGS if table is None else table)


def dataset_class(dataset):
    """The first class of the original's ``DATASET_CLASSES`` that lists ``dataset`` (the class its
    ``build_dataset`` builds it with and its ``DATASET_TYPE`` reads), or None."""
    original = _original_if_run()
    if original is None:
        return _indexed_class(dataset)
    return next((c for c in original.DATASET_CLASSES if dataset in c.supported_datasets()), None)


def build_dataset(dataset_name, **kwargs):
    """The original's ``build_dataset``: the class listing the name built with the keyword
    arguments its ``__init__`` takes; video settings and unlisted names go to the original."""
    if _is_video_setting(dataset_name):
        return _original().build_dataset(dataset_name, **kwargs)
    cls = _indexed_class(dataset_name)
    if cls is None:
        return _original().build_dataset(dataset_name, **kwargs)
    init_params = inspect.signature(cls.__init__).parameters
    filtered_kwargs = {k: v for k, v in kwargs.items() if k in init_params}
    return cls(dataset=dataset_name, **filtered_kwargs)


def DATASET_TYPE(dataset, *, default: str = "MCQ") -> str:
    """The original's ``DATASET_TYPE``: the ``TYPE`` of the first class listing ``dataset``."""
    cls = _indexed_class(dataset)
    if cls is not None and hasattr(cls, "TYPE"):
        return cls.TYPE
    return _original().DATASET_TYPE(dataset, default=default)


def DATASET_MODALITY(dataset, *, default: str = "IMAGE") -> str:
    """The original's ``DATASET_MODALITY``: the ``MODALITY`` of the first class listing
    ``dataset``."""
    cls = _indexed_class(dataset)
    if cls is not None and hasattr(cls, "MODALITY"):
        return cls.MODALITY
    return _original().DATASET_MODALITY(dataset, default=default)


def infer_dataset_basename(dataset_name):
    """The original's, unchanged."""
    basename = "_".join(dataset_name.split("_")[:-1])
    return basename


def _star_names():
    """What ``from vlmeval.dataset import *`` takes, as from the original."""
    config = sys.modules.get(_VIDEO_CONFIG)
    if config is not None and "supported_video_datasets" not in vars(config):
        # video_dataset_config star-imports this package while it runs: in the original it ran as
        # the package's last import and took the names bound so far (there was no __all__ yet).
        return [n for n in _index.IMPORTED if not n.startswith("_") and n != _index.VIDEO_TABLE]
    return list(_original().__all__)


def __getattr__(name):
    if name == "__all__":
        return _star_names()
    if name in _index.IMPORTED:
        return _bound(name)
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    original = _original()
    # Importing the original imported its submodules, which are attributes of this package.
    if name in globals():
        return globals()[name]
    try:
        return getattr(original, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__():
    return sorted(set(globals()) | set(_index.IMPORTED) | set(_index.DEFINED))


class _Package(types.ModuleType):
    """This package's module type: importing a submodule named like the class the original
    imports from it (``NPMM``, ``CGAVCounting``, ...) leaves the name to the class, as in the
    original, whose import bound the class after the submodule."""

    def __setattr__(self, name, value):
        if name in _index.SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
