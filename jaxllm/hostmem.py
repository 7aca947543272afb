"""glibc malloc settings for CPU-only runs, applied by re-executing the ``jaxllm`` command once.

XLA:CPU allocates each execution's temporaries in one block (the demo's train step: 244 MiB). glibc serves
a block that large with ``mmap`` and unmaps it when the step ends, so every step faults its temporaries back
in page by page: 65k page faults per step, 18% of the process's CPU time spent in the kernel (measured on
the 2-core CI VM, JAX 0.10.2). One malloc arena that never maps big blocks separately and never trims keeps
the block for the next step: 10x fewer page faults and about 13% less CPU time per training step of a lone
run, at the price of a resident size that stays at its peak (the demo's SFT: 1.0 -> 2.0 GB).
docs/PERFORMANCE.md has the figures.

glibc reads these settings only when a process starts, hence the re-exec. It is skipped where a GPU or TPU
is present or named (``JAX_PLATFORMS``), where the user already set ``GLIBC_TUNABLES`` or a ``MALLOC_*``
variable, and with ``JAXLLM_MALLOC=system``.
"""

from __future__ import annotations

import glob
import os
import platform
import sys
from collections.abc import Mapping

TUNABLES = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"
MARK = "JAXLLM_MALLOC"  # "tuned" once applied; "system" to opt out


def cpu_only(environ: Mapping[str, str]) -> bool:
    """No accelerator named in ``JAX_PLATFORMS`` and, when it is unset, none present (NVIDIA, TPU)."""
    platforms = environ.get("JAX_PLATFORMS", "").strip()
    if platforms:
        return platforms == "cpu"
    return not (glob.glob("/dev/nvidia[0-9]*") or glob.glob("/dev/accel*"))


def wanted(environ: Mapping[str, str], system: str | None = None, libc: str | None = None) -> bool:
    """Whether a ``jaxllm`` process with this environment should restart with `TUNABLES`."""
    system = system if system is not None else platform.system()
    libc = libc if libc is not None else platform.libc_ver()[0]
    if system != "Linux" or libc != "glibc" or MARK in environ or "GLIBC_TUNABLES" in environ:
        return False
    if any(k.startswith("MALLOC_") for k in environ):
        return False
    return cpu_only(environ)


def tuned_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {**environ, "GLIBC_TUNABLES": TUNABLES, MARK: "tuned"}


def reexec_if_wanted() -> None:
    """Replace this process (same pid, arguments and open files) by itself under `TUNABLES`, if `wanted`."""
    if not wanted(os.environ):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, tuned_env(os.environ))
    except OSError:  # an unusual interpreter set-up: run on with glibc's defaults
        os.environ[MARK] = "system"
