"""The malloc settings `jaxllm` applies to itself on a CPU-only Linux host (jaxllm/hostmem.py)."""

import os
import platform
import subprocess
import sys

import pytest

from conftest import ROOT
from jaxllm.hostmem import MARK, wanted

glibc_linux = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                 reason="glibc malloc settings: Linux with glibc only")


def _plain_env(**extra):
    """This environment without the suite's own malloc settings (conftest.py sets them)."""
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", MARK) and not k.startswith("MALLOC_")}
    return {**env, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT), **extra}


@pytest.mark.parametrize("environ, system, libc, want", [
    ({"JAX_PLATFORMS": "cpu"}, "Linux", "glibc", True),
    ({"JAX_PLATFORMS": "cpu", MARK: "tuned"}, "Linux", "glibc", False),   # already applied: no loop
    ({"JAX_PLATFORMS": "cpu", MARK: "system"}, "Linux", "glibc", False),  # the user's opt-out
    ({"JAX_PLATFORMS": "cpu", "GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}, "Linux", "glibc", False),
    ({"JAX_PLATFORMS": "cpu", "MALLOC_ARENA_MAX": "4"}, "Linux", "glibc", False),
    ({"JAX_PLATFORMS": "cuda"}, "Linux", "glibc", False),
    ({"JAX_PLATFORMS": "tpu,cpu"}, "Linux", "glibc", False),
    ({"JAX_PLATFORMS": "cpu"}, "Darwin", "", False),
    ({"JAX_PLATFORMS": "cpu"}, "Linux", "musl", False),
])
def test_when_the_settings_apply(environ, system, libc, want):
    assert wanted(environ, system=system, libc=libc) is want


@glibc_linux
def test_the_command_restarts_itself_once_in_place_and_can_be_told_not_to():
    """`python -X importtime -m jaxllm` logs its imports again after the re-exec: twice, or once when opted out."""
    args = [sys.executable, "-X", "importtime", "-m", "jaxllm", "config", "show", "pretrain/demo"]
    tuned = subprocess.run(args, cwd=ROOT, env=_plain_env(), capture_output=True, text=True, timeout=120)
    plain = subprocess.run(args, cwd=ROOT, env=_plain_env(**{MARK: "system"}), capture_output=True, text=True,
                           timeout=120)
    assert tuned.returncode == plain.returncode == 0, tuned.stderr[-2000:] + plain.stderr[-2000:]
    count = lambda err: sum(line.rstrip().endswith("| jaxllm.cli") for line in err.splitlines())  # noqa: E731
    assert (count(tuned.stderr), count(plain.stderr)) == (2, 1)
    assert tuned.stdout == plain.stdout and "steps: 500" in tuned.stdout


PROBE = """
import ctypes, os, resource
from jaxllm.hostmem import reexec_if_wanted
print("pid", os.getpid(), flush=True)
reexec_if_wanted()
libc, size = ctypes.CDLL(None), 256 * 2**20  # like a train step's temporaries, written through
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print("pid", os.getpid(), "faults", sum(faults[1:]), os.environ.get("JAXLLM_MALLOC"))
"""


@glibc_linux
def test_a_freed_256_mib_block_is_reused_instead_of_faulted_in_again():
    """glibc's defaults unmap the block on free, so each new one faults in 65k pages; the settings keep it."""
    runs = {}
    for name, extra in (("tuned", {}), ("default", {MARK: "system"})):
        out = subprocess.run([sys.executable, "-c", PROBE], env=_plain_env(**extra), capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.split()
        runs[name] = lines
    tuned, default = runs["tuned"], runs["default"]
    assert tuned[1] == tuned[3] and tuned[-1] == "tuned"  # the same process, restarted in place
    pages = 256 * 2**20 // 4096
    assert int(default[5]) >= 5 * pages * 0.9  # five more blocks, each faulted in page by page
    assert int(tuned[5]) <= 0.1 * 5 * pages
