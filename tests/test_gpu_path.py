"""What a CPU can check of the GPU path (issue 18): the device-neutral roll and end pads, no tensor made from a
Python value (nor read back) inside a training step, progress without collectives, checkpoint timing decided once
for all ranks, per-rank CUDA RNG states, a worker that stops on a broken CUDA context, memory freed after an OOM
only once the failed trial is gone, compiled state reset per run. ``benchmarks/gpu_check.py`` runs the rest on a
GPU; its CPU-side stages and its dry run are tested here too."""

from __future__ import annotations

import gc
import json
import os
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import hiremlp.cross_region as cr
from hiremlp import HireModule
from hiremlp.inner_region import InnerRegionMLP
from tests.sweep_fakes import FAKE

REPO = Path(__file__).resolve().parents[1]
DATA = next((Path(p).resolve() for p in (os.environ.get("HIREMLP_DATA"), REPO.parent / "shared" / "data")
             if p and (Path(p) / "cifar-10-python.tar.gz").is_file()), None)
needs_data = pytest.mark.skipif(DATA is None and os.environ.get("CI", "").lower() != "true",
                                reason="real CIFAR-10 not found: set HIREMLP_DATA or provide ../shared/data")
FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.int64 if t.dtype == torch.float64 else torch.int32)


# ----------------------------------------------------------------------------------------------- roll and pads

@pytest.mark.parametrize("layout", list(FORMATS))
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("mode,pad", [("reflect", 1), ("reflect", 2), ("reflect", 4), ("replicate", 1),
                                      ("replicate", 2), ("replicate", 6)])
def test_copy_end_pad_equals_f_pad_in_value_and_gradient_and_keeps_the_layout(layout, dim, mode, pad) -> None:
    fmt = FORMATS[layout]
    x = torch.randn(2, 5, 7, 6, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_()
    ours, torchs = cr._EndPad.apply(x, dim, pad, mode), F.pad(x, cr._end_pad(dim, pad), mode=mode)
    assert torch.equal(_bits(ours), _bits(torchs)), "the padded values differ from F.pad's"
    g = torch.randn_like(torchs).contiguous(memory_format=fmt)
    (ga,), (gb,) = torch.autograd.grad(ours, x, g), torch.autograd.grad(torchs, x, g)
    if mode == "reflect" or pad == 1:  # every input row gets at most two terms: the same bits as F.pad
        assert torch.equal(_bits(ga), _bits(gb))
    else:  # a replicated row sums pad + 1 terms, in another order than F.pad's CPU kernel
        torch.testing.assert_close(ga, gb, rtol=1e-14, atol=1e-14)
    assert ours.is_contiguous(memory_format=fmt) and ga.is_contiguous(memory_format=fmt)
    assert torch.autograd.gradcheck(lambda t: cr._EndPad.apply(t, dim, pad, mode), (x,))


@pytest.mark.parametrize("layout", list(FORMATS))
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("step", [-3, -1, 1, 2, 5, 13])
def test_copy_roll_equals_torch_roll_bit_for_bit_and_keeps_the_layout(layout, dim, step) -> None:
    fmt = FORMATS[layout]
    x = torch.randn(2, 5, 7, 6).contiguous(memory_format=fmt).requires_grad_()
    ours, torchs = cr._Roll.apply(x, step, dim), torch.roll(x, step, dim)
    assert torch.equal(_bits(ours), _bits(torchs))
    g = torch.randn_like(torchs).contiguous(memory_format=fmt)
    (ga,), (gb,) = torch.autograd.grad(ours, x, g), torch.autograd.grad(torchs, x, g)
    assert torch.equal(_bits(ga), _bits(gb))
    assert ours.is_contiguous(memory_format=fmt) and ga.is_contiguous(memory_format=fmt)


def test_the_cpu_keeps_torch_kernels_and_other_devices_take_the_copies(monkeypatch) -> None:
    """CPU results stay bit for bit (``torch.roll`` / ``F.pad``); a CUDA tensor (here: meta, which has the same
    dispatch decision and real strides) never reaches them."""
    assert cr.torch_kernels_fit(torch.zeros(1)) and not cr.torch_kernels_fit(torch.zeros(1, device="meta"))
    calls = []
    real_pad, real_roll = F.pad, torch.roll
    monkeypatch.setattr(cr.F, "pad", lambda *a, **k: calls.append("pad") or real_pad(*a, **k))
    monkeypatch.setattr(cr.torch, "roll", lambda *a, **k: calls.append("roll") or real_roll(*a, **k))
    cpu = torch.randn(1, 4, 7, 7)
    cr.pad_axis(cpu, 2, 2, "replicate")
    cr.roll(cpu, 1, 3)
    assert calls == ["pad", "roll"]
    calls.clear()
    meta = torch.empty(1, 4, 7, 7, device="meta").contiguous(memory_format=torch.channels_last)
    for mode in ("reflect", "replicate"):
        assert cr.pad_axis(meta, 3, 2, mode).is_contiguous(memory_format=torch.channels_last)
    assert cr.roll(meta, 2, 2).is_contiguous(memory_format=torch.channels_last)
    assert calls == []


@pytest.mark.parametrize("padding", ["reflect", "replicate"])
@pytest.mark.parametrize("cross", ["shift", "shuffle"])
def test_hire_module_on_the_copy_path_equals_the_reference_and_stays_channels_last(padding, cross,
                                                                                   monkeypatch) -> None:
    """The whole module as it runs on a GPU (copy path forced on the CPU): equal to the reference path in float64,
    forward and backward, and channels-last through every branch in both directions."""
    monkeypatch.setattr(cr, "torch_kernels_fit", lambda x: False)
    kwargs = dict(region_size=(3, 2), shift=(2, 1), padding=padding, cross_region=cross)
    torch.manual_seed(0)
    fast = HireModule(16, **kwargs).train().double()
    ref = HireModule(16, impl="reference", **kwargs).train().double()
    ref.load_state_dict(fast.state_dict())
    layouts = []
    matmul_path = InnerRegionMLP.forward_channels_last

    def spy(self, x):
        out = matmul_path(self, x)
        out.register_hook(lambda g: layouts.append(g.is_contiguous(memory_format=torch.channels_last)))
        return out

    monkeypatch.setattr(InnerRegionMLP, "forward_channels_last", spy)
    x = torch.randn(2, 16, 7, 9, dtype=torch.float64)
    xf = x.clone(memory_format=torch.channels_last).requires_grad_()
    xr = x.clone().requires_grad_()
    out_f, out_r = fast(xf), ref(xr)
    torch.testing.assert_close(out_f, out_r, rtol=1e-10, atol=1e-10)
    assert out_f.is_contiguous(memory_format=torch.channels_last)
    g = torch.randn_like(out_r)
    out_f.backward(g)
    out_r.backward(g)
    torch.testing.assert_close(xf.grad, xr.grad, rtol=1e-10, atol=1e-10)
    assert layouts == [True, True] and xf.grad.is_contiguous(memory_format=torch.channels_last)


def test_split_attention_keeps_the_branch_dtype_when_softmax_runs_in_float32(monkeypatch) -> None:
    """CUDA autocast's softmax returns float32 (CPU autocast's keeps bf16): the full-size fused map must not
    follow it to float32. Emulated on the CPU by a softmax that returns float32."""
    real = torch.Tensor.softmax
    monkeypatch.setattr(torch.Tensor, "softmax", lambda self, *a, **k: real(self.float(), *a, **k))
    m = HireModule(16, region_size=2, shift=1).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outs = [t.to(torch.bfloat16) for t in m.branch_outputs(torch.randn(2, 16, 8, 8)).values()]
        assert m.reweight(outs).dtype == torch.bfloat16


# ----------------------------------------------------------------------------------------------- the training step

HOST_VALUE_CONSTRUCTORS = ("tensor", "as_tensor", "asarray", "scalar_tensor", "from_numpy")
READ_BACKS = ("item", "tolist", "cpu", "numpy")


class HostTraffic:
    """Counts, while on, calls that build a tensor from Python values (a pageable copy plus a stream sync when
    the target is a GPU) and calls that read a tensor back to the host (a sync), with where they came from."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on, self.calls = False, []
        import traceback

        def wrap(owner, name):
            real = getattr(owner, name)

            def counted(*a, **k):
                if self.on:
                    frame = next((f for f in reversed(traceback.extract_stack()[:-1])
                                  if "test_gpu_path" not in f.filename), None)
                    self.calls.append(f"{name} at {frame.filename}:{frame.lineno}" if frame else name)
                return real(*a, **k)
            monkeypatch.setattr(owner, name, counted)

        for name in HOST_VALUE_CONSTRUCTORS:
            wrap(torch, name)
        wrap(torch.Tensor, "new_tensor")
        for name in READ_BACKS:
            wrap(torch.Tensor, name)


@needs_data
def test_no_tensor_is_made_from_a_python_value_or_read_back_in_a_paper_recipe_training_step(
        tmp_path: Path, monkeypatch) -> None:
    """From the end of one batch to the end of the next: loading and augmenting (RandAugment with every op, random
    erasing, mixup/CutMix, repeated augmentation), forward, loss, backward, optimizer and lr steps, every callback.
    On a GPU each of those calls would be a host sync per step; the CUDA-only ``set_sync_debug_mode`` probe of
    ``benchmarks/gpu_check.py`` checks the same thing on the device."""
    import pytorch_lightning as pl

    from lightning_modules import RunConfig, run
    from lightning_modules.recipe import PAPER

    traffic = HostTraffic(monkeypatch)

    class Window(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            traffic.on = 0 < batch_idx + 1 < trainer.num_training_batches  # off before the last batch's checks

    recipe = PAPER.replace(epochs=1, cooldown_epochs=0, warmup_epochs=0.5, batch_size=16, randaug_ops=6)
    cfg = RunConfig(preset="smoke", recipe=recipe, train_subset=16 * 6, eval_subset=16, device="cpu",
                    data_dir=str(DATA), run_dir=str(tmp_path), progress="off", checkpoint_every_s=1e9)
    run(cfg, callbacks=[Window()])
    assert traffic.calls == [], "host traffic inside a training step:\n" + "\n".join(traffic.calls)


def test_evaluate_reads_the_device_once_and_gives_the_old_numbers(monkeypatch) -> None:
    from lightning_modules.classifier import HireMLPClassifier

    torch.manual_seed(0)
    module = HireMLPClassifier(**hiremlp_smoke())
    batches = [(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))) for _ in range(5)]
    loss_sum = correct = 0.0
    with torch.no_grad():
        for x, y in batches:  # what evaluate() computed before: two reads per batch, summed as Python floats
            logits = module.eval_model.eval()(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
    reads = []
    real_item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append(1) or real_item(self))
    got = module.evaluate(batches)
    assert len(reads) == 2, f"{len(reads)} reads for 5 batches"
    assert (got["loss"], got["acc"]) == (loss_sum / 40, 100.0 * correct / 40)  # bit for bit
    assert got["label"].tolist() == torch.cat([y for _, y in batches]).tolist()


def hiremlp_smoke() -> dict:
    import hiremlp

    return {**hiremlp.PRESETS["smoke"].to_flat(), "num_classes": 10}


# ----------------------------------------------------------------------------------------------- ranks

def test_the_progress_bar_never_enters_a_collective(monkeypatch) -> None:
    """Only rank 0 draws the bar: an all-reduce there would wait for ranks that never call it (a hang), and
    would replace rank 0's running sums with global ones mid-epoch."""
    from pytorch_lightning.callbacks import TQDMProgressBar

    import lightning_modules.classifier as classifier
    from lightning_modules.progress import EpochBar

    def collective(t):
        raise AssertionError("a collective from the progress bar")

    monkeypatch.setattr(classifier, "all_reduce_sum", collective)
    monkeypatch.setattr(TQDMProgressBar, "get_metrics", lambda self, trainer, module: {})
    monkeypatch.setattr(classifier.HireMLPClassifier, "current_lr", lambda self: 1e-3)
    module = classifier.HireMLPClassifier(**hiremlp_smoke())
    module._trainer = SimpleNamespace(world_size=2)
    sums = torch.tensor([6.0, 3.0, 4.0])
    module._sums["train"] = sums.clone()
    items = EpochBar().get_metrics(module._trainer, module)
    assert items["train_loss"] == "1.500" and items["train_acc"] == "75.000"
    assert torch.equal(module._sums["train"], sums) and not module._reduced
    with pytest.raises(AssertionError, match="collective"):  # the epoch's summary does reduce (every rank calls it)
        module.epoch_stats("train")


class _Strategy:
    def __init__(self, decision: bool) -> None:
        self.decision, self.asked = decision, []

    def broadcast(self, obj, src=0):
        self.asked.append(obj)
        return self.decision


@pytest.mark.parametrize("rank0_says,local_due", [(True, False), (False, True)])
def test_checkpoint_timing_is_rank_zeros_decision(tmp_path, monkeypatch, rank0_says, local_due) -> None:
    """Each rank's clock differs; a rank that saved alone would wait in the checkpoint's barrier. Every rank
    follows the decision rank 0 broadcasts, as Lightning's own time-based checkpointing does."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from lightning_modules.checkpoints import LastCheckpoint

    saved = []
    monkeypatch.setattr(ModelCheckpoint, "on_train_epoch_end", lambda self, trainer, module: saved.append(1))
    cb = LastCheckpoint(tmp_path, every_s=0 if local_due else 1e9)
    trainer = SimpleNamespace(current_epoch=0, max_epochs=5, strategy=_Strategy(rank0_says))
    cb.on_train_epoch_end(trainer, None)
    assert trainer.strategy.asked == [local_due] and saved == ([1] if rank0_says else [])


def test_a_checkpoint_with_more_cuda_states_than_visible_devices_resumes(monkeypatch) -> None:
    """A checkpoint from a process that saw 8 GPUs (the old ``get_rng_state_all``), resumed by a worker pinned to
    one: only this rank's device is restored, from the right state. New checkpoints keep one state per rank."""
    from lightning_modules.checkpoints import TrainingRNG, cuda_state_for

    states = [torch.full((16,), i, dtype=torch.uint8) for i in range(8)]
    restored = []

    def set_rng_state(state, device):
        if torch.device(device).index != 0:
            raise IndexError("only cuda:0 is visible")
        restored.append((int(state[0]), torch.device(device)))

    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: (_ for _ in ()).throw(IndexError("8 > 1")))
    cuda0 = torch.device("cuda", 0)
    trainer = SimpleNamespace(global_rank=0, world_size=1, strategy=SimpleNamespace(root_device=cuda0))
    rng = TrainingRNG()
    cpu_state = torch.get_rng_state()
    rng.load_state_dict({"torch": cpu_state, "cuda": states})
    torch.rand(3)
    rng.on_train_start(trainer, None)
    assert restored == [(0, cuda0)] and torch.equal(torch.get_rng_state(), cpu_state)
    # per-rank states: rank r restores saved rank r; a run resumed on more ranks gives the extra ones rank 0's
    by_rank = {"cuda_by_rank": states[:2]}
    assert [int(cuda_state_for(by_rank, r, cuda0)[0]) for r in range(3)] == [0, 1, 0]
    assert cuda_state_for({"torch": cpu_state}, 0, cuda0) is None

    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: states[3])
    gathered = SimpleNamespace(world_size=2, strategy=SimpleNamespace(
        root_device=cuda0, all_gather=lambda t: torch.stack([t.cpu(), states[5]])))
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: self)  # no CUDA here to move the state to
    rng.setup(gathered, None, "fit")
    saved = rng.state_dict()["cuda_by_rank"]
    assert [int(s[0]) for s in saved] == [3, 5]


# ----------------------------------------------------------------------------------------------- the worker

@pytest.fixture
def fake_sweep(tmp_path, monkeypatch):
    for var in ("SWEEP_FAKE_FAIL", "SWEEP_FAKE_NAN", "SWEEP_FAKE_SLEEP", "SWEEP_FAKE_LOG"):
        monkeypatch.delenv(var, raising=False)
    return ["--study", "padding", "--protocol", "smoke", "--trainer", FAKE, "--runs-dir", str(tmp_path),
            "--seeds", "1", "--rows", "zero,circular"]


def _trials(runs: Path):
    import optuna

    from sweeps.storage import open_storage

    (folder,) = [p for p in runs.iterdir() if p.is_dir()]
    storage = open_storage(None, folder)
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).trials


def test_a_sticky_cuda_error_stops_the_worker_and_gives_the_cell_back(tmp_path, fake_sweep, monkeypatch,
                                                                       capsys) -> None:
    """A device-side assert leaves the process's CUDA context unusable: the worker records the trial, re-queues its
    cell and exits (status 3, saying why) instead of failing every remaining cell at once; a healthy run then
    completes everything. A cell that breaks a device a second time is left failed."""
    from sweeps.run import main
    from tests import sweep_fakes

    real, broken = sweep_fakes.fake_trainer, {"zero"}

    def sometimes_broken(cfg, callbacks=(), *, row):
        if row in broken:
            raise RuntimeError("CUDA error: device-side assert triggered\nCompile with TORCH_USE_CUDA_DSA ...")
        return real(cfg, callbacks, row=row)

    sometimes_broken.needs_data = False
    monkeypatch.setattr(sweep_fakes, "fake_trainer", sometimes_broken)
    assert main(fake_sweep) == 3
    err = capsys.readouterr().err
    assert "CUDA context is broken" in err and "re-queued" in err
    trials = _trials(tmp_path)
    assert [t.state.name for t in trials] == ["FAIL", "WAITING", "WAITING"]  # the second cell was never claimed
    assert trials[0].user_attrs["fail_reason"].startswith("cuda error (RuntimeError): CUDA error: device-side")
    broken.clear()
    assert main(fake_sweep) == 0
    broken.add("circular")
    more = ["--seeds", "2"]
    assert main(fake_sweep + more) == 3 and main(fake_sweep + more) == 3
    assert "not re-queued: it broke a device before" in capsys.readouterr().err
    assert not [t for t in _trials(tmp_path) if t.state.name == "WAITING"]


def test_out_of_memory_frees_the_cache_after_the_trial_is_gone(tmp_path, fake_sweep, monkeypatch) -> None:
    """``empty_cache`` can only return blocks no tensor holds: called inside the handler, the exception's frames
    still held the trial's tensors."""
    from sweeps.run import main
    from tests import sweep_fakes

    refs, alive_at_free = [], []

    def oom(cfg, callbacks=(), *, row):
        activations = torch.zeros(1000)
        refs.append(weakref.ref(activations))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    oom.needs_data = False
    monkeypatch.setattr(sweep_fakes, "fake_trainer", oom)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: alive_at_free.append(refs[-1]() is not None))
    assert main(fake_sweep) == 1
    assert alive_at_free == [False, False]
    assert all(t.user_attrs["fail_reason"].startswith("out of memory") for t in _trials(tmp_path))
    gc.collect()


def test_a_compiled_run_starts_with_a_fresh_dynamo_cache(tmp_path, monkeypatch) -> None:
    import torch._dynamo

    from lightning_modules import RunConfig, run

    class Reset(Exception):
        pass

    monkeypatch.setattr(torch._dynamo, "reset", lambda: (_ for _ in ()).throw(Reset()))
    with pytest.raises(Reset):
        run(RunConfig(preset="smoke", device="cpu", compile=True, run_dir=str(tmp_path), progress="off"))
    assert json.loads((tmp_path / "config.json").read_text())["run"]["compile"] is True


# ----------------------------------------------------------------------------------------------- on a GPU

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/gpu_check.py runs it)")
@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_roll_and_pads_on_cuda_match_torch_keep_the_layout_and_repeat(mode: str) -> None:
    x = torch.randn(8, 64, 14, 15, device="cuda").contiguous(memory_format=torch.channels_last).requires_grad_()
    for dim in (2, 3):
        ours, torchs = cr.pad_axis(x, dim, 2, mode), F.pad(x, cr._end_pad(dim, 2), mode=mode)
        assert torch.equal(ours, torchs) and ours.is_contiguous(memory_format=torch.channels_last)
        g = torch.randn_like(ours)
        grads = [torch.autograd.grad(cr.pad_axis(x, dim, 2, mode), x, g)[0] for _ in range(3)]
        torch.testing.assert_close(grads[0], torch.autograd.grad(torchs, x, g)[0])
        assert all(torch.equal(grads[0], other) for other in grads[1:])
        assert grads[0].is_contiguous(memory_format=torch.channels_last)
        rolled = cr.roll(x, 3, dim)
        assert torch.equal(rolled, torch.roll(x, 3, dim)) and rolled.is_contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------------------------- the self-check

def _gpu_check(*args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_the_self_checks_dry_run_lists_every_stage_and_bad_input_is_one_line() -> None:
    from benchmarks.gpu_check import STAGES

    out = _gpu_check("--dry-run")
    assert out.returncode == 0, out.stderr
    listed = [line.split()[0] for line in out.stdout.splitlines()[1:] if line[:1].strip()]
    assert listed == [s.name for s in STAGES]
    assert "sweeps/run.py --study padding --protocol cifar10" in out.stdout
    cpu = _gpu_check("--dry-run", "--device", "cpu")
    assert "sync" in cpu.stdout and "[skipped: needs CUDA]" in cpu.stdout
    for bad, says in ((["--stages", "sync,warp"], "warp is not a stage"),
                      (["--device", "cpu", "--stages", "resume", "--data-dir", "/nonexistent"], "--data-dir")):
        r = _gpu_check(*bad)
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    if not torch.cuda.is_available():
        r = _gpu_check("--stages", "layout")
        assert r.returncode == 2 and "no CUDA device" in r.stderr


def test_the_self_checks_cpu_stages_pass_and_write_the_summary(tmp_path: Path) -> None:
    """The stages a CPU can run, at their CPU size: the probes in-process, the summary files as users get them."""
    from benchmarks.gpu_check import main

    stages = "sync,layout,repeatability,fast_vs_reference,cuda_tests"
    assert main(["--device", "cpu", "--stages", stages, "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    got = summary["stages"]
    assert got["sync"]["ok"] is None and got["cuda_tests"]["ok"] is None  # CUDA only
    assert got["layout"] == {**got["layout"], "ok": True, "branches": 12, "lost_channels_last": []}
    assert all(got["repeatability"][m]["tensors_differing"] == 0 for m in ("zero", "reflect", "replicate",
                                                                            "circular"))
    assert got["fast_vs_reference"]["ok"] and got["fast_vs_reference"]["fp32"]["logits_rel_diff"] < 1e-5
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| layout | pass |" in table and "| sync | skipped |" in table


def test_the_self_checks_layout_stage_fails_when_a_branch_loses_channels_last(tmp_path: Path, monkeypatch) -> None:
    from benchmarks import gpu_check

    monkeypatch.setattr(cr, "roll", lambda x, step, dim: torch.roll(x.contiguous(), step, dim))
    assert gpu_check.main(["--device", "cpu", "--stages", "layout", "--out", str(tmp_path)]) == 1
    got = json.loads((tmp_path / "gpu_check.json").read_text())["stages"]["layout"]
    assert not got["ok"] and "zero/shift" in got["lost_channels_last"] and "zero/none" not in got["lost_channels_last"]


@needs_data
def test_the_self_checks_sweep_resume_and_epoch_time_stages_on_a_cpu(tmp_path: Path) -> None:
    """The run stages at their CPU size (smoke protocol, 256 images): a real sweep with one and two workers, a
    SIGKILLed run resumed to the uninterrupted numbers, and the dry run taking its time from the sweep's trials."""
    out = _gpu_check("--device", "cpu", "--stages", "sweep,resume,epoch_time", "--out", str(tmp_path),
                     "--data-dir", str(DATA))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    got = json.loads((tmp_path / "gpu_check.json").read_text())["stages"]
    assert got["sweep"]["one_worker"]["exit"] == 0 and got["sweep"]["two_workers"]["exit"] == 0
    assert got["resume"]["resume_vs_uninterrupted"] == 0 == got["resume"]["run_to_run"]  # the CPU repeats exactly
    assert 1 <= got["resume"]["resumed_from_epoch"] < 4
    assert "recorded" in got["epoch_time"]["dry_run_time"] or got["epoch_time"]["ok"]
    assert got["epoch_time"]["epoch_s_at_full_split"] > 0
