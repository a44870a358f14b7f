"""End-to-end runs on a few hundred real CIFAR-10 images (the shared copy), on CPU."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import hiremlp
from lightning_modules import (
    CIFAR10DataModule,
    DivergedError,
    HireMLPClassifier,
    Recipe,
    RunConfig,
    load_cifar,
    run,
)
from lightning_modules.predictions import decode, key_at
from lightning_modules.progress import EpochBar, EpochProgress, human_duration, progress_callback
from lightning_modules.runner import METRIC_COLUMNS
from lightning_modules.train import main

REPO = Path(__file__).resolve().parents[1]


def _real_data_dir() -> Path | None:
    for root in (os.environ.get("HIREMLP_DATA"), REPO / ".." / "shared" / "data"):
        if root and (Path(root) / "cifar-10-python.tar.gz").is_file():
            return Path(root).resolve()
    return None


DATA = _real_data_dir()
pytestmark = [
    pytest.mark.skipif(DATA is None, reason="real CIFAR-10 not found: set HIREMLP_DATA or provide ../shared/data"),
    pytest.mark.filterwarnings("ignore::lightning_modules.UnofficialArchiveWarning"),
]



def tiny(tmp_path: Path, **kw) -> RunConfig:
    """A run of 2 epochs on 100 images; keyword arguments are RunConfig or Recipe fields."""
    recipe = dict(epochs=2, batch_size=25, lr=2e-3, lr_batch=25, warmup_epochs=0.5, label_smoothing=0.1)
    recipe.update({k: kw.pop(k) for k in list(kw) if k in Recipe.__dataclass_fields__})
    base = dict(preset="smoke", data_dir=str(DATA), train_subset=100, eval_subset=50, run_dir=str(tmp_path / "run"),
                device="cpu", recipe=Recipe(**recipe))
    return RunConfig(**{**base, **kw})


class ValAccSpy(pl.Callback):
    """What the sweep's Optuna pruning callback sees: trainer.callback_metrics['val_acc'] at on_validation_end."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.seen.append((trainer.current_epoch, float(trainer.callback_metrics["val_acc"])))


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, ValAccSpy, float]:
    """The one longer run (~10-15 s): 500 train images x 4 epochs of the smoke preset."""
    run_dir = tmp_path_factory.mktemp("learned")
    spy = ValAccSpy()
    cfg = RunConfig(preset="smoke", data_dir=str(DATA),
                    recipe=Recipe(epochs=4, batch_size=25, lr=2e-3, lr_batch=25, warmup_epochs=0.5),
                    train_subset=500, eval_subset=200, eval_sizes=(24, 4), device="cpu", run_dir=str(run_dir))
    t0 = time.perf_counter()
    result = run(cfg, callbacks=[spy])
    return result, run_dir, spy, time.perf_counter() - t0


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_smoke_model_learns(learned) -> None:
    result, run_dir, spy, seconds = learned
    rows = _rows(run_dir)
    print(f"smoke run: {seconds:.1f}s, test_acc {result['test_acc']:.1f}%, val_acc {result['val_acc']:.1f}%")
    assert result["test_acc"] > 20 and result["val_acc"] > 18, result  # chance is 10%
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"]) - 0.1
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])


def test_result_files_and_keys(learned) -> None:
    result, run_dir, spy, _ = learned
    for key in ("val_acc", "best_val_acc", "test_acc", "test_loss", "params", "macs", "images_per_s", "wall_s",
                "epochs_run"):
        assert key in result and isinstance(result[key], (int, float)) and math.isfinite(result[key]), key
    assert result["epochs_run"] == 4 and result["best_val_acc"] >= result["val_acc"]
    assert json.loads((run_dir / "result.json").read_text()) == pytest.approx(result)
    rows = _rows(run_dir)
    assert list(rows[0]) == list(METRIC_COLUMNS) and [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert all(float(r["images_per_s"]) > 0 and float(r["epoch_s"]) > 0 for r in rows)
    assert float(rows[0]["lr"]) > float(rows[-1]["lr"])  # the cosine decays
    assert [e for e, _ in spy.seen] == [0, 1, 2, 3]  # the pruning callback sees val_acc every epoch, in percent
    assert [v for _, v in spy.seen] == pytest.approx([float(r["val_acc"]) for r in rows])
    assert max(v for _, v in spy.seen) == pytest.approx(result["best_val_acc"])
    assert not list(run_dir.glob("**/*.ckpt")) and not (run_dir / "lightning_logs").exists()


def test_eval_sizes_record_accuracies_and_reasons(learned) -> None:
    result, *_ = learned
    assert result["eval_interpolation"].startswith("bilinear(antialias=True")
    assert 0 <= result["test_acc@24"] <= 100 and "test_acc@4" not in result  # maps 4, 2, 1, 1
    assert "circular padding" in result["na@4"] and "stage 3" in result["na@4"]


def test_predictions_are_kept_and_give_back_the_accuracies(learned) -> None:
    """Every image's predicted class and label, at the training size and at each other size, in result.json; the
    accuracy recomputed from them is the one reported (so per-image statistics describe the same evaluation)."""
    result, run_dir, *_ = learned
    stored = json.loads((run_dir / "result.json").read_text())
    pred, label = decode(stored[key_at()])
    assert pred.size == label.size == 200 and len(set(label.tolist())) == 10
    assert 100.0 * float((pred == label).sum()) / pred.size == pytest.approx(result["test_acc"], abs=1e-4)
    pred24, label24 = decode(stored[key_at(24)])
    assert (label24 == label).all() and not (pred24 == pred).all()
    assert 100.0 * float((pred24 == label24).sum()) / pred24.size == result["test_acc@24"]
    assert key_at(4) not in stored  # a size the model cannot run has no predictions
    assert len(stored[key_at()]) < 600  # 200 images: a few hundred bytes


def test_logged_config_rebuilds_the_model(learned) -> None:
    result, run_dir, *_ = learned
    config = json.loads((run_dir / "config.json").read_text())
    assert config["run"]["preset"] == "smoke" and config["resolved"]["device"] == "cpu"
    rebuilt = HireMLPClassifier(**config["hparams"])
    assert rebuilt.model.config.spec() == config["model"]
    assert hiremlp.count_params(rebuilt.model) == result["params"]
    assert hiremlp.count_macs(rebuilt.model, 32) == result["macs"]
    reference = hiremlp.create_model("smoke", num_classes=10)
    assert {k: v.shape for k, v in rebuilt.model.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}
    assert dict(rebuilt.hparams) == config["hparams"]  # hparams are exactly the logged, primitive config
    assert all(isinstance(v, (int, float, str, bool)) for v in rebuilt.hparams.values())


def test_same_seed_gives_identical_metrics(tmp_path: Path) -> None:
    def once(name: str, seed: int = 0) -> tuple[dict, list[dict]]:
        r = run(tiny(tmp_path, run_dir=str(tmp_path / name), seed=seed))
        rows = [{k: v for k, v in row.items() if k not in ("images_per_s", "epoch_s")}
                for row in _rows(tmp_path / name)]
        return {k: v for k, v in r.items() if k not in ("images_per_s", "wall_s")}, rows

    a, b, c = once("a"), once("b"), once("c", seed=1)
    assert a == b
    assert a[1] != c[1]


def test_divergence_raises(tmp_path: Path) -> None:
    with pytest.raises(DivergedError, match="non-finite"):
        run(tiny(tmp_path, lr=1e12, epochs=1, warmup_epochs=0, weight_decay=0.0))
    assert (tmp_path / "run" / "config.json").is_file()


def test_mixup_cutmix_ema_run(tmp_path: Path) -> None:
    r = run(tiny(tmp_path, epochs=1, mixup=0.8, cutmix=1.0, ema=0.9, drop_path=0.1))
    assert 0 <= r["test_acc"] <= 100
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["drop_path_rate"] == 0.1


def test_ema_weights_are_used_for_evaluation() -> None:
    flat = {**hiremlp.get_config("smoke", num_classes=10).to_flat(), "ema": 0.5}
    m = HireMLPClassifier(**flat)
    assert m.eval_model is m.ema_model and m.ema_model is not m.model
    with torch.no_grad():
        for p in m.model.parameters():
            p.add_(1.0)
    m._update_ema()  # step 0: decay warm-up gives min(0.5, 1/10) → EMA moves 90% of the way
    p, e = next(m.model.parameters()), next(m.ema_model.parameters())
    assert not torch.equal(p, e)
    plain = HireMLPClassifier(**{**flat, "ema": 0.0})
    assert plain.ema_model is None and plain.eval_model is plain.model


def test_weight_decay_skips_norms_and_every_bias() -> None:
    m = HireMLPClassifier(**hiremlp.get_config("smoke", num_classes=10).to_flat(), weight_decay=0.1)
    decay, no_decay = m.param_groups()
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in m.model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert all(n.endswith("weight") or n.endswith(("reduce", "expand")) for n in decayed), decayed
    assert not any(n.endswith("bias") for n in decayed)
    # the inner-region position bias is 2-D (C, p) here but the released code's 1-D conv bias: never decayed
    assert any(n.endswith("mlp.expand_bias") for n in kept)
    assert all(p.ndim > 1 for p in decay["params"])
    assert len(decayed) + len(kept) == len(list(m.model.parameters()))


def test_bad_config_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="padding"):
        run(tiny(tmp_path, model_overrides={"padding": "bogus"}))
    with pytest.raises(ValueError, match="dataset"):
        tiny(tmp_path, dataset="mnist")
    with pytest.raises(ValueError, match="not both"):
        tiny(tmp_path, drop_path=0.1, model_overrides={"drop_path_rate": 0.2})


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--padding", "bogus"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "padding='bogus'" in err and "Traceback" not in err
    assert main(["--data-dir", str(tmp_path), "--preset", "smoke"]) == 2
    assert "no cifar10 data (cifar-10-python.tar.gz or cifar-10-batches-py/)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--epochs", "x"])
    assert exc.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    args = ["--preset", "smoke", "--data-dir", str(DATA), "--epochs", "1", "--batch-size", "25",
            "--train-subset", "50", "--eval-subset", "50", "--eval-sizes", "24,8", "--padding", "zero",
            "--shift-steps", "1,1,1,1", "--progress", "false", "--device", "cpu", "--run-dir", str(tmp_path / "r"),
            "--recipe", "plain"]
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("test_acc ") and "@24=" in out[0], out
    model = json.loads((tmp_path / "r" / "config.json").read_text())["model"]
    assert model["padding"] == "zero" and model["shift_steps"] == "1,1,1,1"


def test_real_cached_load_is_fast() -> None:
    load_cifar("cifar10", DATA)  # builds the cache if needed
    t0 = time.perf_counter()
    a = load_cifar("cifar10", DATA)
    seconds = time.perf_counter() - t0
    print(f"cached load of the real CIFAR-10: {seconds:.3f}s")
    assert a.train_x.shape == (50000, 3, 32, 32) and a.test_x.shape == (10000, 3, 32, 32)
    assert seconds < 3.0  # typically 0.15-0.4 s; generous for a loaded CI box


def test_datamodule_on_real_data() -> None:
    dm = CIFAR10DataModule(DATA, batch_size=64, train_subset=640, eval_subset=100, device="cpu")
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(float(x.mean())) < 0.3 and 0.7 < float(x.std()) < 1.3  # normalised
    assert len(dm.train_dataloader()) == 10 and len(dm.splits["val"][1]) == 100


def test_bf16_autocast_and_no_validation_split(tmp_path: Path) -> None:
    """bf16-mixed is the GPU default; on CPU it must at least run. val_size=0 gives NaN val metrics, not a crash."""
    r = run(tiny(tmp_path, epochs=1, precision="bf16-mixed", eval_sizes=(28,)))
    assert 0 <= r["test_acc@28"] <= 100
    r = run(tiny(tmp_path, epochs=1, val_size=0))
    assert math.isnan(r["val_acc"]) and 0 <= r["test_acc"] <= 100


def test_callback_exception_propagates_and_keeps_the_curve(tmp_path: Path) -> None:
    """The sweep's pruning callback raises optuna.TrialPruned from on_validation_end; run() must let it through."""

    class Pruned(Exception):
        pass

    class PruneAtEpoch1(pl.Callback):
        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.current_epoch == 1:
                raise Pruned(f"val_acc={float(trainer.callback_metrics['val_acc']):.1f}")

    with pytest.raises(Pruned):
        run(tiny(tmp_path, epochs=3), callbacks=[PruneAtEpoch1()])
    assert [int(r["epoch"]) for r in _rows(tmp_path / "run")] == [0, 1]
    assert not (tmp_path / "run" / "result.json").exists()


def test_bf16_mixed_runs_on_cpu_and_is_recorded(tmp_path: Path) -> None:
    """The opt-in CPU bf16 autocast path (fast on AMX CPUs) trains and evaluates end to end."""
    result = run(tiny(tmp_path, epochs=1, precision="bf16-mixed", eval_sizes=(28,)))
    assert math.isfinite(result["test_loss"]) and 0.0 <= result["test_acc"] <= 100.0
    assert "test_acc@28" in result
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["resolved"]["precision"] == "bf16-mixed"


class BarSpy(pl.Callback):
    """At the end of each training epoch, before the module logs that epoch's train metrics: what the bar shows
    and what the stock bar (Lightning's logged progress-bar metrics) would show."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.stock: list[float | None] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        bar = next(cb for cb in trainer.callbacks if isinstance(cb, EpochBar))
        self.shown.append(bar.get_metrics(trainer, pl_module)["train_loss"])
        stock = trainer.progress_bar_metrics.get("train_loss")
        self.stock.append(None if stock is None else float(stock))


def test_progress_bar_shows_the_running_epochs_numbers(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spy = BarSpy()
    run(tiny(tmp_path, epochs=3, progress="bar"), callbacks=[spy])
    rows = _rows(tmp_path / "run")
    assert spy.shown == [f"{float(r['train_loss']):.3f}" for r in rows]
    # the stock postfix lagged one epoch behind: nothing in epoch 0, then the previous epoch's loss
    assert spy.stock[0] is None and spy.stock[1:] == pytest.approx([float(r["train_loss"]) for r in rows[:-1]])
    assert "\r" in capsys.readouterr().out  # an interactive bar (only chosen on a terminal with progress=auto)


def test_progress_lines_and_auto_mode(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert isinstance(progress_callback("auto"), EpochProgress)  # pytest captures stdout: not a terminal
    assert progress_callback("off") is None
    run(tiny(tmp_path, epochs=2, progress="auto"))
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if " epoch " in line]
    rows = _rows(tmp_path / "run")
    assert len(lines) == 2 and "\r" not in out
    assert "epoch 2/2  train_loss " in lines[1] and f"val_acc {float(rows[1]['val_acc']):.2f}%" in lines[1]
    assert "img/s" in lines[1] and lines[1].endswith("ETA 0s")
    assert human_duration(59.6) == "1m00s" and human_duration(3 * 3600 + 125) == "3h02m"
    with pytest.raises(ValueError, match="progress='loud'"):
        tiny(tmp_path, progress="loud")


def test_loggers_are_one_option_away(tmp_path: Path) -> None:
    run(tiny(tmp_path, epochs=1, logger="csv"))
    logged = list((tmp_path / "run" / "logs" / "csv").glob("version_*/metrics.csv"))
    assert len(logged) == 1
    with open(logged[0]) as f:
        assert any(r.get("val_acc") for r in csv.DictReader(f))
    with pytest.raises(ValueError, match="unknown logger 'neptune'; allowed: none or"):
        tiny(tmp_path, logger="csv,neptune")
    for name, package in (("tensorboard", "tensorboard"), ("wandb", "wandb"), ("mlflow", "mlflow")):
        if importlib.util.find_spec(package) is None and (name != "tensorboard" or
                                                          importlib.util.find_spec("tensorboardX") is None):
            with pytest.raises(ValueError, match=f"needs the {package} package: pip install {package}"):
                tiny(tmp_path, logger=name)
        else:
            assert tiny(tmp_path, logger=name).logger == name
