"""Paired retrains of the best config's variants over repetitions: one pack per repetition.

Ablation and dose-response paths both retrain a set of variants (regularizer settings)
of the best config over several *repetitions* and compare them repetition by
repetition. Repetition r (``data.resample.repetition``) draws its own fit, validation
and assessment rows from the training data, refits the preprocessor on its fit rows,
and has its own seed for the initial weights, the batch order and the dropout streams.
Every variant of a repetition shares all of these (``recipe.paired_model`` gives them
the same initial weights), so it differs from the best config in its regularizer alone:
exactly what a pack trains together. By default each repetition's variants are one
``engine.pack.Pack``, the engine sweeps use; ``engine="solo"`` trains the same runs one
model at a time through ``engine.fit``.

Every run is scored on its repetition's assessment rows, which chose nothing: runs with
early stopping at the epoch their validation rows chose, runs without it (patience >=
max_epochs) at their last epoch. The data set's own test rows, where there are some,
are scored too, as an independent check.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from types import TracebackType
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
# The stages every run is scored on, in the order tables show them.
STAGES = ("assess", "val", "test")
# A run's per-row scores on the test rows: sent to the parent, summed there, never stored.
TEST_ROWS = "test_rows"


def _init_worker(threads: int) -> None:
    import torch

    # Several processes each using every core would fight over them and all run slower.
    torch.set_num_threads(threads)


def repetition_splits(config: SweepConfig, index: int, *, device: str | None = None) -> Splits:
    """Repetition ``index``'s rows of ``config``'s data, on its device (or ``device``)."""
    from regsweep.data.splits import load_repetition, resolve_device

    return load_repetition(
        config.data,
        config.study.seed,
        index,
        device or resolve_device(config.train.device),
        folds=config.verdict.folds,
    )


def check_data(config: SweepConfig) -> bool:
    """Read and split the data as repetition 0 does, on the CPU (the workers build their
    own), so that bad data or too few rows for the folds fail before any worker starts;
    whether the data set has a test split."""
    return repetition_splits(config, 0, device="cpu").test_x is not None


def repetition_seed(config: SweepConfig, index: int) -> int:
    from regsweep.data.resample import repetition_seed as derive

    return derive(config.study.seed, index)


def measure(
    model: torch.nn.Module,
    result: FitResult,
    reg: Regularization,
    splits: Splits,
    max_epochs: int,
    identity: dict[str, Any],
) -> dict[str, Any]:
    """What a retrain reports: metrics on every split, the gap, sparsity and its story."""
    from regsweep.engine.fit import evaluate, row_losses
    from regsweep.engine.model import weight_sparsity

    early_stopping = reg.patience < max_epochs
    run: dict[str, Any] = {**identity, **dict.fromkeys(metric_names(splits.task, STAGES))}
    for stage in STAGES:
        found = splits.stage(stage)
        if found is None:
            continue
        if stage != "test":
            run.update(splits.scores(stage, *evaluate(model, *found)))
            continue
        # The test rows' scores per row, for the check that pairs variants row by row;
        # their means are the test metrics.
        rows = run[TEST_ROWS] = row_losses(model, *found)
        accuracy = float(rows["correct"].mean()) if "correct" in rows else math.nan
        run.update(splits.scores(stage, float(rows["loss"].mean()), accuracy))
    # The training loss of the measured weights in eval mode (no dropout, running BN
    # statistics): the same footing as the assessment loss, so the gap is overfitting,
    # not dropout's noise. Splits without assessment rows (the sweep's): on validation.
    run["train_loss"] = evaluate(model, splits.train_x, splits.train_y)[0]
    scored = run["assess_loss"] if splits.assess_y is not None else run["val_loss"]
    run["gap"] = scored - run["train_loss"]
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


def identity(splits: Splits, repetition: int, seed: int, init: str) -> dict[str, Any]:
    """What makes runs of one repetition paired: the same rows, seed and initial weights."""
    return {
        "repetition": repetition,
        "seed": seed,
        "split": splits.partition_key,
        "init": init,
        "n_fit": len(splits.train_y),
        "n_val": len(splits.val_y),
        "n_assess": len(splits.assess_y) if splits.assess_y is not None else 0,
    }


def _diverged(ident: dict[str, Any], result: FitResult) -> dict[str, Any]:
    return {
        **ident,
        "diverged": True,
        "epochs_run": result.epochs_run,
        "train_loss_curve": [m.train_loss for m in result.history],
        "val_loss_curve": [m.val_loss for m in result.history],
    }


def init_digest(model: torch.nn.Module) -> str:
    """A short digest of a network's Linear weights: equal digests, equal initial weights."""
    import torch

    digest = hashlib.sha256()
    for layer in model.modules():
        if isinstance(layer, torch.nn.Linear):
            digest.update(layer.weight.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:12]


def retrain_solo(config_json: str, params: dict[str, Any], repetition: int) -> dict[str, Any]:
    """Train one variant in one repetition, one model at a time (the paired init of a pack)."""
    from regsweep.engine.fit import FitResult, fit
    from regsweep.engine.recipe import paired_model
    from regsweep.errors import TrialDiverged

    config = SweepConfig.model_validate_json(config_json)
    splits = repetition_splits(config, repetition)
    seed = repetition_seed(config, repetition)
    reg = Regularization.from_params(params)
    max_epochs = config.train.max_epochs
    model = paired_model(config, splits, reg, seed)
    ident = identity(splits, repetition, seed, init_digest(model))
    try:
        result = fit(
            model, splits, config.train, reg, seed=seed, restore_best=reg.patience < max_epochs
        )
    except TrialDiverged:
        return _diverged(ident, FitResult())
    return measure(model, result, reg, splits, max_epochs, ident)


def retrain_pack(config_json: str, jobs: list[Job], repetition: int) -> dict[str, dict[str, Any]]:
    """Train every variant in ``jobs`` in one repetition as one pack; returns each one's run."""
    config = SweepConfig.model_validate_json(config_json)
    splits = repetition_splits(config, repetition)
    return pack_runs(config, splits, jobs, repetition_seed(config, repetition), repetition)


def pack_runs(
    config: SweepConfig, splits: Splits, jobs: list[Job], seed: int, repetition: int = -1
) -> dict[str, dict[str, Any]]:
    """Train every variant in ``jobs`` on ``splits`` with ``seed`` as one pack: the same
    initial weights (``recipe.paired_model``), batch order and dropout streams for all."""
    from regsweep.engine.pack import Pack
    from regsweep.engine.recipe import paired_model

    max_epochs = config.train.max_epochs
    pack = Pack(config, splits, shuffle_seed=seed)
    regs: dict[Hashable, Regularization] = {}
    idents: dict[Hashable, dict[str, Any]] = {}
    for key, params in jobs:
        regs[key] = reg = Regularization.from_params(params)
        model = paired_model(config, splits, reg, seed)
        idents[key] = identity(splits, repetition, seed, init_digest(model))
        pack.admit(key, reg, seed, model=model)
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
                runs[key] = _diverged(idents[key], result)
            else:
                runs[key] = measure(models[key], result, regs[key], splits, max_epochs, idents[key])
    return runs


class Retrainer:
    """Runs repetitions of every job, in this process or a pool kept open across calls.

    ``ablate`` looks after each round of repetitions and may ask for more: one pool for
    all its looks spares every look the workers' start-up (PyTorch's imports).
    """

    def __init__(
        self,
        config: SweepConfig,
        jobs: list[Job],
        *,
        workers: int | None = None,
        engine: Engine = "packed",
        on_run: RunDone | None = None,
        reference: bool = False,
    ) -> None:
        self.config_json = config.model_dump_json()
        # Gradient boosting on each repetition's rows, beside the verdict (insight.reference).
        self.reference = reference
        self.jobs = jobs
        self.job_keys = {key for key, _ in jobs}
        self.engine: Engine = engine
        self.on_run = on_run
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.pool: Executor | None = None
        # Per job and repetition, each test row's loss (and correctness).
        self.test_rows: dict[str, dict[int, dict[str, Any]]] = {}

    def __enter__(self) -> Retrainer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.pool is not None:
            # On an error or Ctrl-C, queued repetitions are dropped, not waited for.
            self.pool.shutdown(wait=error is None, cancel_futures=error is not None)
            self.pool = None

    def run(self, repetitions: Iterable[int]) -> dict[str, list[dict[str, Any]]]:
        """Every job in every repetition; each job's runs in repetition order."""
        indices = list(repetitions)
        runs: dict[str, list[dict[str, Any]]] = {key: [] for key, _ in self.jobs}
        tasks: list[tuple[Callable[..., Any], tuple[Any, ...], str | None]]
        if self.engine == "packed":
            tasks = [(retrain_pack, (self.config_json, self.jobs, r), None) for r in indices]
        else:
            tasks = [
                (retrain_solo, (self.config_json, params, r), key)
                for r in indices
                for key, params in self.jobs
            ]
        if self.reference:
            from regsweep.insight.reference import REFERENCE, reference_run

            runs[REFERENCE] = []
            tasks += [(reference_run, (self.config_json, r), REFERENCE) for r in indices]

        def record(value: Any, key_of: str | None) -> None:
            # A pack returns all its jobs' runs at once; a solo task one run, of one job.
            found = value if key_of is None else {key_of: value}
            for key, run in found.items():
                rows = run.pop(TEST_ROWS, None)
                if rows is not None:
                    self.test_rows.setdefault(key, {})[run["repetition"]] = rows
                runs[key].append(run)
                if self.on_run is not None and key in self.job_keys:
                    self.on_run(key, run)

        pool = self._pool(len(tasks))
        if pool is None:
            for function, args, key_of in tasks:
                record(function(*args), key_of)
        else:
            futures: dict[Future[Any], str | None] = {
                pool.submit(function, *args): key_of for function, args, key_of in tasks
            }
            for future in as_completed(futures):
                record(future.result(), futures[future])
        position = {r: i for i, r in enumerate(indices)}
        for key in runs:
            runs[key].sort(key=lambda run: position[run["repetition"]])
        return runs

    def _pool(self, n_tasks: int) -> Executor | None:
        """The worker pool, started on first use with as many workers as tasks (at most)."""
        workers = min(self.workers, n_tasks)
        if self.pool is None and workers > 1:
            import torch

            threads = max(1, torch.get_num_threads() // workers)
            # spawn, not fork: a forked copy of a process that already ran torch can deadlock.
            self.pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(threads,),
            )
        return self.pool


def run_retrains(
    config: SweepConfig,
    jobs: list[Job],
    repetitions: Iterable[int],
    *,
    workers: int | None = None,
    engine: Engine = "packed",
    on_run: RunDone | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every job in every repetition, once (``Retrainer`` for several rounds)."""
    with Retrainer(config, jobs, workers=workers, engine=engine, on_run=on_run) as retrainer:
        return retrainer.run(repetitions)
