"""Validate eval.yml's extra vars against the catalogue (playbooks/vars/catalogue.yml).

Runs on the controller before any host is touched. Every check names the bad value and the
valid ones, and all problems are reported together in one message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Names that would collide with the results directory's own entries.
RESERVED_RUN_IDS = ("latest",)
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")
# Inputs that a resumed run takes from the stored run when not given again.
RESUMABLE = ("models", "benchmarks", "limit", "smoke", "smoke_weights")
# What a smoke run's LLaVA models load: checkpoints trained to answer the synthetic questions
# (the catalogue's smoke_checkpoint of each model: scores that can be checked), or tiny random
# ones (every score 0, the fastest).
SMOKE_WEIGHTS = ("known", "random")
DEFAULT_SMOKE_WEIGHTS = "known"
# The judges the worker accepts (vlmfleet.slotfile.JUDGES; tests/unit/test_catalogue.py keeps
# the two equal): VLMEvalKit's exact matching only, until a judge model can be configured.
JUDGES = ("exact_matching",)


class EvalInputError(ValueError):
    """One or more inputs are invalid; the message lists every problem."""


def _unset(value: Any) -> bool:
    return value is None or (
        isinstance(value, str) and value.strip().lower() in ("", "none", "null")
    )


def _names(value: Any, what: str, valid: list[str], errors: list[str]) -> list[str] | None:
    """A list or comma/space separated string of catalogue names, deduplicated in order."""
    if isinstance(value, str):
        items = [v for v in re.split(r"[,\s]+", value) if v]
    elif isinstance(value, list | tuple):
        items = []
        for v in value:
            if not isinstance(v, str):
                errors.append(f"{what}: {v!r} is not a name; valid {what}: {', '.join(valid)}")
                return None
            items.extend(x for x in re.split(r"[,\s]+", v) if x)
    else:
        errors.append(
            f"{what} must be a list or a comma-separated string, got {value!r}; "
            f"valid {what}: {', '.join(valid)}"
        )
        return None
    if not items:
        errors.append(f"{what} is empty; valid {what}: {', '.join(valid)}")
        return None
    unknown = [v for v in items if v not in valid]
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
        errors.append(f"unknown {what[:-1]} {bad}; valid {what}: {', '.join(valid)}")
        return None
    return list(dict.fromkeys(items))


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


def parse_count(value: Any, what: str, meaning: str, errors: list[str]) -> None:
    """A positive whole number, or unset: checked here, defaulted where the run role says."""
    if _unset(value):
        return
    if isinstance(value, bool) or not (
        (isinstance(value, int) and value >= 1)
        or (isinstance(value, str) and value.strip().isdigit() and int(value) >= 1)
    ):
        errors.append(f"{what} must be a positive whole number ({meaning}), got {value!r}")


def check_run_options(raw: Mapping[str, Any], errors: list[str]) -> None:
    """The generation options a user may set with -e (the run role's defaults apply otherwise)."""
    parse_count(raw.get("batch_size"), "eval_run_batch_size", "samples per generate call", errors)
    parse_count(raw.get("max_new_tokens"), "max_new_tokens", "tokens per answer", errors)
    judge = raw.get("judge")
    if not _unset(judge) and judge not in JUDGES:
        errors.append(
            f"eval_run_judge {judge!r} is not available; valid: {', '.join(JUDGES)} "
            "(VLMEvalKit's exact matching; this project cannot configure a judge model yet)"
        )


def check_smoke_models(models: list[str], catalogue: Mapping[str, Any]) -> None:
    """Smoke runs have checkpoints only for the models whose catalogue entry names one."""
    cat = catalogue["catalogue_models"]
    able = [m for m in cat if cat[m].get("smoke_checkpoint")]
    unable = [m for m in models if m not in able]
    if unable:
        raise EvalInputError(
            "smoke mode has no checkpoint for "
            + ", ".join(f"{m!r} (family {cat[m]['family']})" for m in unable)
            + f"; models smoke runs can load: {', '.join(able)}"
        )


def check_inputs(
    raw: Mapping[str, Any],
    catalogue: Mapping[str, Any],
    default_run_id: str,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Normalise the extra vars. `raw` holds None for an input not given; `previous` is the
    stored run.json "inputs" of the same run_id when that run exists (a resume).

    Returns {"models", "benchmarks", "limit", "run_id", "smoke", "smoke_weights", "resume",
    "allow_cpu", "resumed"}; raises EvalInputError listing every problem.
    """
    errors: list[str] = []
    valid_models = list(catalogue["catalogue_models"])
    valid_benchmarks = list(catalogue["catalogue_benchmarks"])
    given = {k: raw.get(k) for k in ("models", "benchmarks", "limit", "smoke", "smoke_weights")}
    # `models=""` on the command line means "not given", like an unset limit.
    for key in ("models", "benchmarks", "smoke", "smoke_weights"):
        if isinstance(given[key], str) and not given[key].strip():
            given[key] = None

    out: dict[str, Any] = {}
    out["models"] = (
        None if given["models"] is None else _names(given["models"], "models", valid_models, errors)
    )
    out["benchmarks"] = (
        None
        if given["benchmarks"] is None
        else _names(given["benchmarks"], "benchmarks", valid_benchmarks, errors)
    )
    out["limit"] = parse_limit(given["limit"], errors)
    out["smoke"] = None if given["smoke"] is None else parse_bool(given["smoke"], "smoke", errors)
    out["smoke_weights"] = None
    if given["smoke_weights"] is not None:
        if given["smoke_weights"] not in SMOKE_WEIGHTS:
            errors.append(
                f"smoke_weights must be one of {', '.join(SMOKE_WEIGHTS)}, "
                f"got {given['smoke_weights']!r}"
            )
        else:
            out["smoke_weights"] = given["smoke_weights"]
    out["run_id"] = parse_run_id(raw.get("run_id"), default_run_id, errors)
    check_run_options(raw, errors)
    out["resume"] = (
        True if _unset(raw.get("resume")) else parse_bool(raw.get("resume"), "resume", errors)
    )
    out["allow_cpu"] = (
        False
        if _unset(raw.get("allow_cpu"))
        else parse_bool(raw.get("allow_cpu"), "allow_cpu", errors)
    )
    if errors:
        raise EvalInputError("; ".join(errors))

    out["resumed"] = previous is not None
    if previous is not None:
        if not out["resume"]:
            raise EvalInputError(
                f"run_id {out['run_id']!r} already has results; rerun with resume=true "
                f"(the default) to finish it, or choose another run_id"
            )
        for key in RESUMABLE:
            stored = previous.get(key)
            if key == "limit" and _unset(given["limit"]):
                # An unset limit cannot be told apart from "not given": keep the stored one.
                out[key] = stored
            elif out[key] is None:
                out[key] = stored
            elif out[key] != stored:
                errors.append(
                    f"{key}={out[key]!r} differs from run {out['run_id']!r} which used "
                    f"{key}={stored!r}; resume with the same inputs or choose another run_id"
                )
        if errors:
            raise EvalInputError("; ".join(errors))
    if out["models"] is None:
        out["models"] = list(catalogue["catalogue_default_models"])
    if out["benchmarks"] is None:
        out["benchmarks"] = list(catalogue["catalogue_default_benchmarks"])
    if out["smoke"] is None:
        out["smoke"] = False
    if out["smoke_weights"] is not None and not out["smoke"]:
        raise EvalInputError(
            f"smoke_weights={out['smoke_weights']} applies to smoke runs only; "
            "add smoke=true or leave smoke_weights out"
        )
    if out["smoke_weights"] is None:
        out["smoke_weights"] = DEFAULT_SMOKE_WEIGHTS if out["smoke"] else None
    if out["smoke"]:
        check_smoke_models(out["models"], catalogue)
    return out


def eval_check_inputs(
    raw: Mapping[str, Any],
    catalogue: Mapping[str, Any],
    default_run_id: str,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Filter form: {"error": message or None, "inputs": normalised inputs or None}, so the
    playbook can fail with the bare message rather than a templating traceback."""
    try:
        return {"error": None, "inputs": check_inputs(raw, catalogue, default_run_id, previous)}
    except EvalInputError as err:
        return {"error": str(err), "inputs": None}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"eval_check_inputs": eval_check_inputs}
