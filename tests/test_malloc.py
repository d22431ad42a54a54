"""trainer.release_freed_memory: with glibc's trim threshold fixed, a freed tensor leaves the resident set; left
dynamic, glibc keeps it after a larger one was freed before it. Each case in a fresh process (mallopt is global)."""

import subprocess
import sys

import pytest

PROBE = """
import sys, torch
from irpo.training.malloc import release_freed_memory

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024

if sys.argv[1] == "on":
    assert release_freed_memory()
before = rss()
larger = torch.ones(16 * 2**20 // 4)  # 16 MiB, mapped on its own; freeing it raises glibc's dynamic thresholds
del larger
smaller = torch.ones(8 * 2**20 // 4)  # 8 MiB: now from the heap, unless the thresholds stayed where they start
del smaller
print((rss() - before) / 2**20)
"""


def resident_rise_mib(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_memory_leaves_the_resident_set_only_when_released():
    assert resident_rise_mib("on") < 4  # the 8 MiB tensor went back to the OS
    assert resident_rise_mib("off") > 7  # glibc kept it
