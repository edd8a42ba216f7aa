"""Load and validate the pipeline config; cut per-stage views; the results layout.

The schema is `workflow/schemas/config.schema.yaml`, the same file Snakemake's `validate()` uses.
A stage sees only its *view*: the top-level sections it declares in the registry, `most.stages`. Snakemake writes
each view to `results/<run>/config/<stage>.yaml`, so editing a section reruns exactly the stages
that read it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from most import REPO_ROOT
from most.stages import STAGES

SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = Path("config") / "config.yaml"


class ConfigError(ValueError):
    """A config value is missing, unknown or of the wrong type; the message names its key path."""


def _schema() -> dict:
    if not SCHEMA_PATH.exists():
        raise ConfigError(f"config schema not found at {SCHEMA_PATH}; run `most` from a checkout of the repository")
    with open(SCHEMA_PATH) as handle:
        return yaml.safe_load(handle)


def _key_path(path: Iterable[Any]) -> str:
    parts = []
    for part in path:
        parts.append(f"[{part}]" if isinstance(part, int) else (f".{part}" if parts else str(part)))
    return "".join(parts) or "<top level>"


def validate(config: dict, source: str = "config", sections: Iterable[str] | None = None) -> dict:
    """Validate `config` (in place: fills schema defaults) and return it.

    With `sections`, only those top-level sections are required (a stage view).
    """
    import jsonschema

    schema = _schema()
    if sections is not None:
        schema = copy.deepcopy(schema)
        schema["required"] = sorted(sections)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        lines = []
        for error in errors[:20]:
            key = _key_path(error.absolute_path)
            if error.validator == "additionalProperties":
                lines.append(f"  {key}: {error.message} (unknown key)")
            else:
                lines.append(f"  {key}: {error.message}")
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise ConfigError(f"invalid config in {source}:\n" + "\n".join(lines) + more)
    _check_consistency(config, source)
    return config


def _check_consistency(config: dict, source: str) -> None:
    """Rules a JSON schema cannot express."""
    synthesis = config.get("download", {}).get("synthesis")
    if synthesis:
        voices = synthesis["voices"]
        shared = sorted(set(voices["test"]) & (set(voices["train"]) | set(voices["dev"])))
        if shared:
            raise ConfigError(
                f"invalid config in {source}:\n  download.synthesis.voices.test: {shared} also speak train/dev data; test voices must be unseen"
            )
        if synthesis["output_voice"]["name"] in set(voices["dev"]) | set(voices["test"]):
            raise ConfigError(
                f"invalid config in {source}:\n  download.synthesis.output_voice.name: {synthesis['output_voice']['name']!r} is a dev/test "
                "voice; the model learns to speak in the output voice, so held-out voices must not be it"
            )
        for key in ("rate", "pitch", "neural_length_scale"):
            low, high = synthesis[key]
            if low > high:
                raise ConfigError(f"invalid config in {source}:\n  download.synthesis.{key}: lower bound {low} exceeds upper bound {high}")
    download = config.get("download")
    if download:
        listed = download["hub"] + download["local"] + download["pair_sets"]
        names = [s["name"] for s in listed] + (["embedded"] if download["embedded"]["enabled"] else [])
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"invalid config in {source}:\n  download: source name(s) {duplicates} used twice")
        if not names:
            raise ConfigError(f"invalid config in {source}:\n  download: no source (enable download.embedded or list hub/local sources)")
    prepare = config.get("prepare")
    if prepare and prepare["min_duration_s"] >= prepare["max_duration_s"]:
        raise ConfigError(f"invalid config in {source}:\n  prepare.min_duration_s: must be below prepare.max_duration_s")
    base_lm = config.get("base_lm")
    if base_lm and base_lm["num_experts_per_token"] > base_lm["num_routed_experts"] // 2:
        raise ConfigError(
            f"invalid config in {source}:\n  base_lm.num_experts_per_token must fit in half the routed experts (one modality group)"
        )


def read_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        with open(path) as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def load(path: str | os.PathLike = DEFAULT_CONFIG) -> dict:
    """Load and validate a whole config file."""
    return validate(read_yaml(path), source=str(path))


def load_for_stage(path: str | os.PathLike, stage: str) -> tuple[dict, dict | None]:
    """(view of `stage`, whole config or None) from a whole config file or a view the workflow wrote."""
    sections = STAGES[stage].reads
    data = read_yaml(path)
    if set(data) == set(sections):
        return validate(data, source=str(path), sections=sections), None
    whole = validate(data, source=str(path))
    return view(whole, stage), whole


def view(config: dict, stage: str) -> dict:
    """The top-level sections `stage` reads (what its params and resolved config hold)."""
    return {key: copy.deepcopy(config[key]) for key in STAGES[stage].reads}


def write_view(config_view: dict, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        handle.write("# Resolved by the workflow from the run's config; this stage reads only these sections.\n")
        yaml.safe_dump(config_view, handle, sort_keys=True, default_flow_style=False)


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values (for MLflow params)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
