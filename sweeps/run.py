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
import dataclasses
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
from lightning_modules.options import add_field_options, values_of  # noqa: E402
from lightning_modules.recipe import Recipe, recipe_fields  # noqa: E402
from sweeps import adaptive, cost, cpu_threads, grid, preflight, progress, results, tune, worker  # noqa: E402
from sweeps.protocols import PROTOCOLS, Protocol, default_protocol_name, get_protocol, with_overrides  # noqa: E402
from sweeps.storage import StorageError, open_storage  # noqa: E402
from sweeps.trainers import lightning_trainer, resolve_trainer  # noqa: E402

if TYPE_CHECKING:
    from analysis.seed_rule import SeedRule

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SEEDS = 3  # fewer leaves no interval (1) or a nearly useless one (2: t quantile 12.7)
DEFAULT_MAX_SEEDS = 10
OBJECTIVE = "val_acc"  # the value every trial reports per epoch and is told at the end (percent)


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

    def default(field: str, fallback: str = "the protocol's") -> str:
        return f"default: {getattr(shown, field)!r}, protocol {shown.name}'s" if shown else f"default: {fallback}"

    p = argparse.ArgumentParser(prog="sweeps/run.py", description=__doc__.split("\n")[1],
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
    p.add_argument("--data-dir", type=Path, help="folder holding the CIFAR archive (default: the first of "
                   "$HIREMLP_DATA, ~/.cache/hiremlp/data, <repository>/data and <repository>/../shared/data that "
                   "holds it; an imagefolder protocol needs it)")
    p.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    p.add_argument("--dry-run", action="store_true", help="print the grid and a cost estimate, run nothing")
    p.add_argument("--checkpoint-every-s", type=float, default=None,
                   help="seconds of training between a trial's checkpoints (default 60; 0: every epoch)")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep each trial's final checkpoint after it completes (default: removed)")
    p.add_argument("--logger", default="none",
                   help="Lightning loggers per trial: none (default) or a comma-separated list of csv, "
                        "tensorboard, wandb, mlflow")
    which = f"protocol {shown.name}'s values" if shown else "the protocol's values (--protocol NAME --help shows them)"
    g = p.add_argument_group(f"recipe overrides (each sets one field of the protocol's recipe; a changed recipe is "
                             f"a new Optuna study; defaults: {which})")
    add_field_options(g, Recipe, shown=shown.recipe if shown else None)
    g = p.add_argument_group("data overrides (a changed budget is a new Optuna study)")
    g.add_argument("--train-subset", type=int, help=f"training images ({default('train_subset')}; None: all)")
    g.add_argument("--eval-subset", type=int, help=f"validation and test images ({default('eval_subset')}; None: "
                   f"the whole splits)")
    g.add_argument("--data-seed", type=int, help=f"seed of the evaluation images ({default('data_seed')})")
    g.add_argument("--eval-sizes", help="extra test sizes, e.g. 24,28,32 (default: the study's)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), help=f"{default('device')}")
    g.add_argument("--precision", choices=("auto", "32", "bf16-mixed"),
                   help=f"auto: bf16-mixed on GPU, 32 on CPU (bf16-mixed is faster on CPUs with AMX; "
                        f"{default('precision')})")
    g.add_argument("--val-size", type=int, help=f"training images held out for per-epoch validation "
                   f"({default('val_size')})")
    g.add_argument("--image-size", type=int, help="imagefolder protocols: training size in px (imagenet: 224)")
    g.add_argument("--classes", help="imagefolder protocols: the first N classes, or a file listing class names")
    g.add_argument("--devices", type=int, help="GPUs (processes) per trial, Lightning DDP (default 1); the recipe's "
                   "batch size stays the global batch")
    p.add_argument("--trainer", default="lightning", help=argparse.SUPPRESS)  # 'fake' tests the machinery
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


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"{what} {text!r} is not a comma-separated list of integers, e.g. 24,28,32") from None


def resolve(args: argparse.Namespace):
    """Turn the arguments into (study, protocol, rows, seeds, eval_sizes); UsageError on bad input."""
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
        protocol = get_protocol(name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        protocol = with_overrides(protocol, **values_of(args, recipe_fields()), train_subset=args.train_subset,
                                  eval_subset=args.eval_subset, data_seed=args.data_seed, device=args.device,
                                  precision=args.precision, image_size=args.image_size, classes=args.classes,
                                  devices=args.devices, val_size=args.val_size)
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
    eval_sizes = _int_list(args.eval_sizes, "--eval-sizes") if args.eval_sizes else study.eval_sizes
    if args.checkpoint_every_s is not None and args.checkpoint_every_s < 0:
        raise UsageError(f"--checkpoint-every-s must be >= 0 (0 = every epoch), got {args.checkpoint_every_s}")
    if args.logger.strip().lower() not in ("", "none"):
        from lightning_modules.loggers import parse_loggers  # imports Lightning: only when a logger is asked for

        try:
            parse_loggers(args.logger)
        except ValueError as e:
            raise UsageError(f"--logger: {e}") from None
    return study, protocol, rows, seeds, eval_sizes


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
    return SeedRule(args.target_ci, seeds, max_seeds, study.default_row, tuple(rows), design=design)


def find_data_dir(args: argparse.Namespace, dataset: str) -> Path | None:
    """The first folder holding the dataset: --data-dir, $HIREMLP_DATA, ~/.cache/hiremlp/data, <repository>/data,
    <repository>/../shared/data (the last two are the sweep's own, beyond ``cifar.default_data_dir``; --help and
    README name them). With --download, the first of those (it will be downloaded there)."""
    if dataset == "imagefolder":
        return image_folder_dir(args)
    archive, folder = {"cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py"),
                       "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python")}[dataset]
    if args.data_dir is not None:
        candidates = [args.data_dir]
    else:
        env = os.environ.get("HIREMLP_DATA")
        candidates = [Path(env)] if env else []
        candidates += [Path.home() / ".cache/hiremlp/data", REPO_ROOT / "data", REPO_ROOT.parent / "shared/data"]
    for c in candidates:
        c = c.expanduser()
        if (c / archive).is_file() or (c / folder).is_dir():
            return c
    if args.download:
        return candidates[0].expanduser()
    where = str(args.data_dir) if args.data_dir is not None else ", ".join(str(c) for c in candidates)
    raise UsageError(f"no {dataset} data ({archive} or {folder}/) in {where}; pass --data-dir DIR or --download")


def image_folder_dir(args: argparse.Namespace) -> Path:
    """--data-dir, checked now (layout, classes, every image header) so a bad tree stops the sweep before any
    trial; the check is cached per tree, so workers and later runs do not repeat it."""
    if args.data_dir is None:
        raise UsageError("an imagefolder protocol needs --data-dir DIR (a tree with train/<class>/ and "
                         "val/<class>/ folders of images)")
    from lightning_modules.cifar import DatasetError
    from lightning_modules.imagefolder import scan_image_folder

    try:
        scan_image_folder(args.data_dir, args.classes)
    except DatasetError as e:
        raise UsageError(str(e)) from None
    return args.data_dir


def protocol_label(protocol, name: str) -> str:
    """`smoke`, or `smoke+<hash8>` when recipe overrides (--epochs, --lr, ...) make it a variant."""
    named = get_protocol(protocol.name)
    same = dataclasses.replace(protocol, device=named.device) == named
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
          f"at {cost.image_size(protocol)} px per trial{' (' + counted + ')' if counted else ''}")
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
    """The study's table: analysis.report if available, else a plain pandas summary of results.csv."""
    try:
        from analysis.report import report_study
    except ImportError:
        report_study = None
    if report_study is not None:
        try:
            print(report_study(study, label, folder.parent))
            print(f"report: {folder / 'report'}")
            return
        except Exception as e:  # noqa: BLE001 - the sweep's results are stored; the report is a convenience
            log(f"analysis.report failed ({type(e).__name__}: {e}); plain table instead")
    import pandas as pd

    df = pd.read_csv(folder / "results.csv")
    done = df[df["state"] == "COMPLETE"]
    if done.empty:
        return
    table = done.groupby("row", sort=False)["test_acc"].agg(["count", "mean", "std"]).round(2)
    table["paper_top1"] = [study.row(r).paper_top1 for r in table.index]
    print(table.to_string())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
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
    study, protocol, rows, seeds, eval_sizes = resolve(args)
    n_trials = args.trials or study.n_trials
    spec = grid.spec(study, protocol)
    name = grid.study_name(spec)
    rule = seed_rule(args, study, rows, seeds)
    try:
        trainer = resolve_trainer(args.trainer)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if not args.as_worker:  # checked once by the command, not again by each worker it starts
        preflight.check_recipe(study, protocol, rows, eval_sizes, trainer)
    if args.dry_run:
        dry_run(study, protocol, rows, seeds, eval_sizes, n_trials, name, args.runs_dir, rule)
        return 0
    data_dir = args.data_dir if args.trainer == "fake" else find_data_dir(args, protocol.dataset)
    if args.trainer != "fake":
        if not args.as_worker:
            note = preflight.verify_data(protocol.dataset, data_dir, args.download)
            if note:
                log(f"warning: {note}")
            preflight.check_budget(protocol, data_dir)
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
    run_options = {"keep_checkpoint": True} if args.keep_checkpoints else {}
    if args.checkpoint_every_s is not None:
        run_options["checkpoint_every_s"] = args.checkpoint_every_s
    if args.logger.strip().lower() not in ("", "none"):
        run_options["logger"] = args.logger
    sweep = worker.Sweep(study=study, protocol=protocol, ostudy=ostudy, folder=folder,
                         todo=grid.cells(rows, seeds), trainer=trainer, eval_sizes=tuple(eval_sizes),
                         data_dir=data_dir, download=args.download, n_trials=n_trials, log=log, seed_rule=rule,
                         run_options=run_options)
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
        log(cost.start_line(study, protocol, rows, tuple(eval_sizes), to_run, args.runs_dir))
    if args.workers > 1:
        spawn_workers(args.workers, argv, protocol.device)
    else:
        worker.work(sweep)
    return finish(sweep, args)


def finish(sweep: worker.Sweep, args: argparse.Namespace) -> int:
    """Write results.csv, print the table, and say which cells have no result (exit 1 if any)."""
    adaptive.update_todo(sweep)
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
    log(f"{len(bad)} of {len(sweep.todo)} cells have no result: {worker.retry_advice(reasons)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
