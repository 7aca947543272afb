"""Multi-process start-up with ``jax.distributed``: who the processes are, one initialisation, no silent hangs.

Settings, first found wins: the ``distributed`` config section; the environment
(``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``); JAX's own
cluster detection (SLURM, Open MPI, Cloud TPU VMs, GKE TPU JobSets).

How a failed process stops the others:
- it dies (killed, out of memory, lost host): it stops sending heartbeats and JAX
  terminates every other process after ``distributed.heartbeat_timeout_s``, naming
  the task that went silent;
- it fails with a Python error: `fail` posts the error to the coordinator's
  key-value store and exits; a watchdog thread in every other process reads the
  post within about a second and exits non-zero, quoting it;
- it cannot reach the coordinator: it stops after ``initialization_timeout_s``
  with a message naming the address.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import sys
import threading
import time

import jax

from jaxllm.errors import ConfigError, UserError

ENV = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
       "process_id": "JAX_PROCESS_ID"}
_FAILED = "jaxllm/failed/"
_ACK = "jaxllm/stopped/"
_ALIVE = "jaxllm/alive/"  # a counter each watchdog raises every second: who still lives, after a collective fails
_SETTINGS: dict = {}  # the job's distributed settings, process-wide like jax.distributed's own state


@dataclasses.dataclass(frozen=True)
class Plan:
    """What `initialize` will pass to ``jax.distributed.initialize`` (None = let JAX's cluster detection choose)."""

    coordinator_address: str | None
    num_processes: int | None
    process_id: int | None
    source: str  # where the settings came from, for the start-up line


def detect_cluster(environ=os.environ) -> str | None:
    """The multi-process scheduler visible in the environment, if the job has more than one process."""
    def count(name):
        try:
            return int(environ.get(name, "1").split("(")[0])
        except ValueError:
            return 1
    if "SLURM_JOB_ID" in environ and "SLURM_PROCID" in environ and count("SLURM_NTASKS") > 1:
        return "SLURM"
    if count("OMPI_COMM_WORLD_SIZE") > 1:
        return "Open MPI"
    if len([h for h in environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1:
        return "GKE TPU"
    return None


def _env_int(environ, key: str, name: str) -> int | None:
    raw = environ.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer (it sets distributed.{key}).") from None


def plan(dc, environ=os.environ) -> Plan | None:
    """The start-up this process needs, or None for a single-process job."""
    if dc.initialize == "never":
        return None
    given = {"coordinator_address": dc.coordinator_address or environ.get(ENV["coordinator_address"]) or None,
             "num_processes": dc.num_processes if dc.num_processes is not None else _env_int(environ, "num_processes", ENV["num_processes"]),
             "process_id": dc.process_id if dc.process_id is not None else _env_int(environ, "process_id", ENV["process_id"])}
    from_config = [k for k in given if getattr(dc, k) is not None]
    source = "config" if from_config else ("environment" if any(v is not None for v in given.values()) else "")
    n, pid = given["num_processes"], given["process_id"]
    cluster = detect_cluster(environ)
    if n is not None:
        if n == 1 and dc.initialize == "auto":
            return None
        if pid is None and cluster is None:
            raise ConfigError(f"{n} processes but no process id: set {ENV['process_id']} (0..{n - 1}) or "
                              "distributed.process_id for each process.")
        if pid is not None and not 0 <= pid < n:
            raise ConfigError(f"process id {pid} is out of range for {n} processes ({ENV['process_id']} / "
                              f"distributed.process_id must be 0..{n - 1}).")
        if given["coordinator_address"] is None and cluster is None:
            raise ConfigError(f"{n} processes but no coordinator: set {ENV['coordinator_address']}=host:port "
                              "(process 0's address and a free port) or distributed.coordinator_address.")
    elif dc.initialize == "auto" and cluster is None:
        return None
    if cluster and not source:
        source = f"{cluster} (JAX's cluster detection)"
    return Plan(given["coordinator_address"], n, pid, source or "JAX's cluster detection")


def _wait_for_coordinator(address: str, timeout: float, pid: int | None) -> None:
    """Processes other than 0 first check that the coordinator's port answers, so that a wrong address or a
    missing process 0 gives a plain message rather than JAX's abort."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
                return
        except OSError as e:
            if time.monotonic() > deadline:
                raise UserError(f"process {pid}: cannot reach the coordinator at {address} after {timeout:.0f}s ({e}). "
                                "Check that process 0 is running and that this host can reach that address and port "
                                "(firewall, the right interface); distributed.initialization_timeout_s sets the wait.") from None
            time.sleep(0.5)


def initialize(dc, environ=os.environ) -> Plan | None:
    """Call ``jax.distributed.initialize`` once when the job has several processes; start the failure watchdog.

    Must run before anything asks JAX for devices. Returns the plan (None: single process).
    """
    p = plan(dc, environ)
    if p is None or jax.distributed.is_initialized():
        return p
    timeout = dc.initialization_timeout_s
    if p.coordinator_address and p.process_id not in (None, 0):
        _wait_for_coordinator(p.coordinator_address, timeout, p.process_id)
    waiting = threading.Timer(max(timeout - 1.0, timeout * 0.9), lambda: _say(
        f"jaxllm: process {p.process_id}: not every one of the {p.num_processes or '?'} processes reached the "
        f"coordinator at {p.coordinator_address or '(detected)'} within {timeout}s; JAX stops the job now. Check that "
        "all were started, with the same coordinator address and process count."))
    waiting.daemon = True
    waiting.start()
    try:
        jax.distributed.initialize(coordinator_address=p.coordinator_address, num_processes=p.num_processes,
                                   process_id=p.process_id, initialization_timeout=timeout,
                                   heartbeat_timeout_seconds=dc.heartbeat_timeout_s,
                                   shutdown_timeout_seconds=dc.shutdown_timeout_s)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"jax.distributed.initialize failed ({p.source}): {e}") from None
    finally:
        waiting.cancel()
    _say(f"jaxllm: process {jax.process_index()} of {jax.process_count()} on {socket.gethostname()} "
         f"(pid {os.getpid()}), {jax.local_device_count()} local device(s), coordinator "
         f"{p.coordinator_address or 'detected'}; settings from {p.source}")
    _SETTINGS.update(heartbeat_timeout_s=dc.heartbeat_timeout_s)
    _Watchdog().start()
    return p


def is_multiprocess() -> bool:
    return jax.distributed.is_initialized() and jax.process_count() > 1


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def preemption_service_running() -> bool:
    """Whether JAX's preemption service (it owns SIGTERM in a multi-process job) was started with this job."""
    try:
        from jax._src.distributed import global_state
        return global_state.preemption_sync_manager is not None
    except (ImportError, AttributeError):
        return False


def _client():
    try:
        from jax._src.distributed import global_state
        return global_state.client
    except (ImportError, AttributeError):  # a JAX without the key-value store: heartbeats still apply
        return None


class _Watchdog(threading.Thread):
    """Polls the coordinator for failures posted by other processes; exits this process when one appears."""

    def __init__(self, every_s: float = 1.0):
        super().__init__(name="jaxllm-watchdog", daemon=True)
        self.every_s = every_s

    def run(self):
        me, beat = jax.process_index(), 0
        while True:
            time.sleep(self.every_s)
            client = _client()
            if client is None or not jax.distributed.is_initialized():
                return
            try:
                beat += 1
                client.key_value_set(f"{_ALIVE}{me}", str(beat), allow_overwrite=True)
                posted = client.key_value_dir_get(_FAILED)
            except Exception:  # coordinator gone or shutting down: JAX's heartbeat check takes over
                return
            others = [(k, v) for k, v in posted if not k.endswith(f"/{me}")]
            if others and _SETTINGS.get("failing"):  # failing too: only acknowledge, exit with its own status
                client.key_value_set(f"{_ACK}{me}", "1")
            elif others:
                key, text = others[0]
                _say(f"jaxllm: process {me} stops because process {key.rsplit('/', 1)[-1]} failed: {text}")
                try:  # lets the failed process exit first, with its own status, while the coordinator lives
                    client.key_value_set(f"{_ACK}{me}", "1")
                    time.sleep(0.5)
                except Exception:
                    pass
                os._exit(3)


def looks_like_peer_loss(e: BaseException) -> bool:
    """A collective or coordinator error, the usual sign that another process stopped."""
    text = str(e)
    return type(e).__name__ in ("JaxRuntimeError", "XlaRuntimeError") and any(
        s in text for s in ("Gloo", "NCCL", "Connection closed", "peer", "UNAVAILABLE", "coordination service"))


def _beats(client) -> dict[int, str]:
    return {int(k.rsplit("/", 1)[-1]): v for k, v in client.key_value_dir_get(_ALIVE)}


def dead_peers(wait_s: float = 3.0) -> tuple[list[int], str]:
    """Which other processes stopped: their watchdog counters do not move over ``wait_s`` seconds
    (``([0], ...)`` when the coordinator itself, process 0, no longer answers). Also how it was seen."""
    me, client = jax.process_index(), _client()
    if client is None:
        return [], ""
    try:
        before = _beats(client)
        time.sleep(wait_s)
        after = _beats(client)
    except Exception:
        return [0], "the coordinator no longer answers"
    dead = [i for i in range(jax.process_count()) if i != me and after.get(i) == before.get(i)]
    return dead, f"no sign of life for {wait_s:.0f}s"


def fail(message: str, code: int, peer_suspected: bool = False) -> None:
    """In a multi-process job: tell the other processes why this one stops, then exit now.

    Exiting through Python's normal path would wait at JAX's shutdown barrier for
    processes that are themselves waiting in a collective for this one. When the
    error looks like another process's loss, first wait for the coordinator's
    heartbeat check to name that process (it terminates this one when it does).
    """
    _SETTINGS["failing"] = True
    if peer_suspected:
        dead, how = dead_peers(min(3.0, _SETTINGS.get("heartbeat_timeout_s", 100) / 2))
        if dead:
            names = ", ".join(map(str, dead))
            who = "the coordinator (process 0)" if dead == [0] else f"process {names}"
            _say(f"jaxllm: process {jax.process_index()} stops: {who} died ({how}); a collective with it failed. "
                 "Its own log or the scheduler says why.")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(3)
        wait = 2 * _SETTINGS.get("heartbeat_timeout_s", 100) + 10  # JAX's check can lag on a loaded host
        _say(f"jaxllm: process {jax.process_index()}: a collective failed, so another process has probably stopped; "
             f"waiting up to {wait}s for the coordinator to name it")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            time.sleep(0.5)
    client = _client()
    if client is not None:
        try:
            client.key_value_set(f"{_FAILED}{jax.process_index()}", message[:2000])
            deadline = time.monotonic() + 3.0  # the watchdogs read it while this process (maybe the coordinator) lives
            while time.monotonic() < deadline and len(client.key_value_dir_get(_ACK)) < jax.process_count() - 1:
                time.sleep(0.1)
        except Exception:
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def check_same_everywhere(what: str, data: bytes) -> None:
    """Raise a `UserError` naming ``what`` unless every process holds the same ``data`` (e.g. its tokenizer)."""
    if not is_multiprocess():
        return
    import numpy as np
    from jax.experimental import multihost_utils
    digest = np.frombuffer(hashlib.sha256(data).digest(), np.uint32)
    same = multihost_utils.process_allgather(digest)
    differ = [i for i in range(same.shape[0]) if not np.array_equal(same[i], same[0])]
    if differ:
        raise UserError(f"{what} differs between process 0 and process(es) {differ}: every process must read the same "
                        "data and settings (same files at the same paths on every host, same config).")


def process_devices(mesh) -> str:
    """``process 0: cpu 0-3; process 1: cpu 4-7``: which devices of the mesh each process drives."""
    by_proc: dict[int, list] = {}
    for d in mesh.devices.flat:
        by_proc.setdefault(d.process_index, []).append(d)
    parts = []
    for proc in sorted(by_proc):
        ids = sorted(d.id for d in by_proc[proc])
        span = f"{ids[0]}-{ids[-1]}" if ids == list(range(ids[0], ids[-1] + 1)) and len(ids) > 1 else ",".join(map(str, ids))
        parts.append(f"process {proc}: {by_proc[proc][0].platform} {span}")
    return "; ".join(parts)
