"""Preflight checks on a host's readings (nvidia-smi, image labels) and on what its slots need
(gated models). Pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ansible_collections.vlmfleet.shared.plugins.module_utils import contract
from ansible_collections.vlmfleet.shared.plugins.module_utils.secret_env import parse_env_file

MIB_PER_GIB = 1024
BYTES_PER_GIB = 2**30
# The Hugging Face hub cache under the eval_dirs root (the image's HF_HUB_CACHE, /cache/hub).
HUB_CACHE = "hf-cache/hub"
# huggingface_hub's own defaults and true words (constants.py of the image's huggingface-hub):
# the worker's downloads follow HF_ENDPOINT and stop at HF_HUB_OFFLINE, which it takes from the
# host's .env (vlmfleet.secret_env); transformers also stops at TRANSFORMERS_OFFLINE.
DEFAULT_HUB_ENDPOINT = "https://huggingface.co"
HUB_OFFLINE_KEYS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
HUB_TRUE_WORDS = ("1", "ON", "YES", "TRUE")


def gpu_free_mib(query_stdout: str) -> dict[int, int]:
    """`nvidia-smi --query-gpu=index,memory.used,memory.total --format=csv,noheader,nounits`
    -> {index: free MiB}."""
    free = {}
    for line in query_stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3:
            continue
        index, used, total = (int(float(p)) for p in parts)
        free[index] = total - used
    return free


def slots_short_of_memory(
    slots: Iterable[Mapping[str, Any]],
    free_mib: Mapping[int, int],
    models: Mapping[str, Mapping[str, Any]],
    smoke: bool = False,
) -> list[str]:
    """One line per GPU (or group) whose free memory is below what its slots need at once:
    each slot holds one model at a time, so the slots sharing a GPU need the sum of their
    biggest models."""
    sharing: dict[tuple[int, ...], list[Mapping[str, Any]]] = {}
    for slot in slots:
        if slot.get("device") == "cuda" and not smoke:
            sharing.setdefault(tuple(int(g) for g in slot["gpus"]), []).append(slot)
    problems = []
    for gpus, group in sharing.items():
        names = ", ".join(s["slot"] for s in group)
        missing = [g for g in gpus if g not in free_mib]
        if missing:
            problems.append(f"{names}: GPU {missing} not reported by nvidia-smi")
            continue
        free_gib = sum(free_mib[g] for g in gpus) / MIB_PER_GIB
        biggest = [
            max(slot["models"], key=lambda m: float(models[m]["gpu_memory_gib"]))
            for slot in group
            if slot["models"]
        ]
        need = sum(float(models[m]["gpu_memory_gib"]) for m in biggest)
        if free_gib < need:
            what = (
                f"{biggest[0]} needs"
                if len(biggest) == 1
                else f"{' + '.join(biggest)} (one per slot, at once) need"
            )
            problems.append(
                f"{names} (GPU {list(gpus)}): {what} {need:g} GiB, {free_gib:.1f} GiB free"
            )
    return problems


def model_repos(
    models: Mapping[str, Mapping[str, Any]], names: Iterable[str]
) -> list[dict[str, Any]]:
    """Every repo the named models load, each once: a model's own weights (hf_repo, disk_gib)
    and its extra_repos (vision towers, tokenizers), or a custom model's checkpoint, which the
    run ships to models/<name>. [{repo, path (under the eval_dirs root), disk_gib, hub (whether
    it comes from the hub), gated, models}]."""
    repos: dict[str, dict[str, Any]] = {}
    for name in names:
        spec = models[name]
        if spec.get("custom"):
            own = {"repo": f"custom model {name}", "path": f"models/{name}", "hub": False}
        else:
            own = {"repo": spec["hf_repo"], "gated": spec.get("gated") is True}
        for entry in [own | {"disk_gib": spec["disk_gib"]}, *spec.get("extra_repos", [])]:
            path = entry.get("path") or f"{HUB_CACHE}/{hub_folder(entry['repo'])}"
            repo = repos.setdefault(
                entry["repo"],
                {
                    "repo": entry["repo"],
                    "path": path,
                    "disk_gib": entry["disk_gib"],
                    "hub": entry.get("hub", True),
                    "gated": entry.get("gated", False),
                    "models": [],
                },
            )
            repo["models"].append(name)
    return list(repos.values())


def hub_folder(repo: str) -> str:
    """A hub repo's folder in the Hugging Face cache."""
    return "models--" + repo.replace("/", "--")


def hub_settings(env_lines: Iterable[str]) -> dict[str, Any]:
    """The hub settings a host's .env gives its workers, from its HF_ENDPOINT and
    HUB_OFFLINE_KEYS lines (read
    alone, so no secret reaches Ansible), parsed as the worker parses the file: {endpoint,
    offline: the NAME=value that stops downloads, or None}."""
    env = parse_env_file("\n".join(env_lines))
    offline = next(
        (f"{k}={env[k]}" for k in HUB_OFFLINE_KEYS if env.get(k, "").upper() in HUB_TRUE_WORDS),
        None,
    )
    return {
        "endpoint": (env.get("HF_ENDPOINT") or DEFAULT_HUB_ENDPOINT).rstrip("/"),
        "offline": offline,
    }


def weights_unobtainable(
    stats: Iterable[Mapping[str, Any]],
    settings: Mapping[str, Any],
    probe: Mapping[str, Any] | None,
    host: str,
    root: str,
) -> str | None:
    """Why the hub weights a host's slots load can be neither read nor downloaded there, with
    what to do, or None. ``stats``: the stat results of model_repos' paths (a registered loop);
    ``settings``: hub_settings; ``probe``: the uri result of a HEAD request to its endpoint
    (None when none was made); ``root``: the eval_dirs root."""
    missing = [r["item"] for r in stats if r["item"]["hub"] and not r.get("stat", {}).get("exists")]
    if not missing:
        return None
    if settings["offline"]:
        cause = f"{root}/.env sets {settings['offline']}, so the workers do not download"
    elif probe is not None and int(probe.get("status", -1)) > 0:
        return None
    else:
        # uri's message leads with the status it expected; the cause follows.
        why = str((probe or {}).get("msg") or "no answer").split("Request failed: ", 1)[-1]
        cause = f"the hub, {settings['endpoint']}, cannot be reached from {host} ({why})"
    by_model: dict[str, list[str]] = {}
    for repo in missing:
        for model in repo["models"]:
            by_model.setdefault(model, []).append(repo["repo"])
    needs = "; ".join(f"{m} needs {', '.join(repos)}" for m, repos in by_model.items())
    gated = [r["repo"] for r in missing if r["gated"]]
    return (
        f"{host}: weights the planned models load are not in this host's Hugging Face cache, "
        f"and {cause}: {needs}. Put them in the cache at "
        f"{root}/{HUB_CACHE} ({', '.join(hub_folder(r['repo']) for r in missing)}, as the hub's "
        "own download lays them out, e.g. huggingface-cli download on a machine that reaches "
        f"the hub), let {host} reach {settings['endpoint']} (or a mirror: HF_ENDPOINT in "
        f"{root}/.env)"
        + (f", with a token for the gated {', '.join(gated)} (eval_dirs_hf_token)" if gated else "")
        + ", or ship a checkpoint of your own as a custom model (custom_models)"
    )


def data_files(
    slots: Iterable[Mapping[str, Any]],
    benchmarks: Mapping[str, Mapping[str, Any]],
    source: str,
    data_dir: str | None,
    smoke: bool = False,
) -> list[dict[str, Any]]:
    """Every benchmark TSV a host's slots read from its LMUData in a real run, once each:
    {name, tsv and images (their paths under the eval_dirs root), src (the controller file the
    run ships: a custom benchmark's tsv, or data_dir/<name>.tsv with data_source=ship;
    None where VLMEvalKit downloads it on the host), bytes (src's size, or None)}. Smoke runs
    write their own small synthetic data: none."""
    if smoke:
        return []
    sources: dict[str, str | None] = {}
    for slot in slots:
        for unit in slot["slot_file"]["units"]:
            for bench in unit["benchmarks"]:
                name = bench["name"]
                if bench.get("md5") is not None:
                    src: str | None = str(benchmarks[name]["tsv"])
                elif source == "ship":
                    src = str(Path(str(data_dir)) / f"{name}.tsv")
                else:
                    src = None
                sources.setdefault(name, src)
    return [
        {
            "name": name,
            "tsv": f"LMUData/{name}.tsv",
            "images": f"LMUData/{contract.LMU_IMAGES_DIR}/{name}",
            "src": src,
            "bytes": Path(src).stat().st_size if src else None,
        }
        for name, src in sources.items()
    ]


def data_need(
    files: Iterable[Mapping[str, Any]], stats: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """What ``files`` (data_files) still need on a host, from the stat results of their tsv and
    images paths (a registered loop over those paths): {gib, counted: ["<name> <GiB> GiB"],
    unknown: the names VLMEvalKit is still to download, whose size only its server knows (the
    preparation asks it before downloading)}. A TSV already there with the shipped file's size
    needs nothing more; images count until their folder exists."""
    present = {r["item"]: r.get("stat", {}) for r in stats}
    total, counted, unknown = 0, [], []
    for entry in files:
        tsv = present.get(entry["tsv"], {})
        if entry["bytes"] is None:
            if not tsv.get("exists"):
                unknown.append(entry["name"])
            continue
        same = bool(tsv.get("exists")) and tsv.get("size") == entry["bytes"]
        images = bool(present.get(entry["images"], {}).get("exists"))
        need = contract.data_bytes(int(entry["bytes"]), same, images)
        if need:
            total += need
            counted.append(f"{entry['name']} {need / BYTES_PER_GIB:.2f} GiB")
    return {"gib": round(total / BYTES_PER_GIB, 3), "counted": counted, "unknown": unknown}


def gated_models(
    slots: Iterable[Mapping[str, Any]],
    models: Mapping[str, Mapping[str, Any]],
    smoke: bool = False,
) -> list[str]:
    """The planned models whose catalogue entry says ``gated: true``, sorted: their weights
    download only with a Hugging Face token. None in smoke runs, which download nothing."""
    if smoke:
        return []
    planned = {m for slot in slots for m in slot.get("models", [])}
    return sorted(m for m in planned if models.get(m, {}).get("gated") is True)


def judged_benchmarks(slots: Iterable[Mapping[str, Any]]) -> list[str]:
    """The planned benchmarks whose answers a judge model matches (their host needs its key)."""
    names = (
        bench["name"]
        for slot in slots
        for unit in slot["slot_file"]["units"]
        for bench in unit["benchmarks"]
        if bench["judge"] != contract.EXACT_MATCHING
    )
    return list(dict.fromkeys(names))


def label_problems(labels: Mapping[str, str] | None, expected: Mapping[str, Any]) -> list[str]:
    """Expected image labels that are absent or differ (an empty expected value: any)."""
    labels = labels or {}
    problems = []
    for key, want in expected.items():
        if key not in labels:
            problems.append(f"label {key} missing")
        elif want not in (None, "") and str(labels[key]) != str(want):
            problems.append(f"label {key}={labels[key]!r}, expected {want!r}")
    return problems
