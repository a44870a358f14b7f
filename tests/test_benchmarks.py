"""The benchmark measures what it says: the GEMM floor replays exactly one train step's GEMM work, the table runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import hiremlp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench import GemmRecorder, gemm_replay  # noqa: E402


def test_gemm_floor_replays_the_train_steps_convolutions_and_matmuls() -> None:
    torch.manual_seed(0)
    model = hiremlp.create_model("smoke", num_classes=10).to(memory_format=torch.channels_last)
    x = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (8,))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    with FlopCounterMode(display=False) as real:
        step()
    recorder = GemmRecorder()
    with recorder:
        step()
    replay = gemm_replay(recorder.calls, "cpu")
    with FlopCounterMode(display=False) as replayed:
        replay()
    assert real.get_total_flops() > 0
    assert replayed.get_total_flops() == real.get_total_flops()
    # both matmul forms of the fast path and the remaining convolutions are in it
    ops = {str(func) for func, _ in recorder.calls}
    assert {"aten.mm.default", "aten.addmm.default", "aten.convolution.default"} <= ops


def test_bench_prints_the_table_and_rejects_a_bad_preset() -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--presets", "smoke", "--batch-size", "4",
           "--steps", "1", "--rounds", "1", "--threads", "1", "--devices", "cpu"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| smoke |")]
    assert len(rows) == 4 and not any("failed" in r for r in rows)
    assert "fast vs reference: max abs diff of logits" in out.stdout
    bad = subprocess.run(cmd[:2] + ["--presets", "huge"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "preset 'huge' does not exist" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_cpu_step_rows_time_the_protocols_step_now_and_at_a_baseline_commit(tmp_path: Path) -> None:
    bench = [sys.executable, str(ROOT / "benchmarks" / "bench.py")]
    cmd = bench + ["--cpu-step", "--cpu-step-baseline", "HEAD", "--cpu-step-compare", "HEAD", "--steps", "1",
                   "--rounds", "1", "--threads", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = [line.split(" | ") for line in out.stdout.splitlines() if line.startswith("| now") or
            line.startswith("| before (HEAD)") or line.startswith("| model code at")]
    assert [r[0] for r in rows] == ["| now", "| now, glibc's default allocator", "| model code at HEAD",
                                    "| before (HEAD)"]
    assert all(r[1:4] == ["smoke", "128", "1"] for r in rows)  # the cpu protocol's model and batch
    assert rows[-1][7] == "1.00x" and all(r[7].endswith("x") for r in rows)
    assert "torch kernels" in out.stdout  # the machine's ISA is stated
    for flag in ("--cpu-step-baseline", "--cpu-step-compare"):
        bad = subprocess.run(bench + [flag, "no-such-rev"], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and f"{flag} 'no-such-rev' is not a commit" in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def test_step_profile_splits_the_protocols_step_by_op_class() -> None:
    from bench import OP_CLASSES, step_profile

    r = step_profile("smoke", steps=1)
    shares = r["shares"]
    assert set(shares) == set(OP_CLASSES) | {"other"}
    assert abs(sum(shares.values()) - 1.0) < 1e-9 and all(v >= 0 for v in shares.values())
    # the smoke model's stage-1/2 1x1 convs, its matmuls, GELUs and batch norms all run in a step
    for name in ("convolutions (oneDNN)", "matmuls (BLAS)", "exact GELU", "batch norm"):
        assert shares[name] > 0.01, name
    assert 0 < r["gemm_share"] < 1.5 and r["gemm_calls"] > 20


def test_a_baseline_child_runs_the_model_code_it_is_given(tmp_path: Path) -> None:
    from bench import baseline_tree

    old = baseline_tree("HEAD", tmp_path)
    spec = '{"protocol": "cpu", "steps": 1, "warmup": 0, "keep_memory": false}'
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--child-step", spec],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "BENCH_HIREMLP_FROM": str(old)})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["hiremlp_from"] == str(old / "hiremlp")
    assert result["batch"] == 128 and result["img_s"] > 0 and not result["kept_memory"]


def test_bench_mixers_table_has_a_row_per_mixer_and_rejects_a_bad_mixer() -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--presets", "smoke", "--batch-size", "4",
           "--steps", "1", "--rounds", "1", "--threads", "1", "--devices", "cpu", "--mixers", "hire,as_mlp,dwconv"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line.split(" | ") for line in out.stdout.splitlines() if line.startswith("| smoke |")]
    assert [r[2] for r in rows] == ["hire", "as_mlp", "dwconv"] and rows[0][-2:] == ["1.00x", "1.00x |"]
    for r in rows:  # params column is the model's own
        mixer = r[2]
        model = hiremlp.create_model("smoke", num_classes=10, mixer=mixer)
        assert float(r[3]) == round(hiremlp.count_params(model) / 1e6, 3) and float(r[5]) > 0
    bad = subprocess.run(cmd[:-1] + ["hire,axial"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "mixer 'axial' does not exist" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
