"""The one table of eval.yml's inputs: every `-e` name, what it means, whether a resumed run
takes it from the stored run, the role variable it becomes, and the names it had before.

The validation step reads the given inputs through this table (filter eval_given_inputs), the
checker (inputs.py) parses them, and eval_run's variables, its argument specs, README and
eval.yml's header are held to it by tests/unit/controller/test_input_table.py.

Naming rule: an `-e` input is a bare word (`limit`, `judge`, `data_source`). The one exception is
`eval_hosts`: `hosts` is one of Ansible's play keywords, which a variable must not reuse. A
role's own variables keep their role prefix (`eval_run_data_source`); an inventory's per-host
settings keep theirs too (`eval_gpu_slots`, `eval_run_batch_size`), since they are the role's
variables set for one host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EvalInput:
    name: str
    meaning: str
    # A resumed run takes the stored run's value when this input is not given again, and
    # refuses a different one.
    resumable: bool = False
    # A resumed run takes the stored run's value when this input is not given again, and
    # accepts a new one: how the work is cut up, which does not change a result.
    kept: bool = False
    # The variable of role eval_run this input becomes (playbooks/eval_run.yml), if any.
    role_var: str | None = None
    # Names this input had before; still accepted, each with a deprecation line.
    old_names: tuple[str, ...] = ()


EVAL_INPUTS: tuple[EvalInput, ...] = (
    EvalInput("models", "models to run: a list or comma string of catalogue names", True),
    EvalInput("benchmarks", "benchmarks to run: a list or comma string of names", True),
    EvalInput("limit", "samples per benchmark; unset: whole benchmarks", True),
    EvalInput("precision", "instead of limit: each benchmark's 95% interval half-width", True),
    EvalInput("run_id", "the run's name; an existing one is resumed", role_var="eval_run_run_id"),
    EvalInput(
        "smoke", "known-answer or tiny checkpoints and synthetic data", True, "eval_run_smoke"
    ),
    EvalInput("smoke_weights", "smoke runs: known or random checkpoints", True),
    EvalInput("resume", "false refuses to touch an existing run_id"),
    EvalInput("allow_cpu", "GPU-less hosts get a CPU slot outside smoke mode too"),
    EvalInput("results_dir", "where results go on the controller"),
    EvalInput("eval_hosts", "inventory pattern of the hosts that run"),
    EvalInput("max_new_tokens", "cap on generated tokens per answer", True),
    # A host's own batch size is its inventory's eval_run_batch_size (-e sets it for every host).
    EvalInput("batch_size", "the run's samples per generate call, or auto"),
    EvalInput("shard_rows", "at most this many rows per shard of a benchmark", kept=True),
    EvalInput("judge", "exact_matching or openai", True, old_names=("eval_run_judge",)),
    EvalInput("judge_model", "the openai judge's model", True, old_names=("eval_judge_model",)),
    EvalInput(
        "judge_base_url",
        "the openai judge's base URL",
        True,
        old_names=("eval_judge_base_url",),
    ),
    EvalInput(
        "data_source",
        "real runs: download or ship the official TSVs",
        role_var="eval_run_data_source",
        old_names=("eval_data_source",),
    ),
    EvalInput(
        "data_dir",
        "ship: the controller's directory of TSVs",
        role_var="eval_run_data_dir",
        old_names=("eval_data_dir",),
    ),
    EvalInput("custom_models", "real runs: your own checkpoints"),
    EvalInput("custom_benchmarks", "real runs: your own benchmark TSVs"),
    EvalInput("compare_to", "an earlier run to compare with, in the report"),
)

INPUT_NAMES: tuple[str, ...] = tuple(i.name for i in EVAL_INPUTS)
RESUMABLE: tuple[str, ...] = tuple(i.name for i in EVAL_INPUTS if i.resumable)
KEPT: tuple[str, ...] = tuple(i.name for i in EVAL_INPUTS if i.kept)


def eval_recorded_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The settled inputs run.json keeps for a resume of the run: its run_id, the inputs a
    resume must not change and those it keeps unless given again."""
    return {k: inputs.get(k) for k in ("run_id", *RESUMABLE, *KEPT)}


def eval_input_names(_: Any = None) -> list[str]:
    """Every name the validation step reads: the inputs' names, then their old names."""
    return [*INPUT_NAMES, *(old for i in EVAL_INPUTS for old in i.old_names)]


def _given(value: Any) -> bool:
    return value is not None


def eval_given_inputs(given: Mapping[str, Any]) -> dict[str, Any]:
    """{"raw": {name: value or None} under today's names, "deprecations": [line, ...],
    "error": message or None} from the values of eval_input_names (None: not set).

    An old name's value counts as the input's when the input itself is not given; both given
    with different values is refused, since either could be the one meant.
    """
    raw = {name: given.get(name) for name in INPUT_NAMES}
    deprecations, conflicts = [], []
    for entry in EVAL_INPUTS:
        for old in entry.old_names:
            if not _given(given.get(old)):
                continue
            deprecations.append(
                f"{old} is an old name of eval.yml's input {entry.name}: use -e "
                f"{entry.name}=... (the old name is still read, for now)"
            )
            if not _given(raw[entry.name]):
                raw[entry.name] = given[old]
            elif raw[entry.name] != given[old]:
                conflicts.append(
                    f"{entry.name}={raw[entry.name]!r} and its old name {old}={given[old]!r} "
                    f"disagree; give {entry.name} only"
                )
    return {
        "raw": raw,
        "deprecations": deprecations,
        "error": "; ".join(conflicts) or None,
    }
