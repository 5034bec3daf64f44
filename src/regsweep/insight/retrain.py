"""Paired retrains of the best config's variants: one pack per seed, or one model at a time.

Ablation and dose-response paths both retrain a set of variants (regularizer settings)
of the best config over several seeds and compare them seed by seed. For the comparison
to be paired, every variant of a seed starts from the same initial weights
(``recipe.paired_model``) and sees the same mini-batch order (the seed shuffles). That is
exactly what a pack trains together, so by default each seed's variants are one
``engine.pack.Pack``, the engine sweeps use; ``engine="solo"`` trains the same runs one
model at a time through ``engine.fit`` (the baseline of ``benchmarks/ablation.py``).

Runs with early stopping are measured on their best epoch's weights, as a trial is; runs
without it (patience >= max_epochs) on their last epoch's, as a model trained without
early stopping is.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any, Literal

from regsweep.config.regularization import Regularization
from regsweep.config.schema import SweepConfig
from regsweep.data.tasks import metric_names

if TYPE_CHECKING:
    import torch

    from regsweep.data.splits import Splits
    from regsweep.engine.fit import FitResult

Engine = Literal["packed", "solo"]
Job = tuple[str, dict[str, Any]]  # a variant's key and its five params
RunDone = Callable[[str, dict[str, Any]], None]


def _init_worker(threads: int) -> None:
    import torch

    # Several processes each using every core would fight over them and all run slower.
    torch.set_num_threads(threads)


def measure(
    model: torch.nn.Module,
    result: FitResult,
    reg: Regularization,
    splits: Splits,
    max_epochs: int,
    seed: int,
) -> dict[str, Any]:
    """What a retrain reports: metrics on every split, the gap, sparsity and its story."""
    from regsweep.engine.fit import evaluate
    from regsweep.engine.model import weight_sparsity

    early_stopping = reg.patience < max_epochs
    run: dict[str, Any] = {"seed": seed, **dict.fromkeys(metric_names(splits.task))}
    run.update(splits.scores("val", *evaluate(model, splits.val_x, splits.val_y)))
    if splits.test_x is not None and splits.test_y is not None:
        run.update(splits.scores("test", *evaluate(model, splits.test_x, splits.test_y)))
    # The training loss of the measured weights in eval mode (no dropout, running BN
    # statistics): the same footing as the validation loss, so the gap is overfitting,
    # not dropout's noise.
    run["train_loss"] = evaluate(model, splits.train_x, splits.train_y)[0]
    run["gap"] = run["val_loss"] - run["train_loss"]
    run.update(
        weights="best epoch" if early_stopping else "last epoch",
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        stopped_early=result.stopped_early,
        weight_sparsity=weight_sparsity(model),
        diverged=False,
        train_loss_curve=[m.train_loss for m in result.history],
        val_loss_curve=[m.val_loss for m in result.history],
    )
    return run


def _diverged(seed: int, result: FitResult) -> dict[str, Any]:
    return {
        "seed": seed,
        "diverged": True,
        "epochs_run": result.epochs_run,
        "train_loss_curve": [m.train_loss for m in result.history],
        "val_loss_curve": [m.val_loss for m in result.history],
    }


def retrain_solo(config_json: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train one variant with one seed, one model at a time (the paired init of a pack)."""
    from regsweep.data.splits import load_splits, resolve_device
    from regsweep.engine.fit import fit
    from regsweep.engine.recipe import paired_model
    from regsweep.errors import TrialDiverged

    config = SweepConfig.model_validate_json(config_json)
    splits = load_splits(config.data, config.study.seed, resolve_device(config.train.device))
    reg = Regularization.from_params(params)
    max_epochs = config.train.max_epochs
    model = paired_model(config, splits, reg, seed)
    try:
        result = fit(
            model, splits, config.train, reg, seed=seed, restore_best=reg.patience < max_epochs
        )
    except TrialDiverged:
        from regsweep.engine.fit import FitResult

        return _diverged(seed, FitResult())
    return measure(model, result, reg, splits, max_epochs, seed)


def retrain_pack(config_json: str, jobs: list[Job], seed: int) -> dict[str, dict[str, Any]]:
    """Train every variant in ``jobs`` with ``seed`` as one pack; returns each one's run."""
    from regsweep.data.splits import load_splits, resolve_device
    from regsweep.engine.pack import Pack
    from regsweep.engine.recipe import paired_model

    config = SweepConfig.model_validate_json(config_json)
    splits = load_splits(config.data, config.study.seed, resolve_device(config.train.device))
    max_epochs = config.train.max_epochs
    pack = Pack(config, splits, shuffle_seed=seed)
    regs: dict[Hashable, Regularization] = {}
    for key, params in jobs:
        regs[key] = reg = Regularization.from_params(params)
        pack.admit(key, reg, seed, model=paired_model(config, splits, reg, seed))
    runs: dict[str, dict[str, Any]] = {}
    while len(pack):
        ended = [e for e in pack.run_epoch() if e.done or e.diverged]
        models: dict[Hashable, torch.nn.Module] = {}
        for epoch in ended:
            if epoch.diverged:
                continue
            position = pack.keys.index(epoch.key)
            member = pack.members[position]
            early_stopping = regs[epoch.key].patience < max_epochs
            state = member.best_state if early_stopping else None
            models[epoch.key] = pack.member_model(
                epoch.key, state or pack.model.member_state(position)
            )
        diverged = {e.key for e in ended if e.diverged}
        for member_key, result in pack.release({e.key for e in ended}):
            key = str(member_key)
            if key in diverged:
                runs[key] = _diverged(seed, result)
            else:
                runs[key] = measure(models[key], result, regs[key], splits, max_epochs, seed)
    return runs


def run_retrains(
    config: SweepConfig,
    jobs: list[Job],
    seeds: list[int],
    *,
    workers: int | None = None,
    engine: Engine = "packed",
    on_run: RunDone | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every job with every seed; each job's runs in the order of ``seeds``.

    Packed: one pack per seed, the seeds spread over worker processes. Solo: one
    process task per (job, seed).
    """
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, _ in jobs}
    config_json = config.model_dump_json()
    tasks: list[tuple[Callable[..., Any], tuple[Any, ...]]]
    if engine == "packed":
        tasks = [(retrain_pack, (config_json, jobs, seed)) for seed in seeds]
    else:
        tasks = [(retrain_solo, (config_json, p, seed)) for seed in seeds for _, p in jobs]
    # A pack returns all its jobs' runs at once; a solo task one run, of this job.
    keys_of: list[str | None] = (
        [None] * len(tasks) if engine == "packed" else [key for _ in seeds for key, _ in jobs]
    )

    def record(index: int, value: Any) -> None:
        key_of = keys_of[index]
        found = value if key_of is None else {key_of: value}
        for key, run in found.items():
            runs[key].append(run)
            if on_run is not None:
                on_run(key, run)

    n_workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    if n_workers == 1:
        for index, (function, args) in enumerate(tasks):
            record(index, function(*args))
    else:
        import torch

        threads = max(1, torch.get_num_threads() // n_workers)
        # spawn, not fork: a forked copy of a process that already ran torch can deadlock.
        with ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(threads,),
        ) as pool:
            futures: dict[Future[Any], int] = {
                pool.submit(function, *args): index for index, (function, args) in enumerate(tasks)
            }
            try:
                for future in as_completed(futures):
                    record(futures[future], future.result())
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    position = {seed: i for i, seed in enumerate(seeds)}
    for key in runs:
        runs[key].sort(key=lambda run: position[run["seed"]])
    return runs
