"""The CPU trial's allocator setting: a training step's freed activations are reused, not page-faulted in again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Minor page faults (the kernel handing the process fresh zeroed pages) of each of the steps after the first two
# of a smoke-model training step at batch 32, channels-last, as a CPU trial takes it.
_PROBE = """
import resource, sys, torch, torch.nn.functional as F
sys.path.insert(0, {root!r})
from lightning_modules.host_memory import keep_freed_memory
kept = keep_freed_memory() if {keep} else False
import hiremlp
torch.manual_seed(0)
model = hiremlp.create_model("smoke", num_classes=10).to(memory_format=torch.channels_last)
opt = torch.optim.AdamW(model.parameters(), fused=True)
x = torch.randn(32, 3, 32, 32).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (32,))
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    F.cross_entropy(model(x), y).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, max(faults[2:]))
"""


def _faults(keep: bool) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(root=str(ROOT), keep=keep)], capture_output=True,
                         text=True, timeout=300, check=True)
    kept, faults = out.stdout.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_keeping_freed_memory_stops_the_steps_page_faults() -> None:
    kept, faults = _faults(keep=True)
    default_kept, default_faults = _faults(keep=False)
    assert kept and not default_kept
    # glibc's default: every step maps its largest activations afresh (~20,000 pages of 4 KiB at batch 32)
    assert default_faults > 8000
    assert faults < default_faults // 4
