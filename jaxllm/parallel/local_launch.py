"""``jaxllm launch --local N COMMAND ...``: N processes on this machine, as a multi-host job would run.

Each process gets ``JAX_COORDINATOR_ADDRESS=127.0.0.1:<free port>``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID`` and its own fake CPU devices, runs ``python -m jaxllm COMMAND ...``,
and its output lines come back prefixed ``[i]``. When one process fails, the
others are expected to stop by themselves (JAX's heartbeat check, jaxllm's
failure watchdog); any still running ``grace_s`` later are killed. A summary
names the process that failed first.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(i: int, n: int, port: int, devices: int, base=None) -> dict[str, str]:
    """The environment of local process ``i`` of ``n``: coordinator, ids and ``devices`` fake CPU devices."""
    env = dict(os.environ if base is None else base)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(n), JAX_PROCESS_ID=str(i),
               JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
               XLA_FLAGS=" ".join(flags + [f"--xla_force_host_platform_device_count={devices}"]))
    return env


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit code {rc}"


_GLOO_HELLO = re.compile(r"^\[Gloo\] Rank \d+ is connected to \d+ peer ranks")


_STACK_START = "*** Check failure stack trace: ***"
_STACK_FRAME = re.compile(r"^\s+@\s+0x[0-9a-f]+\s")


def _pump(i: int, stream, out) -> None:
    """Child output, prefixed ``[i]``; a C++ stack trace of a fatal XLA error becomes one line (the error
    message above it stays)."""
    frames = 0
    for line in stream:
        if _GLOO_HELLO.match(line):  # one line per collective group set up on CPU: noise
            continue
        if line.startswith(_STACK_START) or (frames and _STACK_FRAME.match(line)):
            frames += 1
            continue
        if frames:
            out.write(f"[{i}] ({frames - 1} frames of C++ stack trace omitted)\n")
            frames = 0
        out.write(f"[{i}] {line}")
        out.flush()
    if frames:
        out.write(f"[{i}] ({frames - 1} frames of C++ stack trace omitted)\n")
        out.flush()


def run_local(n: int, command: list[str], devices_per_process: int, grace_s: float = 120.0, out=None) -> int:
    """Run ``jaxllm COMMAND`` as ``n`` local processes; returns 0, or the first failure's exit status."""
    out = out or sys.stdout
    port = free_port()
    out.write(f"launch: {n} processes x {devices_per_process} CPU devices, coordinator 127.0.0.1:{port}: "
              f"jaxllm {' '.join(command)}\n")
    procs = [subprocess.Popen([sys.executable, "-m", "jaxllm", *command], env=process_env(i, n, port, devices_per_process),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
             for i in range(n)]
    pumps = [threading.Thread(target=_pump, args=(i, p.stdout, out), daemon=True) for i, p in enumerate(procs)]
    for t in pumps:
        t.start()

    def forward(signum, frame):  # Ctrl-C or a scheduler's SIGTERM: every process saves and stops
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)
    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    first, killed = None, []
    try:
        while [p.poll() for p in procs].count(None):  # poll every process: any() would stop at the first live one
            if first is None:
                failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode not in (None, 0)]
                if failed:
                    first = (*failed[0], time.monotonic())
            elif time.monotonic() - first[2] > grace_s:
                for i, p in enumerate(procs):
                    if p.poll() is None:
                        p.kill()
                        killed.append(i)
            time.sleep(0.1)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    for t in pumps:
        t.join(timeout=5)
    codes = [p.returncode for p in procs]
    if first is None:
        failed = [(i, rc) for i, rc in enumerate(codes) if rc != 0]
        first = (*failed[0], time.monotonic()) if failed else None
    if first is None:
        out.write(f"launch: all {n} processes finished\n")
        return 0
    i, rc, t_fail = first
    others = ", ".join(f"process {j} {_describe_exit(c)}" + (" (killed by the launcher)" if j in killed else "")
                       for j, c in enumerate(codes) if j != i)
    out.write(f"launch: process {i} failed first ({_describe_exit(rc)}); then {others}\n")
    return rc if rc > 0 else 128 - rc
