"""VLMEvalKit's prediction file of a benchmark, as ``vlmeval.inference.infer_data_job`` writes it.

The dataset's rows with a ``prediction`` column and without the ``image`` column, at
``get_pred_file_path``'s path: so ``dataset.evaluate`` reads what an engine of the worker wrote
exactly as it reads its own loop's file.
"""

from __future__ import annotations

from typing import Any


def write_predictions(work_dir: str, model_name: str, dataset: Any, answers: dict[Any, str]) -> str:
    """Write every row's answer (by VLMEvalKit's ``index``) and return the file's path."""
    from vlmeval.smp import dump
    from vlmeval.smp.file import get_pred_file_path

    data = dataset.data
    data["prediction"] = [str(answers[x]) for x in data["index"]]
    if "image" in data:
        data.pop("image")
    result_file = get_pred_file_path(
        work_dir, model_name, dataset.dataset_name, use_env_format=True
    )
    dump(data, result_file)
    return result_file
