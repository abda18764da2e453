"""Validate eval.yml's extra vars against the catalogue (playbooks/vars/catalogue.yml); filter
eval_check_inputs (plugins/filter/eval_inputs.py).

Runs on the controller before any host is touched. Every check names the bad value and the
valid ones, and all problems are reported together in one message.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from ansible_collections.vlmfleet.shared.plugins.module_utils.contract import (
    AUTO_BATCH,
    DATA_SOURCES,
    EXACT_MATCHING,
    JUDGES,
    MAX_GPU_SLOTS,
    SMOKE_MAX_NEW_TOKENS,
)
from ansible_collections.vlmfleet.shared.plugins.module_utils.uncertainty import (
    MAX_PRECISION,
    limit_for_precision,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.custom_inputs import (
    check_custom_benchmarks,
    check_custom_models,
)
from ansible_collections.vlmfleet.shared.plugins.plugin_utils.input_table import KEPT, RESUMABLE

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Names that would collide with the results directory's own entries.
RESERVED_RUN_IDS = ("latest",)
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")
# precision: the 95% interval's half-width, in points of the 0-100 scale, that each benchmark's
# sample limit is chosen for (at most uncertainty.MAX_PRECISION).
PRECISION_MEANING = (
    "points on the 0-100 scale: each benchmark's 95% interval half-width, which chooses its "
    "sample limit"
)
# What a smoke run's LLaVA models load: checkpoints trained to answer the synthetic questions
# (the catalogue's smoke_checkpoint of each model: scores that can be checked), or tiny random
# ones (every score 0, the fastest).
SMOKE_WEIGHTS = ("known", "random")
DEFAULT_SMOKE_WEIGHTS = "known"
DEFAULT_JUDGE = EXACT_MATCHING
# Where a real run's official benchmark TSVs come from: VLMEvalKit's own download on each host,
# or data_dir on the controller (air-gapped fleets), shipped by role eval_run.
DEFAULT_DATA_SOURCE = "download"
# The judge "openai": VLMEvalKit's OpenAIWrapper against any OpenAI-compatible server.
DEFAULT_JUDGE_MODEL = "gpt-4o-mini"
DEFAULT_JUDGE_BASE_URL = "https://api.openai.com/v1"
CHAT_PATH = "/chat/completions"
# Judge names that VLMEvalKit's build_judge (vlmeval/dataset/utils/judge_util.py) sends to
# another client than the OpenAI-compatible one (SiliconFlow, a local Hugging Face model).
OTHER_CLIENT_JUDGES = ("qwen-7b", "qwen-72b", "deepseek", "llama31-8b")
# VLMEvalKit names its MCQ result files after the judge model: a name that is one plain word.
JUDGE_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# Samples per generate call: batch 1 leaves an H100 mostly idle (bench/README.md), and the
# batched path answers as VLMEvalKit's batch-1 loop does (tests/e2e/test_batched_agreement.py).
# "auto": each batch sized by the GPU memory the slot has left (the worker's batch_memory).
DEFAULT_BATCH_SIZE = AUTO_BATCH
BATCH_MEANING = "samples per generate call; auto: sized by the GPU memory a slot has left"
GB_PER_GIB = 2**30 / 1e9


class EvalInputError(ValueError):
    """One or more inputs are invalid; the message lists every problem."""


def _unset(value: Any) -> bool:
    return value is None or (
        isinstance(value, str) and value.strip().lower() in ("", "none", "null")
    )


def _names(
    value: Any,
    what: str,
    valid: list[str],
    errors: list[str],
    aliases: Mapping[str, str] | None = None,
    listed: list[str] | None = None,
    reported: Collection[str] = (),
) -> list[str] | None:
    """A list or comma/space separated string of catalogue names, deduplicated in order.
    ``aliases``: a message for each name that is not valid but means one that is; ``listed``:
    the valid names a message offers (default: all of ``valid``); ``reported``: names whose
    own problem is in ``errors`` already (a refused custom entry), not unknown a second time."""
    offered = ", ".join(valid if listed is None else listed)
    if isinstance(value, str):
        items = [v for v in re.split(r"[,\s]+", value) if v]
    elif isinstance(value, list | tuple):
        items = []
        for v in value:
            if not isinstance(v, str):
                errors.append(f"{what}: {v!r} is not a name; valid {what}: {offered}")
                return None
            items.extend(x for x in re.split(r"[,\s]+", v) if x)
    else:
        errors.append(
            f"{what} must be a list or a comma-separated string, got {value!r}; "
            f"valid {what}: {offered}"
        )
        return None
    if not items:
        errors.append(f"{what} is empty; valid {what}: {offered}")
        return None
    for name in dict.fromkeys(v for v in items if v in (aliases or {})):
        errors.append((aliases or {})[name])
    unknown = [
        v for v in items if v not in valid and v not in (aliases or {}) and v not in reported
    ]
    if unknown:
        # Names are case-sensitive in VLMEvalKit; point at the near miss.
        hints = []
        lower = {v.lower(): v for v in valid}
        for u in unknown:
            if u.lower() in lower:
                hints.append(f" (did you mean {lower[u.lower()]!r}?)")
            else:
                hints.append("")
        bad = ", ".join(f"{u!r}{h}" for u, h in zip(unknown, hints, strict=True))
        errors.append(f"unknown {what[:-1]} {bad}; valid {what}: {offered}")
        return None
    if any(v in (aliases or {}) or v in reported for v in items):
        return None
    return list(dict.fromkeys(items))


def refusal(model: str, catalogue: Mapping[str, Any]) -> str | None:
    """Why this image cannot run ``model`` (its own or its family's ``refused``), or None."""
    spec = catalogue["catalogue_models"][model]
    return spec.get("refused") or catalogue["catalogue_families"][spec["family"]].get("refused")


def runnable_models(catalogue: Mapping[str, Any]) -> list[str]:
    return [m for m in catalogue["catalogue_models"] if refusal(m, catalogue) is None]


def refused_models(models: Iterable[str], catalogue: Mapping[str, Any]) -> str | None:
    """One message for the models this image refuses, with each reason and the models it
    runs; None when it runs them all."""
    cat = catalogue["catalogue_models"]
    refused = [(m, refusal(m, catalogue)) for m in models]
    lines = [
        f"model {m!r} (family {cat[m]['family']}) cannot run in this image: {' '.join(why.split())}"
        for m, why in refused
        if why
    ]
    if not lines:
        return None
    return "; ".join(lines) + f"; models this image runs: {', '.join(runnable_models(catalogue))}"


def refused_custom(raw: Any, accepted: Mapping[str, Any]) -> set[str]:
    """The names of custom_models or custom_benchmarks entries that were refused: each has its
    own message already, so naming it in models or benchmarks is not a second problem."""
    if not isinstance(raw, Mapping):
        return set()
    return {str(name) for name in raw if name not in accepted}


def alias_messages(catalogue: Mapping[str, Any]) -> dict[str, str]:
    """The original image's model names that mean a catalogue model (catalogue_model_aliases)
    -> the answer."""
    cat = catalogue["catalogue_models"]
    out = {}
    for name, alias in catalogue["catalogue_model_aliases"].items():
        model = cat[alias["model"]]
        family = catalogue["catalogue_families"][model["family"]]
        dtype = family["dtype"]["cuda"]
        why = refusal(alias["model"], catalogue)
        out[name] = (
            f"model {name!r} is the original image's name for VLMEvalKit's {alias['model']!r} "
            f"({model['hf_repo']}): {model['params_b']:g}B parameters, {alias['why']}, about "
            f"{model['gpu_memory_gib']:g} GiB ({model['gpu_memory_gib'] * GB_PER_GIB:.0f} GB) of "
            f"GPU memory in {dtype}; name it "
            f"models={alias['model']}"
            + (f" (which this image refuses: {' '.join(why.split())})" if why else "")
        )
    return out


def parse_bool(value: Any, what: str, errors: list[str]) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    errors.append(f"{what} must be true or false, got {value!r}")
    return None


def parse_limit(value: Any, errors: list[str]) -> int | None:
    """A positive integer, or None for 'the whole benchmark'."""
    if _unset(value):
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or number < 1:
        errors.append(
            f"limit must be a positive integer (samples per benchmark) or unset for the whole "
            f"benchmark, got {value!r}"
        )
        return None
    return number


def parse_precision(value: Any, errors: list[str]) -> float | None:
    """A number of points above 0 and at most MAX_PRECISION, or None when unset."""
    if _unset(value):
        return None
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not 0 < number <= MAX_PRECISION:  # NaN fails the comparison too
        errors.append(
            f"precision must be a number greater than 0 and at most {MAX_PRECISION:g} "
            f"({PRECISION_MEANING}), got {value!r}"
        )
        return None
    return number


def precision_limits(
    precision: float, benchmarks: list[str], catalogue: Mapping[str, Any]
) -> dict[str, int]:
    """Each benchmark's sample limit for ``precision``: the fewest questions whose 95% interval
    is that narrow in the worst case (limit_for_precision), capped by the benchmark's size (the
    catalogue's samples; a custom benchmark's TSV rows), uncapped where the size is unknown."""
    wanted = limit_for_precision(precision)
    sizes = {b: catalogue["catalogue_benchmarks"][b].get("samples") for b in benchmarks}
    return {b: wanted if sizes[b] is None else min(wanted, int(sizes[b])) for b in benchmarks}


def parse_run_id(value: Any, default: str, errors: list[str]) -> str | None:
    if _unset(value):
        return default
    text = str(value)
    if not RUN_ID_RE.match(text) or text in RESERVED_RUN_IDS or ".." in text:
        errors.append(
            f"run_id {text!r} is not usable as a directory name: use 1-64 letters, digits, "
            f"'.', '_' or '-', starting with a letter or digit (not {', '.join(RESERVED_RUN_IDS)})"
        )
        return None
    return text


def parse_count(value: Any, what: str, meaning: str, errors: list[str]) -> int | None:
    """A positive whole number, or None when unset."""
    if _unset(value):
        return None
    if isinstance(value, bool) or not (
        (isinstance(value, int) and value >= 1)
        or (isinstance(value, str) and value.strip().isdigit() and int(value) >= 1)
    ):
        errors.append(f"{what} must be a positive whole number ({meaning}), got {value!r}")
        return None
    return int(value)


def parse_batch_size(value: Any, what: str, errors: list[str]) -> int | str | None:
    """ "auto" or a positive whole number, or None when unset."""
    if _unset(value):
        return None
    if isinstance(value, str) and value.strip().lower() == AUTO_BATCH:
        return AUTO_BATCH
    count = parse_count(value, what, BATCH_MEANING, [])
    if count is None:
        errors.append(
            f"{what} must be {AUTO_BATCH!r} or a positive whole number ({BATCH_MEANING}), "
            f"got {value!r}"
        )
    return count


def check_run_options(raw: Mapping[str, Any], errors: list[str]) -> dict[str, Any]:
    """The generation options a user may set with -e, with their defaults (max_new_tokens'
    depends on smoke, settled last)."""
    batch = parse_batch_size(raw.get("batch_size"), "batch_size", errors)
    max_new = parse_count(raw.get("max_new_tokens"), "max_new_tokens", "tokens per answer", errors)
    # Unset: the planner shards only the benchmarks that would bound the run (eval_plan).
    shard_rows = parse_count(
        raw.get("shard_rows"), "shard_rows", "rows per shard of a benchmark at most", errors
    )
    return {
        "batch_size": batch or DEFAULT_BATCH_SIZE,
        "max_new_tokens": max_new,
        "shard_rows": shard_rows,
        **check_judge(raw, errors),
    }


def parse_judge_model(value: Any, errors: list[str]) -> str | None:
    text = DEFAULT_JUDGE_MODEL if _unset(value) else value
    if not isinstance(text, str) or not JUDGE_MODEL_RE.match(text):
        errors.append(
            f"judge_model {value!r} is not usable: one word of letters, digits, '.', '_', "
            "':' or '-' (VLMEvalKit names its result files after it), e.g. "
            f"{DEFAULT_JUDGE_MODEL}"
        )
        return None
    if text in OTHER_CLIENT_JUDGES:
        errors.append(
            f"judge_model {text!r} is VLMEvalKit's name for a judge it reaches through "
            f"another client ({', '.join(OTHER_CLIENT_JUDGES)}); name the model as the "
            "OpenAI-compatible server at judge_base_url serves it"
        )
        return None
    return text


def parse_judge_base_url(value: Any, errors: list[str]) -> str | None:
    """An http(s) URL without credentials, as OpenAI's clients take it (e.g.
    https://api.openai.com/v1); the judge posts to <it>/chat/completions."""
    text = DEFAULT_JUDGE_BASE_URL if _unset(value) else value
    url = urllib.parse.urlsplit(text) if isinstance(text, str) else None
    problem = None
    if url is None or url.scheme not in ("http", "https") or not url.hostname:
        problem = "an http:// or https:// URL with a host"
    elif url.username is not None or url.password is not None:
        problem = "without user or password in it (the key comes from eval_dirs_judge_api_key)"
    elif url.query or url.fragment:
        problem = "without a query or fragment"
    elif url.path.rstrip("/").endswith(CHAT_PATH):
        problem = f"the base URL, without {CHAT_PATH} (the judge appends it)"
    if problem:
        # A URL with a password in it is not shown back.
        shown = "(a URL with credentials)" if url and url.password else repr(value)
        errors.append(
            f"judge_base_url {shown} is not usable: give {problem}, e.g. {DEFAULT_JUDGE_BASE_URL}"
        )
        return None
    return text.rstrip("/")


def check_judge(raw: Mapping[str, Any], errors: list[str]) -> dict[str, Any]:
    """judge with its model and base URL (settled for the judge "openai", None for
    exact matching, where giving either is refused)."""
    judge = raw.get("judge")
    given = {k: raw.get(k) for k in ("judge_model", "judge_base_url")}
    if _unset(judge):
        judge = DEFAULT_JUDGE
    if judge not in JUDGES:
        errors.append(
            f"judge {judge!r} is not available; valid: {', '.join(JUDGES)} "
            f"({EXACT_MATCHING}: VLMEvalKit's rules; openai: an OpenAI-compatible judge model, "
            "judge_model at judge_base_url)"
        )
        return {"judge": DEFAULT_JUDGE, "judge_model": None, "judge_base_url": None}
    if judge == EXACT_MATCHING:
        named = [k for k, v in given.items() if not _unset(v)]
        if named:
            errors.append(
                f"{' and '.join(named)} {'apply' if len(named) > 1 else 'applies'} to "
                "judge=openai only; add -e judge=openai or leave them out"
            )
        return {"judge": judge, "judge_model": None, "judge_base_url": None}
    return {
        "judge": judge,
        "judge_model": parse_judge_model(given["judge_model"], errors),
        "judge_base_url": parse_judge_base_url(given["judge_base_url"], errors),
    }


def parse_gpu_slots(value: Any, errors: list[str]) -> str | int:
    if _unset(value) or (isinstance(value, str) and value.strip().lower() == "auto"):
        return "auto"
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not 1 <= number <= MAX_GPU_SLOTS:
        errors.append(
            f"eval_gpu_slots must be auto or a whole number from 1 to {MAX_GPU_SLOTS} "
            f"(worker slots sharing each GPU), got {value!r}"
        )
        return "auto"
    return number


def check_hosts(
    pattern: Any,
    hosts: Mapping[str, Mapping[str, Any]],
    inventory: Iterable[str],
    batch: int | str,
    errors: list[str],
) -> dict[str, dict[str, Any]]:
    """The hosts eval_hosts selects, each with its inventory's eval_gpu_slots and
    eval_run_batch_size (checked here, like every input). One bad value shared by several
    hosts (an -e eval_run_batch_size reaches every host) is one message naming them all."""
    if not hosts:
        errors.append(
            f"eval_hosts {pattern!r} matches no host of the inventory; hosts: "
            f"{', '.join(inventory) or 'none'}"
        )
    out = {}
    bad: dict[str, list[str]] = {}
    for host, hv in hosts.items():
        problems: list[str] = []
        out[host] = {
            "gpu_slots": parse_gpu_slots(hv.get("eval_gpu_slots"), problems),
            "batch_size": parse_batch_size(
                hv.get("eval_run_batch_size"), "eval_run_batch_size", problems
            )
            or batch,
        }
        for problem in problems:
            bad.setdefault(problem, []).append(host)
    for problem, named in bad.items():
        who = "host" if len(named) == 1 else "hosts"
        errors.append(f"{who} {', '.join(map(repr, named))}: {problem}")
    return out


def check_data_source(
    source: Any, data_dir: Any, benchmarks: list[str], catalogue: Mapping[str, Any], smoke: bool
) -> tuple[str, str | None]:
    """data_source and data_dir -> (source, the directory or None).

    ``ship`` needs ``<data_dir>/<name>.tsv`` on the controller for each official benchmark
    of the run (custom ones are shipped from their own tsv). Only presence is checked here:
    the controller has no VLMEvalKit, whose dataset classes hold the md5s; each host's
    preparation step checks every shipped file against them before any worker starts.
    """
    source = DEFAULT_DATA_SOURCE if _unset(source) else source
    if source not in DATA_SOURCES:
        raise EvalInputError(
            f"data_source must be one of {', '.join(DATA_SOURCES)}, got {source!r}"
        )
    if source == "download":
        if not _unset(data_dir):
            raise EvalInputError(
                "data_dir applies to data_source=ship only; add "
                "data_source=ship or leave data_dir out"
            )
        return source, None
    if smoke:
        raise EvalInputError(
            "data_source=ship applies to real runs: smoke runs write their own synthetic "
            "data; leave smoke=true or data_source out"
        )
    if _unset(data_dir):
        raise EvalInputError(
            "data_source=ship needs data_dir: a directory on the controller holding "
            "<name>.tsv for each benchmark of the run"
        )
    folder = Path(str(data_dir)).expanduser().absolute()
    if not folder.is_dir():
        raise EvalInputError(f"data_dir {str(data_dir)!r} is not a directory on the controller")
    cat = catalogue["catalogue_benchmarks"]
    official = [b for b in benchmarks if not cat[b].get("custom")]
    missing = [b for b in official if not (folder / f"{b}.tsv").is_file()]
    if missing:
        raise EvalInputError(
            f"data_dir {folder} lacks {', '.join(f'{b}.tsv' for b in missing)} "
            f"(data_source=ship needs VLMEvalKit's TSV of each benchmark of the run)"
        )
    return source, str(folder)


def check_smoke_models(models: list[str], catalogue: Mapping[str, Any]) -> None:
    """Smoke runs load the smoke checkpoints, which exist for some families only."""
    cat, families = catalogue["catalogue_models"], catalogue["catalogue_families"]
    able = [f for f, spec in families.items() if spec["smoke"]]
    unable = [m for m in models if not families[cat[m]["family"]]["smoke"]]
    if unable:
        able_models = [m for m in cat if cat[m]["family"] in able]
        raise EvalInputError(
            "smoke mode has no checkpoint for "
            + ", ".join(f"{m!r} (family {cat[m]['family']})" for m in unable)
            + f"; families smoke runs can load: {', '.join(able)} "
            f"(models: {', '.join(able_models)})"
        )


def check_inputs(
    raw: Mapping[str, Any],
    catalogue: Mapping[str, Any],
    default_run_id: str,
    previous: Mapping[str, Any] | None = None,
    hosts: Mapping[str, Mapping[str, Any]] | None = None,
    inventory: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Normalise the extra vars, with every default. `raw` holds None for an input not given;
    `previous` is the stored run.json "inputs" of the same run_id when that run exists (a
    resume); `hosts` the inventory variables of the hosts eval_hosts selects, `inventory` every
    host's name (for the message when it selects none).

    Returns {"models", "benchmarks", "limit", "precision", "limits" (each benchmark's limit that
    precision chose, else None), "run_id", "smoke", "smoke_weights", "resume",
    "allow_cpu", "resumed", "batch_size", "max_new_tokens", "shard_rows", "judge", "judge_model",
    "judge_base_url", "data_source", "data_dir", "hosts": {host: {"gpu_slots", "batch_size"}}};
    raises EvalInputError listing every problem.
    """
    errors: list[str] = []
    custom_models = check_custom_models(raw.get("custom_models"), catalogue, errors)
    custom_benchmarks = check_custom_benchmarks(raw.get("custom_benchmarks"), catalogue, errors)
    # The run's own models and benchmarks join the catalogue for every check below.
    catalogue = dict(catalogue) | {
        "catalogue_models": {**catalogue["catalogue_models"], **custom_models},
        "catalogue_benchmarks": {**catalogue["catalogue_benchmarks"], **custom_benchmarks},
    }
    given = given_inputs(raw)
    out = check_matrix(raw, given, catalogue, custom_models, custom_benchmarks, errors)
    out |= check_smoke(given, errors)
    out |= check_run(raw, default_run_id, hosts, inventory, errors)
    if errors:
        raise EvalInputError("; ".join(errors))
    out["resumed"] = previous is not None
    if previous is not None:
        resume(out, given, previous)
    settle_defaults(out, given, catalogue)
    out["custom_models"], out["custom_benchmarks"] = custom_models, custom_benchmarks
    if out["smoke"] and (custom_models or custom_benchmarks):
        raise EvalInputError(
            "custom_models and custom_benchmarks apply to real runs: smoke runs load the smoke "
            "checkpoints and synthetic data; leave smoke=true out"
        )
    out["data_source"], out["data_dir"] = check_data_source(
        raw.get("data_source"), raw.get("data_dir"), out["benchmarks"], catalogue, out["smoke"]
    )
    if out["smoke"]:
        check_smoke_models(out["models"], catalogue)
        out["max_new_tokens"] = out["max_new_tokens"] or SMOKE_MAX_NEW_TOKENS
    return out


def given_inputs(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The matrix and smoke inputs as given (None: not given); a resume compares these."""
    given = {k: raw.get(k) for k in RESUMABLE}
    # `models=""` on the command line means "not given", like an unset limit.
    for key in ("models", "benchmarks", "smoke", "smoke_weights"):
        if isinstance(given[key], str) and not given[key].strip():
            given[key] = None
    return given


def check_matrix(
    raw: Mapping[str, Any],
    given: Mapping[str, Any],
    catalogue: Mapping[str, Any],
    custom_models: Mapping[str, Any],
    custom_benchmarks: Mapping[str, Any],
    errors: list[str],
) -> dict[str, Any]:
    """models, benchmarks, limit and precision as given (None where not given)."""
    out: dict[str, Any] = {}
    out["models"] = (
        None
        if given["models"] is None
        else _names(
            given["models"],
            "models",
            list(catalogue["catalogue_models"]),
            errors,
            alias_messages(catalogue),
            # A refused model named is answered with its refusal; the list offers the others.
            listed=runnable_models(catalogue),
            reported=refused_custom(raw.get("custom_models"), custom_models),
        )
    )
    if out["models"] is not None and (refused := refused_models(out["models"], catalogue)):
        errors.append(refused)
    out["benchmarks"] = (
        None
        if given["benchmarks"] is None
        else _names(
            given["benchmarks"],
            "benchmarks",
            list(catalogue["catalogue_benchmarks"]),
            errors,
            reported=refused_custom(raw.get("custom_benchmarks"), custom_benchmarks),
        )
    )
    out["limit"] = parse_limit(given["limit"], errors)
    out["precision"] = parse_precision(given["precision"], errors)
    if out["limit"] is not None and out["precision"] is not None:
        errors.append(
            f"precision={given['precision']} and limit={given['limit']} cannot be given "
            "together: precision chooses each benchmark's limit; give one of them"
        )
    return out


def check_smoke(given: Mapping[str, Any], errors: list[str]) -> dict[str, Any]:
    """smoke and smoke_weights as given (None where not given)."""
    smoke = None if given["smoke"] is None else parse_bool(given["smoke"], "smoke", errors)
    weights = None
    if given["smoke_weights"] is not None:
        if given["smoke_weights"] not in SMOKE_WEIGHTS:
            errors.append(
                f"smoke_weights must be one of {', '.join(SMOKE_WEIGHTS)}, "
                f"got {given['smoke_weights']!r}"
            )
        else:
            weights = given["smoke_weights"]
    return {"smoke": smoke, "smoke_weights": weights}


def check_run(
    raw: Mapping[str, Any],
    default_run_id: str,
    hosts: Mapping[str, Mapping[str, Any]] | None,
    inventory: Iterable[str] | None,
    errors: list[str],
) -> dict[str, Any]:
    """run_id, the hosts, the generation and judge options, resume and allow_cpu."""
    out: dict[str, Any] = {"run_id": parse_run_id(raw.get("run_id"), default_run_id, errors)}
    options = check_run_options(raw, errors)
    out["hosts"] = check_hosts(
        raw.get("eval_hosts") or "all",
        hosts or {},
        inventory or list(hosts or {}),
        options["batch_size"],
        errors,
    )
    out |= options
    out["resume"] = (
        True if _unset(raw.get("resume")) else parse_bool(raw.get("resume"), "resume", errors)
    )
    out["allow_cpu"] = (
        False
        if _unset(raw.get("allow_cpu"))
        else parse_bool(raw.get("allow_cpu"), "allow_cpu", errors)
    )
    return out


def resume(out: dict[str, Any], given: Mapping[str, Any], previous: Mapping[str, Any]) -> None:
    """A resumed run takes the stored run's inputs that were not given again (RESUMABLE and
    KEPT); a RESUMABLE one given again must be the same. An input the stored run lacks was
    recorded only by a later version of the project: the run keeps what was given or its
    default."""
    errors: list[str] = []
    if not out["resume"]:
        raise EvalInputError(
            f"run_id {out['run_id']!r} already has results; rerun with resume=true "
            f"(the default) to finish it, or choose another run_id"
        )
    for key in KEPT:
        if out[key] is None and key in previous:
            out[key] = previous[key]
    for key in RESUMABLE:
        if key not in previous:
            continue
        stored = previous[key]
        # A default settled before this step (the judge's) or an unset limit is "not given".
        if _unset(given[key]):
            out[key] = stored
        elif out[key] != stored:
            errors.append(
                f"{key}={out[key]!r} differs from run {out['run_id']!r} which used "
                f"{key}={stored!r}; resume with the same inputs or choose another run_id"
            )
    if errors:
        raise EvalInputError("; ".join(errors))


def settle_defaults(
    out: dict[str, Any], given: Mapping[str, Any], catalogue: Mapping[str, Any]
) -> None:
    """The defaults of what neither the user nor a resumed run gave: the default matrix, the
    limits precision chooses, smoke off and its weights."""
    if out["models"] is None:
        out["models"] = list(catalogue["catalogue_default_models"])
    if given["models"] is None and (refused := refused_models(out["models"], catalogue)):
        # A resumed run's stored models, held to today's catalogue.
        raise EvalInputError(refused)
    if out["benchmarks"] is None:
        out["benchmarks"] = list(catalogue["catalogue_default_benchmarks"])
    out["limits"] = (
        None
        if out["precision"] is None
        else precision_limits(out["precision"], out["benchmarks"], catalogue)
    )
    if out["smoke"] is None:
        out["smoke"] = False
    if out["smoke_weights"] is not None and not out["smoke"]:
        raise EvalInputError(
            f"smoke_weights={out['smoke_weights']} applies to smoke runs only; "
            "add smoke=true or leave smoke_weights out"
        )
    if out["smoke_weights"] is None:
        out["smoke_weights"] = DEFAULT_SMOKE_WEIGHTS if out["smoke"] else None


def eval_check_inputs(
    raw: Mapping[str, Any],
    catalogue: Mapping[str, Any],
    default_run_id: str,
    previous: Mapping[str, Any] | None = None,
    hostvars: Mapping[str, Any] | None = None,
    selected: Iterable[str] = (),
    inventory: Iterable[str] = (),
) -> dict[str, Any]:
    """Filter form: {"error": message or None, "inputs": normalised inputs or None,
    "catalogue": the catalogue with the run's custom models and benchmarks}, so the playbook
    can fail with the bare message rather than a templating traceback. `selected`: the hosts
    eval_hosts names, whose inventory variables come from `hostvars`."""
    hosts = {
        h: {k: (hostvars or {})[h].get(k) for k in ("eval_gpu_slots", "eval_run_batch_size")}
        for h in selected
    }
    try:
        inputs = check_inputs(raw, catalogue, default_run_id, previous, hosts, list(inventory))
    except EvalInputError as err:
        return {"error": str(err), "inputs": None, "catalogue": None}
    merged = dict(catalogue)
    merged["catalogue_models"] = {**catalogue["catalogue_models"], **inputs["custom_models"]}
    merged["catalogue_benchmarks"] = {
        **catalogue["catalogue_benchmarks"],
        **inputs["custom_benchmarks"],
    }
    return {"error": None, "inputs": inputs, "catalogue": merged}


def eval_stored_run(path: str) -> dict[str, Any]:
    """The earlier run.json of a resumed run_id: {"run": its data, "error": None}, or {"run":
    None, "error": one message} when it is unreadable or holds no inputs (torn, emptied or
    edited), which the validation step stops on before anything is written."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        why = f"not readable JSON ({err})" if isinstance(err, ValueError) else str(err)
    else:
        if isinstance(data, dict) and isinstance(data.get("inputs"), dict):
            return {"run": data, "error": None}
        why = "no 'inputs' object"
    return {
        "run": None,
        "error": (
            f"{path} cannot be read: {why}. It holds the inputs a resume of this run_id must "
            "match, so the run cannot be resumed: put back a copy of run.json, or give a new "
            "run_id (nothing of this run was changed)"
        ),
    }
