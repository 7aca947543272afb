"""Faults in the train state: kill -9, NaN/Inf steps, damaged checkpoints, a changed config on
resume, metric rows after a resume (docs/RELIABILITY.md says what each test promises)."""

import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
import yaml

from conftest import ROOT, tiny_config, tiny_overrides
from jaxllm.errors import UserError
from jaxllm.train.guard import NonFiniteStop
from jaxllm.train.loop import train
from jaxllm.train.state import TrainState
from jaxllm.train.step import make_train_step

TINY = str(ROOT / "configs" / "model" / "tiny.yaml")


def _arrays(run_dir, step) -> dict:
    """Every array of checkpoint ``step`` (parameters, optimizer state, step, RNG) as NumPy, by path."""
    out = {}
    for item in ("params", "train"):
        tree = ocp.StandardCheckpointer().restore((run_dir / "checkpoints" / str(step) / item).absolute())
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            out[f"{item}/{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
    return out


def _assert_same_arrays(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def _cli(args, devices=2, extra_path=()):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([*map(str, extra_path), str(ROOT)]))
    return subprocess.Popen([sys.executable, "-m", "jaxllm", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _logged_steps(run_dir) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
    return [r["step"] for r in rows if "loss" in r]


def _kill9_then_resume(tmp_path, args, kill_after: int, extra_path=()):
    """Train ``args`` whole (run dir "full"), and again killed with SIGKILL once ``kill_after`` steps are
    logged and a checkpoint exists, then resumed ("split"); returns both run dirs and the resume's output."""
    full, split = tmp_path / "full", tmp_path / "split"
    p = _cli(["train", TINY, *args, f"run.dir={full}"], extra_path=extra_path)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    p = _cli(["train", TINY, *args, f"run.dir={split}"], extra_path=extra_path)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        steps = _logged_steps(split)
        ckpts = [d for d in (split / "checkpoints").glob("*") if d.name.isdigit()] if (split / "checkpoints").is_dir() else []
        if steps and steps[-1] >= kill_after and ckpts:
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL, "the run ended before it was killed; give it more steps"
    killed_at = _logged_steps(split)[-1]
    p = _cli(["train", TINY, *args, f"run.dir={split}"], extra_path=extra_path)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
    print(f"killed at step {killed_at}; {out.splitlines()[0] if out else ''}")
    return full, split, out, killed_at


def _tb_steps(tb_dir, tag="loss") -> list[int]:
    """Steps of ``tag`` as TensorBoard's reader shows them: events are read file by file, and a
    ``SessionLog.START`` at step s (what ``purge_step`` writes) drops earlier events at steps >= s."""
    from tensorboardX.proto import event_pb2

    kept = []
    for f in sorted(tb_dir.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime_ns):
        data, i = f.read_bytes(), 0
        while i + 12 <= len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            ev = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            if ev.HasField("session_log") and ev.session_log.status == event_pb2.SessionLog.START:
                kept = [s for s in kept if s < ev.step]
            for v in ev.summary.value:
                if v.tag == tag:
                    kept.append(ev.step)
    return kept


@pytest.mark.slow
def test_kill9_pretrain_resumes_bit_for_bit_and_logs_each_step_once(tmp_path):
    kill_after = random.Random().randint(30, 120)
    args = tiny_overrides(tmp_path / "unused", "train.steps=200", "checkpoint.every=20", "checkpoint.keep=2",
                          "train.log_every=1", "log.tensorboard=true")[1:]
    full, split, out, killed_at = _kill9_then_resume(tmp_path, args, kill_after)
    resumed = int(out.split("resumed from ")[1].split(" at step ")[1].split()[0])
    assert resumed % 20 == 0 and resumed <= killed_at
    _assert_same_arrays(_arrays(full, 200), _arrays(split, 200))
    # each step once, in metrics.jsonl and as TensorBoard reads it
    assert _logged_steps(split) == list(range(1, 201))
    assert sorted(_tb_steps(split / "tb")) == list(range(1, 201))
    assert not list(split.glob("config.*.yaml"))  # same config: no history entry


@pytest.mark.slow
def test_kill9_ppo_resumes_bit_for_bit(tmp_path):
    """An on-policy objective: rollouts, the KL controller and the prompt position restore exactly."""
    args = tiny_overrides(tmp_path / "unused", "objective.name=ppo", "train.seq_len=40",
                          "objective.ppo.reward_fn=test_ppo:vowel_reward", "objective.ppo.rollout_prompts=8",
                          "objective.ppo.max_new_tokens=8", "objective.ppo.eval_prompts=0", "objective.ppo.kl_target=0.5",
                          "train.steps=40", "checkpoint.every=4", "train.log_every=1")[1:]
    full, split, _, _ = _kill9_then_resume(tmp_path, args, random.Random().randint(6, 24), extra_path=[ROOT / "tests"])
    _assert_same_arrays(_arrays(full, 40), _arrays(split, 40))
    assert _logged_steps(split) == list(range(1, 41))


# -- non-finite steps -------------------------------------------------------------------------------------------

def test_a_nonfinite_step_leaves_params_and_optimizer_state_unchanged():
    """The step's guard against an independent reference: a NaN batch changes nothing, bit for bit."""
    params = {"w": jnp.arange(4.0)}

    def loss(p, batch, frozen, rng):
        return jnp.sum((p["w"] - batch["x"]) ** 2), jnp.float32(1.0), {}

    tx = optax.adam(0.1)
    step = jax.jit(make_train_step(loss, tx, lambda s: 0.1))
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), jax.random.PRNGKey(0))
    good = {"x": jnp.ones(4)}
    s1, m1 = step(state, good)
    assert float(m1["nonfinite"]) == 0 and not np.array_equal(s1.params["w"], params["w"])
    s2, m2 = step(s1, {"x": jnp.array([1.0, np.nan, 1.0, 1.0])})
    assert float(m2["nonfinite"]) == 1 and int(s2.step) == 2
    for a, b in zip(jax.tree.leaves((s1.params, s1.opt_state)), jax.tree.leaves((s2.params, s2.opt_state))):
        assert np.array_equal(a, b)
    s3, m3 = step(s2, good)  # the next finite batch trains as if the bad one never came
    ref, _ = step(s1, good)
    assert float(m3["nonfinite"]) == 0
    np.testing.assert_array_equal(s3.params["w"], ref.params["w"])


def _all_finite(run_dir) -> dict[int, bool]:
    out = {}
    for d in (run_dir / "checkpoints").iterdir():
        if d.name.isdigit():
            out[int(d.name)] = all(np.all(np.isfinite(a)) for a in _arrays(run_dir, int(d.name)).values()
                                   if np.issubdtype(a.dtype, np.floating))
    return out


@pytest.mark.slow  # trains to a NaN, then restores and checks every checkpoint
def test_nonfinite_stop_names_the_step_and_keeps_every_checkpoint_finite(tmp_path):
    """lr=1e6 diverges within a few steps; first a good run, then the same run dir resumed at that lr
    (the resume that used to rotate the last good checkpoint away for NaN ones)."""
    run = tmp_path / "run"
    train(tiny_config(run, "train.steps=40", "train.stop_at_step=6", "checkpoint.every=2", "checkpoint.keep=2"))
    with pytest.raises(NonFiniteStop) as e:
        train(tiny_config(run, "train.steps=40", "checkpoint.every=2", "checkpoint.keep=2", "optimizer.lr=1e6",
                          "checkpoint.allow_config_change=true"))
    msg = str(e.value)
    bad_step = int(msg.split("step ")[1].split()[0])
    assert bad_step > 6 and "non-finite" in msg and "train.nonfinite=skip" in msg
    last_good = int(msg.split("Last good checkpoint: ")[1].split("/checkpoints/")[1].split(".")[0])
    finite = _all_finite(run)
    assert max(finite) == last_good and all(finite.values()), finite
    assert last_good < bad_step
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] is False and summary["step"] == last_good and "non-finite" in summary["stopped"]


def test_nonfinite_skip_counts_and_stops_after_max_skipped_in_a_row(tmp_path, capsys):
    run = tmp_path / "run"
    with pytest.raises(NonFiniteStop, match=r"3 non-finite steps in a row \(train.max_skipped = 3\)"):
        train(tiny_config(run, "train.steps=40", "checkpoint.every=2", "optimizer.lr=1e6", "train.nonfinite=skip",
                          "train.max_skipped=3"))
    out = capsys.readouterr().out
    assert "skipped: non-finite loss or gradient norm (1 skipped so far)" in out
    assert all(_all_finite(run).values())
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("skipped_steps", 0) >= 1 for r in rows)


# -- damaged checkpoints ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def six_steps(tmp_path_factory):
    """A run stopped at step 6 with checkpoints at 2, 4 and 6 (and their SHA256SUMS)."""
    run = tmp_path_factory.mktemp("faults") / "base"
    train(tiny_config(run, "train.steps=10", "train.stop_at_step=6", "checkpoint.every=2"))
    return run


def _largest(d):
    return max((p for p in d.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _flip(path):
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 0xFF
    path.write_bytes(bytes(b))


DAMAGE = {
    "missing array file": lambda s: _largest(s / "params").unlink(),
    "truncated array file": lambda s: os.truncate(_largest(s / "params"), 10),
    "flipped byte": lambda s: _flip(_largest(s / "params")),
    "deleted params/": lambda s: shutil.rmtree(s / "params"),
    "truncated metadata": lambda s: os.truncate(s / "_CHECKPOINT_METADATA", 5),
    "empty step dir": lambda s: (shutil.rmtree(s), s.mkdir()),
    "partial step dir": lambda s: (shutil.rmtree(s / "train"), shutil.rmtree(s / "data"), (s / "commit_success.txt").unlink()),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_newest_checkpoint_is_moved_aside_and_the_one_before_restored(six_steps, tmp_path, case, capsys):
    run = tmp_path / "run"
    shutil.copytree(six_steps, run)
    DAMAGE[case](run / "checkpoints" / "6")
    res = train(tiny_config(run, "train.steps=10", "train.stop_at_step=8", "checkpoint.every=2"))
    out = capsys.readouterr().out
    assert "warning: checkpoint step 6 does not restore (" in out and "restored step 4 instead of step 6" in out
    assert f"resumed from {run / 'checkpoints'} at step 4" in out
    assert int(res.state.step) == 8
    aside = [d.name for d in (run / "checkpoints").iterdir() if ".bad-" in d.name]
    assert len(aside) == 1 and aside[0].startswith("6.bad-")  # kept, never deleted


def test_without_checksums_orbax_errors_still_fall_back_in_one_line(six_steps, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(six_steps, run)
    (run / "checkpoints" / "6" / "SHA256SUMS").unlink()
    shutil.rmtree(run / "checkpoints" / "6" / "train")
    train(tiny_config(run, "train.steps=10", "train.stop_at_step=8", "checkpoint.every=2"))
    captured = capsys.readouterr()
    assert "checkpoint step 6 does not restore (train/ missing)" in captured.out
    assert "Traceback" not in captured.out + captured.err


def test_when_no_checkpoint_restores_the_cli_lists_what_was_tried_and_exits_2(six_steps, tmp_path, capsys):
    from jaxllm.cli import main

    run = tmp_path / "run"
    shutil.copytree(six_steps, run)
    for step in (2, 4, 6):
        os.truncate(_largest(run / "checkpoints" / str(step) / "params"), 3)
    code = main(["train", TINY, *tiny_overrides(run, "train.steps=10", "checkpoint.every=2")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: no checkpoint in {run / 'checkpoints'} restores; tried 6 (")
    assert "; 4 (" in err and "; 2 (" in err
    assert sorted(d.name.split(".")[0] for d in (run / "checkpoints").iterdir()) == ["2", "4", "6"]


def test_a_checkpoint_of_another_model_is_refused_not_moved_aside(six_steps, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(six_steps, run)
    with pytest.raises(UserError, match="parameter .* shape"):
        train(tiny_config(run, "train.steps=10", "checkpoint.every=2", "model.d_model=32", "model.n_heads=2",
                          "checkpoint.allow_config_change=true"))
    assert not [d for d in (run / "checkpoints").iterdir() if ".bad-" in d.name]


# -- resuming with a changed config -----------------------------------------------------------------------------

def test_a_changed_config_is_refused_unless_allowed_and_its_history_kept(six_steps, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(six_steps, run)
    before = (run / "config.yaml").read_text()
    for change, key in (("optimizer.lr=1e-3", "optimizer.lr"), ("seed=1", "seed"), ("train.batch_size=16", "train.batch_size")):
        with pytest.raises(UserError, match=rf"{key} .* -> .*change the training itself"):
            train(tiny_config(run, "train.steps=10", "checkpoint.every=2", change))
        assert (run / "config.yaml").read_text() == before  # untouched by a refused start
    # output-only keys may change: printed, no error
    train(tiny_config(run, "train.steps=10", "train.stop_at_step=8", "checkpoint.every=2", "train.log_every=2"))
    out = capsys.readouterr().out
    assert "resuming at step 6 with a changed config: " in out  # run.dir too: the run was copied
    assert "train.log_every 1 -> 2, train.stop_at_step 6 -> 8; the old config is kept as config.6.yaml" in out
    assert yaml.safe_load((run / "config.6.yaml").read_text())["train"]["log_every"] == 1
    # allowed: goes on, and the config that trained steps 7-8 is kept beside the new one
    train(tiny_config(run, "train.steps=10", "checkpoint.every=2", "optimizer.lr=1e-3",
                      "checkpoint.allow_config_change=true"))
    assert yaml.safe_load((run / "config.8.yaml").read_text())["optimizer"]["lr"] == 3e-4
    assert yaml.safe_load((run / "config.yaml").read_text())["optimizer"]["lr"] == 1e-3


def test_cli_flag_allows_the_change(six_steps, tmp_path):
    from jaxllm.cli import main

    run = tmp_path / "run"
    shutil.copytree(six_steps, run)
    args = ["train", TINY, *tiny_overrides(run, "train.steps=10", "train.stop_at_step=7", "checkpoint.every=2", "seed=3")]
    assert main(args) == 2
    assert main([*args, "--allow-config-change"]) == 0
    assert (run / "config.6.yaml").is_file()


def test_metrics_rows_after_the_restored_step_are_dropped_on_resume(six_steps, tmp_path):
    """A run killed after step 6 had logged 7 and 8 with the last checkpoint at 6: they appear once."""
    run = tmp_path / "run"
    shutil.copytree(six_steps, run)
    with (run / "metrics.jsonl").open("a") as f:  # what the killed run had written after its checkpoint
        f.write(json.dumps({"step": 7, "loss": 1.0}) + "\n" + '{"step": 8, "lo')
    train(tiny_config(run, "train.steps=10", "checkpoint.every=2"))
    assert _logged_steps(run) == list(range(1, 11))
