"""Run one ablation study as a resumable Optuna study.

    python sweeps/run.py --list
    python sweeps/run.py --study padding                      # cifar10 on a GPU, smoke on a CPU
    python sweeps/run.py --study padding --protocol smoke --seeds 3 --rows zero,circular
    python sweeps/run.py --study padding --target-ci 0.3 --max-seeds 10   # seeds until each CI is that narrow
    python sweeps/run.py --study region_size --protocol cifar10 --seeds 3 --workers 4 --dry-run
    python sweeps/run.py --study recipe --protocol cifar10 --trials 40 --storage postgresql://me@db/optuna

Running the same command again continues where it stopped: finished cells are never re-run, cells whose worker
died are re-run, failed cells are retried once. Exit status 0 only if every cell has a result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):  # `python sweeps/run.py` from anywhere: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna  # noqa: E402

from ablations import STUDIES, Study  # noqa: E402
from ablations.distinct_rows import dry_run_text as mixing_dry_run_text  # noqa: E402
from ablations.study_file import FILE_FOLDER, file_studies, resolve_study  # noqa: E402
from lightning_modules.failures import retry_advice  # noqa: E402
from lightning_modules.options import OneLineParser, add_field_options, values_of  # noqa: E402
from lightning_modules.recipe import Recipe, recipe_fields  # noqa: E402
from lightning_modules.run_config import PROTOCOL_FIELDS, RunConfig  # noqa: E402
from sweeps import adaptive, cost, cpu_threads, grid, preflight, progress, results, tune, worker  # noqa: E402
from sweeps.protocols import PROTOCOLS, Protocol, default_protocol_name, get_protocol  # noqa: E402
from sweeps.storage import StorageError, open_storage  # noqa: E402
from sweeps.trainers import lightning_trainer, resolve_trainer  # noqa: E402

if TYPE_CHECKING:
    from analysis.seed_rule import SeedRule

DEFAULT_SEEDS = 3  # fewer leaves no interval (1) or a nearly useless one (2: t quantile 12.7)
DEFAULT_MAX_SEEDS = 10
OBJECTIVE = "val_acc"  # the value every trial reports per epoch and is told at the end (percent)
#: RunConfig fields the command line may change on the protocol (a changed one is a new Optuna study)
PROTOCOL_OPTIONS = tuple(f for f in PROTOCOL_FIELDS if f not in ("dataset", "preset"))
#: RunConfig fields the command line sets on every trial without changing what it trains
TRIAL_SETTINGS = ("eval_sizes", "data_dir", "download", "checkpoint_every_s", "keep_checkpoint", "logger")


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


def help_protocol(argv: list[str]) -> Protocol | None:
    """With --help, the protocol whose values the help states as defaults: --protocol's (when it exists), else
    this machine's default; None without --help, where no help text is printed."""
    if not {"-h", "--help"} & set(argv):
        return None
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--protocol")
    name = pre.parse_known_args(argv)[0].protocol
    if name not in PROTOCOLS:
        import torch

        name = default_protocol_name(torch.cuda.is_available())
    return PROTOCOLS[name]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else argv
    shown = help_protocol(argv)
    p = OneLineParser(prog="sweeps/run.py", description=__doc__.split("\n")[1], name_prog=False,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", action="store_true", help="list the studies and exit")
    p.add_argument("--study", help="a study's name (see --list), a study file path/to/study.toml, or "
                                   "package.module:STUDY (an ablations.Study)")
    p.add_argument("--protocol", help=f"{' | '.join(PROTOCOLS)} (default: {default_protocol_name(True)} with a GPU, "
                                      f"{default_protocol_name(False)} without)")
    p.add_argument("--seeds", type=int, default=None,
                   help=f"seeds per row (default {DEFAULT_SEEDS}; with --target-ci the first seeds; tune: ignored)")
    p.add_argument("--target-ci", type=float, metavar="H",
                   help="after the first seeds, add seeds to each row whose 95%% CI for the difference to the default "
                        "row has a half-width above H points, until it is <= H or --max-seeds")
    p.add_argument("--max-seeds", type=int, help=f"--target-ci: most seeds per row (default {DEFAULT_MAX_SEEDS})")
    p.add_argument("--rows", help="comma-separated subset of the study's rows")
    p.add_argument("--trials", type=int, help="tune studies: trial budget (default: the study's)")
    p.add_argument("--workers", type=int, default=1,
                   help="local worker processes (one GPU each, round-robin; without GPUs each gets cores/N threads)")
    p.add_argument("--storage", help="Optuna storage URL (default: journal file in the run folder)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders go (default runs/)")
    p.add_argument("--dry-run", action="store_true", help="print the grid and a cost estimate, run nothing")
    which = f"protocol {shown.name}'s values" if shown else "the protocol's values (--protocol NAME --help shows them)"
    mine = f", protocol {shown.name}'s" if shown else ""
    add_field_options(p.add_argument_group(f"recipe overrides (each sets one field of the protocol's recipe; a "
                                           f"changed recipe is a new Optuna study; defaults: {which})"),
                      Recipe, shown=shown.recipe if shown else None, shown_as=mine)
    add_field_options(p.add_argument_group(f"data and system overrides (a changed budget is a new Optuna study; "
                                           f"defaults: {which})"),
                      RunConfig, only=PROTOCOL_OPTIONS, shown=shown.config if shown else None, shown_as=mine)
    add_field_options(p.add_argument_group("every trial's settings (they change how a trial is run and kept, not "
                                           "what it trains; --eval-sizes defaults to the study's)"),
                      RunConfig, only=TRIAL_SETTINGS)
    p.add_argument("--trainer", default="lightning", help=argparse.SUPPRESS)  # module:function, for tests
    p.add_argument("--as-worker", action="store_true", help=argparse.SUPPRESS)  # set on --workers children
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def list_studies() -> None:
    print(f"{'study':14s} {'rows':>4s}  {'paper':8s} what it tests")
    for s in STUDIES.values():
        rows = f"{len(s.rows)}" if s.kind == "table" else "tune"
        print(f"{s.name:14s} {rows:>4s}  {s.paper_table or '-':8s} {s.description}")
    for path, found in file_studies(FILE_FOLDER):
        if isinstance(found, Study):
            kind = f"{len(found.rows)}" + (" (factorial)" if found.factors else "")
            print(f"{str(path):14s} {kind:>4s}  {'file':8s} {found.name}: {found.description}")
        else:
            print(f"{str(path):14s} {'bad':>4s}  {'file':8s} {found}")


def resolve(args: argparse.Namespace):
    """Turn the arguments into (study, protocol, rows, seeds, settings); UsageError on bad input."""
    if not args.study:
        raise UsageError(f"--study is required; allowed: {', '.join(STUDIES)} (see --list)")
    try:
        study = resolve_study(args.study)
    except ValueError as e:
        raise UsageError(str(e)) from None
    name = args.protocol
    if name is None:
        import torch

        name = default_protocol_name(torch.cuda.is_available())
        if name == "cpu" and not args.as_worker:
            log("no GPU found: running the 'cpu' protocol (large effects only; --dry-run says how long); "
                "--protocol smoke is a few-minute pipeline check, --protocol cifar10 the GPU protocol")
    try:
        protocol = get_protocol(name).with_changes(**values_of(args, recipe_fields()),
                                                   **values_of(args, PROTOCOL_OPTIONS))
    except ValueError as e:
        raise UsageError(str(e)) from None
    rows = study.labels
    if args.rows is not None:
        rows = [r.strip() for r in args.rows.split(",") if r.strip()]
        if not rows:
            raise UsageError(f"--rows {args.rows!r} names no row; allowed: {', '.join(study.labels)}")
        twice = next((r for i, r in enumerate(rows) if r in rows[:i]), None)
        if twice is not None:
            raise UsageError(f"--rows {args.rows!r} names row {twice!r} twice; each row at most once, from: "
                             f"{', '.join(study.labels)}")
        for r in rows:
            if r not in study.labels:
                raise UsageError(f"unknown row {r!r} for study {study.name!r}; allowed: {', '.join(study.labels)}")
    seeds = DEFAULT_SEEDS if args.seeds is None else args.seeds
    if seeds < 1 or (args.workers or 0) < 1:
        raise UsageError("--seeds and --workers must be >= 1")
    settings = {"eval_sizes": study.eval_sizes, **values_of(args, TRIAL_SETTINGS)}
    try:
        protocol.config.with_changes(**settings)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return study, protocol, rows, seeds, settings


def seed_rule(args: argparse.Namespace, study: Study, rows: list[str], seeds: int) -> SeedRule | None:
    """The --target-ci rule, or None for a fixed seed count; UsageError naming the flag on bad input."""
    if args.target_ci is None:
        if args.max_seeds is not None:
            raise UsageError("--max-seeds only applies with --target-ci H")
        return None
    if study.kind != "table":
        raise UsageError(f"--target-ci applies to table studies; {study.name!r} is a tuning study")
    if not (args.target_ci > 0 and args.target_ci < float("inf")):
        raise UsageError(f"--target-ci must be a positive number of points, got {args.target_ci}")
    if seeds < 2:
        raise UsageError(f"--target-ci needs --seeds >= 2 (an interval needs 2 seeds), got {seeds}")
    max_seeds = DEFAULT_MAX_SEEDS if args.max_seeds is None else args.max_seeds
    if max_seeds < seeds:
        raise UsageError(f"--max-seeds must be >= --seeds ({seeds}), got {max_seeds}")
    if study.default_row not in rows:
        raise UsageError(f"--target-ci measures every row against the default row {study.default_row!r}; "
                         f"add it to --rows")
    from analysis.seed_rule import SeedRule  # scipy: loaded only when a rule is used

    design = None
    if study.factors:  # a factorial study: the rule is on its contrasts, which need every row
        if list(rows) != study.labels:
            raise UsageError(f"--target-ci on factorial study {study.name!r} measures its main effects and "
                             f"interactions, which need every row; drop --rows")
        from analysis.factorial import design_of

        design = design_of(study).to_json()
    return SeedRule(args.target_ci, seeds, max_seeds, study.default_row, tuple(rows), design=design, images=True)


def data_folder(protocol: Protocol, settings: dict) -> str:
    """The dataset's folder (``lightning_modules.cifar.find_data_dir``'s search when none is given); an ImageFolder
    tree is checked now (layout, classes, every image header) so a bad tree stops the sweep before any trial (the
    check is cached per tree, so workers and later runs do not repeat it)."""
    from lightning_modules.cifar import DatasetError, find_data_dir

    given = settings.get("data_dir")
    try:
        if protocol.dataset != "imagefolder":
            return str(find_data_dir(protocol.dataset, given, download_ok=settings.get("download", False)))
        if given is None:
            raise UsageError("an imagefolder protocol needs --data-dir DIR (a tree with train/<class>/ and "
                             "val/<class>/ folders of images)")
        from lightning_modules.imagefolder import scan_image_folder

        scan_image_folder(given, protocol.classes)
        return given
    except DatasetError as e:
        raise UsageError(str(e)) from None


def protocol_label(protocol, name: str) -> str:
    """`smoke`, or `smoke+<hash8>` when recipe overrides (--epochs, --lr, ...) make it a variant."""
    named = get_protocol(protocol.name)
    same = protocol.config.with_changes(device=named.device) == named.config
    return protocol.name if same else f"{protocol.name}+{name.rsplit('-', 1)[1]}"


def run_folder(runs_dir: Path, study: Study, label: str, name: str) -> Path:
    """`runs/<study>-<protocol label>/`, so a quick variant never overwrites the trial folders of the real run.
    A folder that already belongs to another spec (an edited study definition) is refused rather than mixed."""
    folder = (runs_dir / f"{study.name}-{label}").resolve()
    marker = folder / "sweep.json"
    if marker.is_file():
        owner = json.loads(marker.read_text()).get("optuna_study")
        if owner != name:
            raise UsageError(f"{folder} holds Optuna study {owner}, not {name} (the study or protocol definition "
                             f"changed); move that folder away or pass another --runs-dir")
    else:
        results.write_json(marker, {"optuna_study": name, "study": study.name, "protocol": label})
    return folder


def dry_run(study: Study, protocol, rows: list[str], seeds: int, eval_sizes, n_trials: int, name: str,
            runs_dir: Path = Path("runs"), rule: SeedRule | None = None) -> None:
    print(f"study {study.name} ({study.paper_table or 'beyond the paper'}): {study.description}")
    print(f"protocol {protocol.name}: {protocol.description}")
    print(f"optuna study: {name}")
    if study.kind == "table":
        print(f"grid: {len(rows)} rows x {seeds} seed(s) = {len(rows) * seeds} trials"
              + (f", then up to {rule.max_seeds} seeds per row by --target-ci {rule.target_ci:g}" if rule else ""))
    else:
        print(f"tune: {n_trials} trials of row {rows[0]!r}, TPE {dict(study.sampler)}, MedianPruner "
              f"{dict(study.pruner)}; search space: {', '.join(study.search_space)}")
    est = cost.estimate(study, protocol, rows, seeds, eval_sizes, n_trials, runs_dir=runs_dir)
    print(f"{'row':16s} {'params':>10s} {'MACs/img':>10s}  overrides")
    for label in rows:
        m, n = est.macs_per_image[label], est.params[label]
        r = study.row(label)
        print(f"{label:16s} {n or 0:>10,d} {(m or 0) / 1e6:>9.1f}M  {dict(r.overrides)}"
              + (f" recipe {dict(r.recipe)}" if r.recipe else "") + ("" if m else "  (does not build)"))
    print(mixing_dry_run_text(study, protocol.preset, rows, protocol.image_size))
    n_train, n_val, n_test, counted = cost.image_counts(protocol)
    epochs = protocol.recipe.total_epochs
    print(f"images: {n_train:,} train x {epochs} epochs, {n_val:,} validation per epoch, {n_test:,} test "
          f"at {protocol.config.train_image_size} px per trial{' (' + counted + ')' if counted else ''}")
    print(f"cost: {est.total_macs:.3g} MACs = 3 x MACs/img x {n_train:,} train images x {epochs} epochs "
          f"(+ 1 x for validation and test{', sizes ' + ','.join(map(str, eval_sizes)) if eval_sizes else ''}), "
          f"summed over the trials")
    if protocol.device != "cpu":
        trials = len(rows) * seeds if study.kind == "table" else n_trials
        per_trial = est.seconds / max(trials, 1) / 3600
        wall = per_trial / protocol.devices
        print(f"GPU-hours: ~{est.seconds / 3600:,.0f} in all, ~{per_trial:,.1f} per trial (= ~{wall:,.1f} h "
              f"wall-clock on {protocol.devices} GPU(s) per trial, if scaling were perfect)")
    print(f"time: ~{cost.human_time(est.seconds)} of one device, {est.source}: {est.throughput_note} "
          f"(worker start-up not included)")
    if study.kind == "table":
        from analysis.planning import plan_text

        print(plan_text(runs_dir, study.name, protocol_label(protocol, name), _recipe(protocol), seeds,
                        rule and rule.target_ci, rule and rule.max_seeds))


def _recipe(protocol) -> dict:
    """The results.csv columns an earlier run of the same protocol must match (the device may differ)."""
    return {**{f"protocol.{k}": v for k, v in protocol.record().items() if k != "device"},
            **{f"recipe.{k}": v for k, v in protocol.recipe.to_flat().items()}}


def spawn_workers(n: int, argv: list[str], device: str = "auto") -> int:
    """Start n copies of this command as workers (one GPU each, round-robin; without GPUs, a share of the CPU
    cores each) and wait for them."""
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = [g for g in visible.split(",") if g.strip()] if visible else [str(i) for i in range(
        torch.cuda.device_count())]
    threads_env = {}
    if not gpus or device == "cpu":
        budget = cpu_threads.plan(n)
        log(budget.describe())
        threads_env = budget.env()
    child_argv, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--workers":
            skip = True
        elif not a.startswith("--workers="):
            child_argv.append(a)
    procs = []
    for i in range(n):
        env = {**os.environ, **threads_env}
        if gpus and device != "cpu":
            env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
        cmd = [sys.executable, str(Path(__file__).resolve()), *child_argv, "--as-worker"]
        procs.append(subprocess.Popen(cmd, env=env))
        log(f"worker {i + 1}/{n} started (pid {procs[-1].pid}"
            + (f", CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']})" if gpus and device != "cpu" else ")"))
    try:
        return max(p.wait() for p in procs)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise


def report(study: Study, label: str, folder: Path) -> None:
    """The study's table (`analysis.report`); the sweep's results are stored whatever happens to it."""
    from analysis.report import report_study

    try:
        print(report_study(study, label, folder.parent))
        print(f"report: {folder / 'report'}")
    except Exception as e:  # noqa: BLE001 - the sweep's results are stored; the report is a convenience
        log(f"analysis.report failed ({type(e).__name__}: {e}); the trials are in {folder / 'results.csv'}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
    except SystemExit as e:  # --help, or bad input (one line, status 2)
        return int(e.code or 0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.list:
        list_studies()
        return 0
    try:
        with warnings.catch_warnings():  # filters a sweep installs (the archive warning said once) end with it
            return _main(args, argv)
    except (UsageError, StorageError, preflight.PreflightError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except worker.BrokenDeviceError as e:
        print(f"error: {e}; run the same command again (a new process gets a new CUDA context)", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted: the running trial is marked FAIL; run the same command again to continue",
              file=sys.stderr)
        return 130


def _main(args: argparse.Namespace, argv: list[str]) -> int:
    study, protocol, rows, seeds, settings = resolve(args)
    n_trials = args.trials or study.n_trials
    spec = grid.spec(study, protocol)
    name = grid.study_name(spec)
    rule = seed_rule(args, study, rows, seeds)
    try:
        trainer = resolve_trainer(args.trainer)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not args.as_worker:  # checked once by the command, not again by each worker it starts
        preflight.check_recipe(study, protocol, rows, settings)
    if args.dry_run:
        dry_run(study, protocol, rows, seeds, settings["eval_sizes"], n_trials, name, args.runs_dir, rule)
        return 0
    if getattr(trainer, "needs_data", True):
        settings["data_dir"] = data_folder(protocol, settings)
        if not args.as_worker:
            note = preflight.verify_data(protocol.dataset, settings["data_dir"], settings.get("download", False))
            if note:
                log(f"warning: {note}")
            preflight.check_budget(protocol, settings["data_dir"])
        preflight.ignore_archive_warning()  # said once above, not once per trial
    if args.as_worker:
        cpu_threads.apply_from_env()

    label = protocol_label(protocol, name)
    try:
        folder = run_folder(args.runs_dir, study, label, name)
    except OSError as e:
        raise UsageError(f"--runs-dir {args.runs_dir}: cannot create the run folder there ({e.strerror or e}); "
                         f"pass a writable folder") from None
    storage = open_storage(args.storage, folder)
    ostudy = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                 sampler=tune.make_sampler(study, seed=0),
                                 pruner=tune.make_pruner(study, protocol.recipe.total_epochs))
    if ostudy.user_attrs.get("spec") != spec:
        ostudy.set_user_attr("spec", spec)
    if ostudy.metric_names != [OBJECTIVE]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ostudy.set_metric_names([OBJECTIVE])
    sweep = worker.Sweep(study=study, protocol=protocol, ostudy=ostudy, folder=folder,
                         todo=grid.cells(rows, seeds), trainer=trainer, settings=settings, n_trials=n_trials, log=log,
                         seed_rule=rule)
    if args.as_worker:
        worker.work(sweep)
        return 0
    if rule is not None:
        adaptive.record(ostudy, folder, rule)

    where = args.storage or str(folder / "optuna.journal")
    log(f"{study.name} on {label}: Optuna study {name} in {where}; run folder {folder}")
    shown = where if args.storage or not folder.is_relative_to(Path.cwd()) else str(Path(where).relative_to(Path.cwd()))
    log(f"live curves: optuna-dashboard {shown}")
    worker.prepare(sweep, enqueue=True)
    if study.kind == "table":
        status = grid.status(ostudy, sweep.todo)
        done = sum(t is not None and t.state == optuna.trial.TrialState.COMPLETE for t in status.values())
        shape = f"{len(rows)} rows x {seeds} seeds" if rule is None else \
            f"{len(rows)} rows, --target-ci {rule.target_ci:g}"
        log(f"{len(sweep.todo)} cells ({shape}): {done} done, {len(sweep.todo) - done} to run")
        if done:
            log(progress.progress_line(ostudy, sweep.todo))
    to_run = len(sweep.todo) - done if study.kind == "table" else max(0, n_trials - worker.tune_budget_used(ostudy))
    if trainer is lightning_trainer and to_run:  # another trainer's time is not the model's
        log(cost.start_line(study, protocol, rows, settings["eval_sizes"], to_run, args.runs_dir))
    if args.workers > 1:
        spawn_workers(args.workers, argv, protocol.device)
    else:
        worker.work(sweep)
    return finish(sweep, args)


def finish(sweep: worker.Sweep, args: argparse.Namespace) -> int:
    """Write results.csv, print the table, and say which cells have no result (exit 1 if any)."""
    if sweep.seed_rule is not None:
        sweep.todo = adaptive.cells_now(sweep.ostudy, sweep.seed_rule)
    results.write_results_csv(sweep.ostudy, sweep.study.name, sweep.protocol.name, sweep.folder / "results.csv")
    results.write_curves_csv(sweep.ostudy, sweep.folder / "curves.csv")
    results.write_predictions_csv(sweep.ostudy, sweep.folder / "predictions.csv")
    report(sweep.study, sweep.folder.name[len(sweep.study.name) + 1:], sweep.folder)
    State = optuna.trial.TrialState
    if sweep.study.kind == "tune":
        trials = sweep.ostudy.get_trials(deepcopy=False, states=(State.COMPLETE, State.PRUNED))
        if trials and any(t.state == State.COMPLETE for t in trials):
            best = sweep.ostudy.best_trial
            log(f"best trial {best.number}: val {best.value:.2f}% with {best.params}")
        used = worker.tune_budget_used(sweep.ostudy)
        log(f"{used}/{sweep.n_trials} trials used: {len(trials)} complete or pruned, {used - len(trials)} failed")
        return 0 if used >= sweep.n_trials and trials else 1
    bad = {c: t for c, t in grid.status(sweep.ostudy, sweep.todo).items()
           if t is None or t.state != State.COMPLETE}
    if sweep.seed_rule is not None:
        log(adaptive.summary_line(sweep.ostudy, sweep.seed_rule))
    if not bad:
        log(f"all {len(sweep.todo)} cells complete; results: {sweep.folder / 'results.csv'}")
        return 0
    reasons = []
    for cell, t in bad.items():
        reasons.append("never ran" if t is None else t.user_attrs.get("fail_reason", ""))
        why = "never ran" if t is None else f"{t.state.name}: {t.user_attrs.get('fail_reason', '')}"
        log(f"no result for {cell.key} ({why})")
    log(f"{len(bad)} of {len(sweep.todo)} cells have no result: {retry_advice(reasons)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
