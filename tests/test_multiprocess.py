"""Multi-process jobs with real local processes (jax.distributed on 127.0.0.1, a free port each time).

The reference for every trajectory is the same training in this pytest process: one
process driving 8 fake CPU devices. Start-up settings (`plan`) and the mesh's
ICI/DCN layout are also checked without processes.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import ROOT, tiny_config, tiny_overrides

TINY = str(ROOT / "configs" / "model" / "tiny.yaml")
LAUNCH_TIMEOUT = 420


def _losses(run_dir) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _eval_losses(run_dir) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["eval_loss"] for r in rows if "eval_loss" in r}


def _local_sh(n: int, run_dir, *extra, devices: int | None = None) -> str:
    """``launch/local.sh N tiny.yaml overrides``; returns its output (asserting success)."""
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    if devices:
        env["DEVICES_PER_PROCESS"] = str(devices)
    out = subprocess.run(["bash", str(ROOT / "launch" / "local.sh"), str(n), TINY, *tiny_overrides(run_dir, *extra)],
                         env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    return out.stdout


STEPS = ("train.steps=6", "checkpoint.every=3", "train.eval_every=3", "optimizer.warmup_steps=2")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Losses of the uninterrupted single-process 8-device run."""
    from jaxllm.train.loop import train

    run = tmp_path_factory.mktemp("ref") / "run"
    train(tiny_config(run, *STEPS))
    return _losses(run), _eval_losses(run)


@pytest.mark.slow
def test_process_counts_give_the_single_process_trajectory_and_checkpoints_move_between_them(tmp_path, reference):
    """2 x 4 devices train steps 1-3 and checkpoint; 1 process x 8 and 4 processes x 2 each resume it for
    steps 4-6. Every loss equals the single-process run's at the same step."""
    from jaxllm.train.loop import train

    ref, ref_eval = reference
    two = tmp_path / "two"
    out = _local_sh(2, two, *STEPS, "train.stop_at_step=3")
    assert "2 process(es), 4 local [process 0: cpu 0-3; process 1: cpu" in out
    assert "launch: all 2 processes finished" in out
    got = _losses(two)
    assert sorted(got) == [1, 2, 3]
    np.testing.assert_allclose([got[s] for s in (1, 2, 3)], [ref[s] for s in (1, 2, 3)], rtol=2e-5)
    np.testing.assert_allclose(_eval_losses(two)[3], ref_eval[3], rtol=2e-5)

    one, four = tmp_path / "one", tmp_path / "four"
    shutil.copytree(two, one)
    shutil.copytree(two, four)
    res = train(tiny_config(one, *STEPS))
    assert [h["step"] for h in res.history] == [4, 5, 6]
    np.testing.assert_allclose([h["loss"] for h in res.history], [ref[s] for s in (4, 5, 6)], rtol=2e-5)

    out = _local_sh(4, four, *STEPS, devices=2)
    assert "4 process(es), 2 local" in out and "resumed from" in out
    got = _losses(four)
    np.testing.assert_allclose([got[s] for s in (4, 5, 6)], [ref[s] for s in (4, 5, 6)], rtol=2e-5)
    np.testing.assert_allclose(_eval_losses(four)[6], ref_eval[6], rtol=2e-5)


@pytest.mark.slow
def test_four_processes_from_scratch_with_the_data_axis_across_processes(tmp_path, reference):
    """4 x 2 devices with mesh.dcn_data=4 (each process one data row) reproduce steps 1-3 and the sample."""
    ref, _ = reference
    run = tmp_path / "run"
    out = _local_sh(4, run, *STEPS, "train.stop_at_step=3", "mesh.dcn_data=4", devices=2)
    assert "mesh (data=8, fsdp=1, tensor=1)" in out and "4 process(es)" in out
    got = _losses(run)
    np.testing.assert_allclose([got[s] for s in (1, 2, 3)], [ref[s] for s in (1, 2, 3)], rtol=2e-5)


def _grid(out: str) -> list[list[int]]:
    return [[int(x) for x in m.group(1).split()] for m in re.finditer(r"data \d+: ([\d ]+)\n", out)]


@pytest.mark.slow
def test_mesh_command_shows_which_process_drives_each_device():
    """`jaxllm mesh` after joining: dcn_data keeps each process on one data row, dcn_fsdp splits the rows."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "jaxllm", "launch", "--local", "2", "mesh", TINY, "mesh.data=2", "mesh.fsdp=4"]
    by_data = subprocess.run(cmd + ["mesh.dcn_data=2"], env=env, capture_output=True, text=True, timeout=120)
    assert by_data.returncode == 0, by_data.stdout[-2000:]
    assert _grid(by_data.stdout) == [[0, 0, 0, 0], [1, 1, 1, 1]]
    by_fsdp = subprocess.run(cmd + ["mesh.dcn_fsdp=2"], env=env, capture_output=True, text=True, timeout=120)
    assert by_fsdp.returncode == 0, by_fsdp.stdout[-2000:]
    assert _grid(by_fsdp.stdout) == [[0, 0, 1, 1], [0, 0, 1, 1]]
    bad = subprocess.run(cmd + ["mesh.dcn_data=2", "mesh.dcn_fsdp=2"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2
    assert "mesh.dcn_data*dcn_fsdp*dcn_tensor = 2*2*1 = 4 but the job has 2 processes" in bad.stdout
    assert re.search(r"launch: process [01] failed first \(exit code 2\)", bad.stdout)


# -- failures: no silent hang ---------------------------------------------------------------------------------------

def _start(i: int, n: int, port: int, run_dir, *extra) -> subprocess.Popen:
    from jaxllm.parallel.local_launch import process_env

    env = process_env(i, n, port, 8 // n)
    env["PYTHONPATH"] = str(ROOT)
    args = tiny_overrides(run_dir, "train.steps=100000", "checkpoint.enabled=false", "train.eval_every=0",
                          "distributed.heartbeat_timeout_s=5", *extra)
    return subprocess.Popen([sys.executable, "-m", "jaxllm", "train", TINY, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class _Reader:
    """Collects a process's output in a thread; ``wait_for(pattern)`` blocks until a line matches."""

    def __init__(self, proc):
        self.lines, self.proc = [], proc
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(re.search(pattern, x) for x in self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r}:\n" + "".join(self.lines)[-3000:])

    @property
    def text(self) -> str:
        return "".join(self.lines)


@contextlib.contextmanager
def _job(run_dir, *per_process: tuple[str, ...]):
    """One local process per entry of ``per_process`` (its extra overrides), on a fresh port; yields
    ``(procs, readers)`` and kills whatever still runs at the end."""
    from jaxllm.parallel.local_launch import free_port

    port = free_port()
    procs = [_start(i, len(per_process), port, run_dir, *extra) for i, extra in enumerate(per_process)]
    try:
        yield procs, [_Reader(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def _wait_exit(proc, timeout: float) -> float:
    t0 = time.monotonic()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"still running {timeout}s after the other process failed (a hang)") from None
    return time.monotonic() - t0


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0])
def test_killing_one_process_stops_the_other_within_the_heartbeat_timeout(tmp_path, victim):
    """SIGKILL mid-training (no chance to say goodbye): the survivor exits non-zero within
    distributed.heartbeat_timeout_s plus slack, and its log names the dead process: in one line and without a
    Python traceback when a worker dies; through XLA's own fatal message when the coordinator dies
    (docs/RELIABILITY.md). A dead worker is found by the survivor's failed collective, which comes at its next
    step: on a loaded 2-core host (the whole suite beside it) a step took over 5 s once, and the coordinator's
    5-s heartbeat check aborted the survivor first, so that case runs with 10 s."""
    heartbeat = ("distributed.heartbeat_timeout_s=10",) if victim == 1 else ()
    with _job(tmp_path / "run", heartbeat, heartbeat) as (procs, readers):
        readers[0].wait_for(r"^step +\d+ +loss", 240)
        procs[victim].send_signal(signal.SIGKILL)
        survivor = procs[1 - victim]
        took = _wait_exit(survivor, 45)
        assert survivor.returncode != 0
        text = readers[1 - victim].text
        if victim == 1:  # the failed collective's survivor finds the silent process itself
            assert "jaxllm: process 0 stops: process 1 died" in text, text[-3000:]
            assert "Traceback" not in text and "stack trace" not in text, text[-3000:]
        else:  # the coordinator itself is gone
            assert "leader task was preempted/died" in text or "coordination service" in text, text[-3000:]
        print(f"survivor exited {took:.1f}s after process {victim} was killed")


@pytest.mark.slow
def test_sigterm_to_one_process_saves_the_same_step_everywhere_and_stops(tmp_path):
    """Pre-emption of one host: the processes agree on a step (JAX's preemption service), all save it and exit 0."""
    from jaxllm.train.checkpoint import latest_step

    ckpt = ("checkpoint.enabled=true", "checkpoint.every=1000")
    with _job(tmp_path / "run", ckpt, ckpt) as (procs, readers):
        readers[0].wait_for(r"^step +\d+ +loss", 240)
        procs[1].send_signal(signal.SIGTERM)
        for p in procs:
            _wait_exit(p, 60)
        assert [p.returncode for p in procs] == [0, 0], readers[0].text[-2000:] + readers[1].text[-2000:]
        saved = re.search(r"SIGTERM: saved step (\d+), stopping", readers[0].text)
        assert saved, readers[0].text[-2000:]
        assert latest_step(tmp_path / "run" / "checkpoints") == int(saved.group(1))


def test_an_error_in_one_process_stops_the_others_quoting_it(tmp_path):
    """A user error on process 1 only (its init_from is missing): process 0 stops within seconds and says why."""
    with _job(tmp_path / "run", (), ("init_from=/nonexistent/run",)) as (procs, readers):
        _wait_exit(procs[0], 60)
        _wait_exit(procs[1], 30)
        assert procs[1].returncode == 2
        assert "[process 1] error: init_from = '/nonexistent/run': no such directory" in readers[1].text
        assert procs[0].returncode == 3
        assert "process 0 stops because process 1 failed: error: init_from = '/nonexistent/run'" in readers[0].text


def test_a_process_that_cannot_reach_the_coordinator_says_so(tmp_path):
    from jaxllm.parallel.local_launch import free_port, process_env

    port = free_port()  # nobody listens there
    env = dict(process_env(1, 2, port, 1), PYTHONPATH=str(ROOT))
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "jaxllm", "train", TINY, "distributed.initialization_timeout_s=3",
                          f"run.dir={tmp_path / 'run'}"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert f"process 1: cannot reach the coordinator at 127.0.0.1:{port} after 3s" in out.stderr
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "run").exists()


def test_launcher_reports_the_process_that_failed_first(tmp_path):
    """The local launcher's summary: which process failed first and how the others ended."""
    from jaxllm.parallel.local_launch import run_local

    class Out:
        def __init__(self):
            self.parts = []

        def write(self, s):
            self.parts.append(s)

        def flush(self):
            pass

    out = Out()
    rc = run_local(2, ["train", TINY, "mesh.data=3"], 4, grace_s=60, out=out)
    text = "".join(out.parts)
    assert rc == 2
    assert "[process 0] error: mesh: data*fsdp*tensor = 3*1*1 = 3 but 8 devices are visible" in text
    # the other process hits the same error, unless the coordinator (process 0) is gone first: then JAX's
    # client aborts it (seen under load, with two test workers on two cores)
    assert re.search(r"launch: process [01] failed first \(exit code 2\); then process [01] "
                     r"(exit code 2|killed by SIGABRT)", text)


# -- start-up settings, without processes ---------------------------------------------------------------------------

def _dc(**kw):
    from jaxllm.config.schema import DistributedConfig

    return DistributedConfig(**kw)


def test_plan_reads_config_then_environment_then_cluster():
    from jaxllm.parallel.distributed import Plan, plan

    assert plan(_dc(), {}) is None  # a laptop: one process, no jax.distributed
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "2"}
    assert plan(_dc(), env) == Plan("10.0.0.1:1234", 4, 2, "environment")
    assert plan(_dc(process_id=3), env) == Plan("10.0.0.1:1234", 4, 3, "config")
    assert plan(_dc(initialize="never"), env) is None
    assert plan(_dc(), {"JAX_NUM_PROCESSES": "1"}) is None
    slurm = {"SLURM_JOB_ID": "7", "SLURM_PROCID": "1", "SLURM_NTASKS": "8", "SLURM_STEP_NODELIST": "gpu[01-08]"}
    assert plan(_dc(), slurm) == Plan(None, None, None, "SLURM (JAX's cluster detection)")
    assert plan(_dc(), dict(slurm, SLURM_NTASKS="1")) is None  # a one-task SLURM job is a single process
    assert plan(_dc(), {"OMPI_COMM_WORLD_SIZE": "2"}).source == "Open MPI (JAX's cluster detection)"
    assert plan(_dc(), {"TPU_WORKER_HOSTNAMES": "t-0,t-1,t-2,t-3"}).source == "GKE TPU (JAX's cluster detection)"
    assert plan(_dc(), {"TPU_WORKER_HOSTNAMES": "t-0"}) is None
    assert plan(_dc(initialize="always"), {}) == Plan(None, None, None, "JAX's cluster detection")


def test_plan_errors_name_the_missing_setting():
    from jaxllm.errors import ConfigError
    from jaxllm.parallel.distributed import plan

    with pytest.raises(ConfigError, match="no process id: set JAX_PROCESS_ID"):
        plan(_dc(), {"JAX_NUM_PROCESSES": "2", "JAX_COORDINATOR_ADDRESS": "h:1"})
    with pytest.raises(ConfigError, match="no coordinator: set JAX_COORDINATOR_ADDRESS=host:port"):
        plan(_dc(), {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"})
    with pytest.raises(ConfigError, match="process id 5 is out of range for 2 processes"):
        plan(_dc(), {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "5", "JAX_COORDINATOR_ADDRESS": "h:1"})
    with pytest.raises(ConfigError, match=r"JAX_NUM_PROCESSES='two' is not an integer"):
        plan(_dc(), {"JAX_NUM_PROCESSES": "two"})


def test_config_checks_distributed_and_dcn_keys(tmp_path):
    from jaxllm.errors import ConfigError

    with pytest.raises(ConfigError, match="distributed.coordinator_address = 'nohost': expected host:port"):
        tiny_config(tmp_path, "distributed.coordinator_address=nohost")
    with pytest.raises(ConfigError, match="distributed.process_id = 2 is out of range for distributed.num_processes = 2"):
        tiny_config(tmp_path, "distributed.num_processes=2", "distributed.process_id=2")
    with pytest.raises(ConfigError, match="mesh.dcn_fsdp = 2 does not divide mesh.fsdp = 1"):
        tiny_config(tmp_path, "mesh.dcn_fsdp=2")


def test_dcn_sizes_must_match_the_process_count_in_one_process():
    from jaxllm.config.schema import MeshConfig
    from jaxllm.errors import ConfigError
    from jaxllm.parallel.mesh import make_mesh

    with pytest.raises(ConfigError, match=r"= 2 but the job has 1 processes"):
        make_mesh(MeshConfig(dcn_data=2))
    mesh = make_mesh(MeshConfig(dcn_data=1, data=2, fsdp=4))
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1}


def test_to_host_matches_device_get_for_local_arrays():
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec as P

    from jaxllm.config.schema import MeshConfig
    from jaxllm.parallel.mesh import make_mesh
    from jaxllm.parallel.sharding import to_host

    mesh = make_mesh(MeshConfig())
    x = jax.device_put(jnp.arange(32.0).reshape(8, 4), NamedSharding(mesh, P("data")))
    out = to_host({"x": x, "n": 3})
    np.testing.assert_array_equal(out["x"], np.arange(32.0).reshape(8, 4))
    assert out["n"] == 3
