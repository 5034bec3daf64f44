"""Read a sweep file and resolve it into a :class:`SweepConfig`.

Precedence, highest first, is decided in :func:`resolve_config` alone:
command-line flag > ``--set key.path=value`` > ``REGSWEEP_STORAGE`` (storage only)
> the sweep file > the defaults declared in :mod:`regsweep.config.schema`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from regsweep.config.schema import SweepConfig
from regsweep.errors import ConfigError, StorageError
from regsweep.storage.urls import parse_url, redact

STORAGE_ENV = "REGSWEEP_STORAGE"


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a sweep file with ``yaml.safe_load``; every failure becomes one line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such sweep file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, expected a sweep file (.yaml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read sweep file ({exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        line = _line_of(exc)
        tag = (exc.problem or "").split("tag ")[-1].replace("tag:yaml.org,2002:", "!!")
        raise ConfigError(
            f"{path}{line}: YAML tag {tag} is not allowed "
            "(sweep files are plain YAML: strings, numbers, booleans, lists and mappings)"
        ) from None
    except yaml.YAMLError as exc:
        line = _line_of(exc)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{line}: YAML syntax error: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of sections (study, data, model, train, search_space, "
            f"verdict), got {type(raw).__name__}"
        )
    return raw


def _line_of(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f":{mark.line + 1}" if mark is not None else ""


def parse_set(assignments: Sequence[str]) -> dict[str, Any]:
    """Turn ``["train.max_epochs=3"]`` into ``{"train.max_epochs": 3}`` (values are YAML)."""
    parsed: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(
                f"--set {assignment!r}: expected key.path=value, e.g. --set train.max_epochs=3"
            )
        try:
            parsed[key] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot parse value {text!r} as YAML") from None
    return parsed


def _assign(tree: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            # `dropout: 0.1` is a fixed value; setting dropout.high turns it into a range.
            here = ".".join(parts[: depth + 1])
            if isinstance(child, (int, float, bool)) and parts[depth + 1] in {"low", "high"}:
                child = node[part] = {}
            else:
                shown = redact(child) if isinstance(child, str) else child
                raise ConfigError(f"{source} {dotted}: {here} holds {shown!r}, not a section")
        node = child
    node[parts[-1]] = value


def resolve_config(
    raw: Mapping[str, Any],
    *,
    source: str,
    sets: Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    default_name: str | None = None,
) -> SweepConfig:
    """Merge every source of settings in precedence order and validate once.

    Args:
        raw: The parsed sweep file.
        source: Where ``raw`` came from, for error messages (usually the file path).
        sets: ``--set`` overrides as dotted paths.
        flags: Dedicated command-line flags as dotted paths; ``None`` values are unset.
        env: The environment (``os.environ`` when omitted), for ``REGSWEEP_STORAGE``.
        default_name: The study name when none is given (the sweep file's stem).
    """
    env = os.environ if env is None else env
    merged: dict[str, Any] = copy.deepcopy(dict(raw))
    origin: dict[str, str] = {}
    if env.get(STORAGE_ENV):
        _assign(merged, "study.storage", env[STORAGE_ENV], STORAGE_ENV)
        origin["study.storage"] = STORAGE_ENV
    for key, value in (sets or {}).items():
        _assign(merged, key, value, "--set")
        origin[key] = f"--set {key}"
    for key, value in (flags or {}).items():
        if value is not None:
            _assign(merged, key, value, "flag")
            origin[key] = "--" + key.split(".")[-1].replace("_", "-")
    try:
        config = SweepConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, origin)) from None
    try:
        parse_url(config.study.storage)
    except StorageError as exc:
        # Say where the bad URL came from: a flag, --set, REGSWEEP_STORAGE or the file.
        raise StorageError(f"{origin.get('study.storage', source)}: {exc}") from None
    if config.study.name is None:
        config.study.name = default_name or "regsweep"
    return config


def load_sweep(
    path: Path | str,
    *,
    sets: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> SweepConfig:
    """Read, override and validate a sweep file: the one entry point the CLI uses."""
    path = Path(path)
    return resolve_config(
        read_yaml(path),
        source=str(path),
        sets=parse_set(sets),
        flags=flags,
        env=env,
        default_name=path.stem,
    )


def format_validation_error(
    exc: ValidationError, source: str, origin: Mapping[str, str] | None = None
) -> str:
    """One line per problem: where it came from, the key path, what is wrong, what is allowed."""
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        key = ".".join(loc)
        where = _origin_of(key, origin or {}) or source
        lines.append(f"{where}: {key or '(top level)'}: {_describe(error, loc)}")
    return "\n".join(dict.fromkeys(lines))


def _origin_of(key: str, origin: Mapping[str, str]) -> str | None:
    for path, label in origin.items():
        if key == path or key.startswith(path + ".") or path.startswith(key + "."):
            return label
    return None


def _describe(error: Mapping[str, Any], loc: tuple[str, ...]) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return f"unknown key (allowed: {', '.join(allowed)})" if allowed else "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "value_error":
        return message
    if kind in {"literal_error", "enum"}:
        return f"{value!r} is not allowed; {message[0].lower()}{message[1:]}"
    return f"{message[0].lower()}{message[1:]}, got {value!r}"


def _allowed_keys(loc: tuple[str, ...]) -> list[str]:
    """Walk the config model along ``loc`` to list the keys that section accepts."""
    model: type[BaseModel] | None = SweepConfig
    for part in loc:
        if model is None or part not in model.model_fields:
            return []
        annotation = model.model_fields[part].annotation
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    if model is None:
        return []
    return [name for name in model.model_fields if name != "value"]
