"""Create, resume and look up Optuna studies for a sweep config."""

from __future__ import annotations

import inspect
import json
import logging
import os
import socket
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna

from regsweep.config.schema import StudyConfig, SweepConfig, as_stored_then
from regsweep.errors import ConfigError, StudyError
from regsweep.storage import private
from regsweep.storage.cache import worker_storage
from regsweep.storage.settings import HeartbeatSettings
from regsweep.storage.urls import redact
from regsweep.sweep.space import grid, signature

log = logging.getLogger("regsweep")

# Study user attributes regsweep owns.
CONFIG_ATTR = "regsweep_config"
SPACE_ATTR = "regsweep_search_space"
# Which data pipeline split the study's rows. Version 2 sends every data set through one
# splitter (data.resample); before it, MNIST, Fashion-MNIST, IDX and digits drew their
# validation rows (and digits its test rows) another way.
PIPELINE_ATTR = "regsweep_data_pipeline"
PIPELINE_VERSION = 2
_OLD_PIPELINE_DATASETS = ("mnist", "fashion_mnist", "idx", "digits")

_SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "gp": optuna.samplers.GPSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "grid": optuna.samplers.GridSampler,
}


def build_sampler(config: SweepConfig, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The configured sampler, seeded with ``seed`` (the study seed unless given)."""
    spec = config.study.sampler
    options = dict(spec.options)
    options.setdefault("seed", config.study.seed if seed is None else seed)
    if spec.name == "grid":
        options.setdefault("search_space", grid(config.search_space))
    return _construct(_SAMPLERS[spec.name], options, "study.sampler.options")


def worker_seed(study_seed: int, host: str | None = None, pid: int | None = None) -> int:
    """A sampler seed for one worker, derived from the study seed, its host and its pid.

    Workers seeded alike would propose the same first trials. The host matters too:
    every container's worker may run as pid 1.
    """
    host = socket.gethostname() if host is None else host
    pid = os.getpid() if pid is None else pid
    entropy = [study_seed, zlib.crc32(host.encode()), pid]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def build_pruner(config: SweepConfig) -> optuna.pruners.BasePruner:
    """The configured pruner; its resource is the epoch (1 .. train.max_epochs)."""
    spec = config.study.pruner
    options = dict(spec.options)
    if spec.name == "hyperband":
        options.setdefault("min_resource", 1)
        options.setdefault("max_resource", config.train.max_epochs)
        options.setdefault("reduction_factor", 3)
        # Optuna's, with its bracket studies made once (storage.private.HyperbandPruner).
        return _construct(private.HyperbandPruner, options, "study.pruner.options")
    if spec.name == "median":
        options.setdefault("n_startup_trials", 5)
        options.setdefault("n_warmup_steps", 1)
        return _construct(optuna.pruners.MedianPruner, options, "study.pruner.options")
    if spec.name == "successive_halving":
        options.setdefault("min_resource", 1)
        options.setdefault("reduction_factor", 3)
        return _construct(optuna.pruners.SuccessiveHalvingPruner, options, "study.pruner.options")
    return _construct(optuna.pruners.NopPruner, options, "study.pruner.options")


def _construct(factory: Callable[..., Any], options: dict[str, Any], key: str) -> Any:
    allowed = [
        name
        for name, p in inspect.signature(factory).parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and name != "self"
    ]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{key}: unknown option {', '.join(unknown)} for {factory.__name__} "
            f"(allowed: {', '.join(allowed)})"
        )
    try:
        return factory(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {factory.__name__} refused {options}: {exc}") from None


def stored_config(config: SweepConfig) -> dict[str, Any]:
    """The resolved config as stored with the study; the storage password is redacted."""
    dumped = config.model_dump(mode="json")
    dumped["study"]["storage"] = redact(config.study.storage)
    return dumped


def open_study(
    config: SweepConfig,
    storage: optuna.storages.BaseStorage,
    *,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create the study, or resume it if it exists with the same search space.

    Safe when many workers call it at once: Optuna creates the study exactly once.

    Raises:
        StudyError: the study exists with a different search space.
    """
    study = optuna.create_study(
        # A worker's own trials are written in batches and read from memory (storage.cache).
        storage=worker_storage(storage),
        study_name=config.study_name,
        direction=config.study.direction,
        sampler=sampler or build_sampler(config),
        pruner=pruner or build_pruner(config),
        load_if_exists=True,
    )
    wanted = signature(config.search_space)
    existing = study.user_attrs.get(SPACE_ATTR)
    if existing is None:
        study.set_user_attr(SPACE_ATTR, wanted)
        study.set_user_attr(CONFIG_ATTR, stored_config(config))
        study.set_user_attr(PIPELINE_ATTR, PIPELINE_VERSION)
    elif existing != wanted:
        raise StudyError(
            f"search_space: study {config.study_name!r} in {redact(config.study.storage)} was "
            f"created with a different search space ({_difference(existing, wanted)}); "
            "use another --study name, or restore the original search_space"
        )
    else:
        _check_resume(study, config)
    return study


def _check_resume(study: optuna.Study, config: SweepConfig) -> None:
    """Refuse a resume whose trials would mean something else; note other changes."""
    stored = study.user_attrs.get(CONFIG_ATTR)
    if not isinstance(stored, dict):
        return
    refused, noted = resume_changes(stored, config)
    where = f"study {config.study_name!r} in {redact(config.study.storage)}"
    if (
        study.user_attrs.get(PIPELINE_ATTR) is None
        and config.data.dataset in _OLD_PIPELINE_DATASETS
    ):
        raise StudyError(
            f"data.dataset: {where} was created by an older regsweep, which drew the "
            f"validation rows of {config.data.dataset} differently, so its trials' values "
            "would not compare with new ones; start a new study (another --study name), or "
            "finish this one with the regsweep that created it"
        )
    if refused:
        raise StudyError(
            f"{refused[0].partition(':')[0]}: {where} was created with other settings "
            f"({'; '.join(refused)}), so its trials' values would not compare with new ones; "
            "use another --study name, or restore the original settings"
        )
    for line in noted:
        # report, ablate and export keep the first run's settings, stored with the study.
        log.warning("%s: changed since the study was created (%s); new trials use it", where, line)


# What a resumed study may not change, because a trial's value would then mean something
# else than the values already stored: the data, the network and how it is trained.
_REFUSED: dict[str, tuple[str, ...] | None] = {
    "data": None,  # every key but those in _DATA_PLACES
    "model": None,
    "train": ("max_epochs", "batch_size", "optimizer", "lr", "momentum", "min_delta"),
}
# Where the data is cached and whether it may be downloaded change nothing it contains.
_DATA_PLACES = ("root", "download")
# What changes how new trials are chosen or recovered, not what a value means: a note.
_NOTED = {"study": ("seed", "sampler", "pruner", "heartbeat_interval", "grace_period", "max_retry")}


def resume_changes(stored: dict[str, Any], config: SweepConfig) -> tuple[list[str], list[str]]:
    """What ``config`` changes from the config a study was created with, as
    ``(refused, noted)`` lines like ``train.lr: 0.001 -> 0.01``."""
    try:
        before = SweepConfig.model_validate(as_stored_then(stored)).model_dump(mode="json")
    except ValueError:
        return [], []  # written by another regsweep version: nothing to compare reliably
    now = config.model_dump(mode="json")

    def changed(section: str, keys: tuple[str, ...] | None) -> list[str]:
        names = keys or tuple(
            k for k in now[section] if not (section == "data" and k in _DATA_PLACES)
        )
        return [
            f"{section}.{key}: {json.dumps(before[section].get(key))} -> "
            f"{json.dumps(now[section].get(key))}"
            for key in names
            if before[section].get(key) != now[section].get(key)
        ]

    refused = [line for section, keys in _REFUSED.items() for line in changed(section, keys)]
    noted = [line for section, keys in _NOTED.items() for line in changed(section, keys)]
    return refused, noted


def _difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    changed = [name for name in new if old.get(name) != new.get(name)]
    return "; ".join(
        f"{name}: stored {_brief(old.get(name))}, now {_brief(new.get(name))}" for name in changed
    )


def _brief(spec: Any) -> str:
    if isinstance(spec, dict):
        # Leave out unset keys (None) and log: false, but never a low of 0 (0 == False).
        return json.dumps(
            {k: v for k, v in spec.items() if v is not None and not (k == "log" and v is False)}
        )
    return json.dumps(spec)


def find_study(storage: optuna.storages.BaseStorage, name: str | None, url: str) -> optuna.Study:
    """Load an existing study; with no name, the storage's only study.

    Raises:
        StudyError: no such study, or several and no name given.
    """
    names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
    if name is None:
        if len(names) == 1:
            name = names[0]
        elif not names:
            raise StudyError(
                f"--study: {redact(url)} holds no study yet; run `regsweep launch` first"
            )
        else:
            raise StudyError(
                f"--study: {redact(url)} holds several studies; pick one of: {', '.join(names)}"
            )
    if name not in names:
        listed = ", ".join(names) if names else "none"
        raise StudyError(
            f"--study: no study named {name!r} in {redact(url)} (studies there: {listed})"
        )
    return optuna.load_study(study_name=name, storage=storage)


def config_of(study: optuna.Study) -> SweepConfig | None:
    """The resolved sweep config stored with the study by regsweep, if any."""
    raw = study.user_attrs.get(CONFIG_ATTR)
    return SweepConfig.model_validate(as_stored_then(raw)) if raw else None


def heartbeat_settings(study: StudyConfig) -> HeartbeatSettings:
    """The storage's heartbeat settings from the sweep file's ``study`` section."""
    return HeartbeatSettings(study.heartbeat_interval, study.grace_period, study.max_retry)
