"""End to end: overfitting, bitwise resume, run outputs, init_from, SIGTERM, and the main job."""

import json
import os
import signal
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from conftest import ROOT, tiny_overrides
from jaxllm.config import load_config
from jaxllm.config.schema import ModelConfig, OptimizerConfig
from jaxllm.errors import UserError
from jaxllm.model import Transformer, resolve_spec
from jaxllm.objectives.pretrain import make_lm_loss
from jaxllm.train.checkpoint import as_numpy, load_params
from jaxllm.train.loop import train
from jaxllm.train.optimizer import make_optimizer
from jaxllm.train.state import TrainState
from jaxllm.train.step import make_train_step


def test_tiny_model_overfits_a_small_batch():
    spec = resolve_spec(ModelConfig(family="gpt2", vocab_size=64, n_layers=2, d_model=64, n_heads=4, max_seq_len=32),
                        backend="cpu")
    model = Transformer(spec)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]
    params = nn.meta.unbox(params)
    toks = np.random.default_rng(0).integers(0, 64, (4, 17)).astype(np.int32)
    batch = {"inputs": toks[:, :-1], "targets": toks[:, 1:], "loss_mask": np.ones((4, 16), np.float32),
             "positions": np.broadcast_to(np.arange(16), (4, 16)).astype(np.int32), "segment_ids": np.ones((4, 16), np.int32)}
    tx, schedule = make_optimizer(OptimizerConfig(lr=3e-3, warmup_steps=10, weight_decay=0.0), 300)
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), jax.random.PRNGKey(0))
    step = jax.jit(make_train_step(make_lm_loss(model), tx, schedule))
    first = None
    for _ in range(300):
        state, m = step(state, batch)
        first = first if first is not None else float(m["loss"])
    assert first > 4.0  # ~log(64) at the start
    assert float(m["loss"]) < 0.05


def _mesh_overrides(run_dir, *extra):
    return tiny_overrides(run_dir, "mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2", "train.steps=6",
                          "checkpoint.every=3", "checkpoint.async_save=true", *extra)


@pytest.mark.slow
def test_stop_and_resume_is_bitwise_identical(tmp_path):
    """A run pre-empted at step 3 and resumed ends at step 6 with exactly the uninterrupted parameters."""
    tiny = ROOT / "configs/model/tiny.yaml"
    full = train(load_config(tiny, _mesh_overrides(tmp_path / "full")))
    part = train(load_config(tiny, _mesh_overrides(tmp_path / "split", "train.stop_at_step=3")))
    assert int(part.state.step) == 3
    resumed = train(load_config(tiny, _mesh_overrides(tmp_path / "split")))
    assert int(resumed.state.step) == 6
    for a, b in zip(jax.tree.leaves(as_numpy(full.state.params)), jax.tree.leaves(as_numpy(resumed.state.params))):
        assert np.array_equal(a, b)
    for a, b in zip(jax.tree.leaves(as_numpy(full.state.opt_state)), jax.tree.leaves(as_numpy(resumed.state.opt_state))):
        assert np.array_equal(a, b)
    # the per-step losses after the restart match too
    losses = {h["step"]: h["loss"] for h in full.history}
    assert [h["loss"] for h in resumed.history] == [losses[s] for s in (4, 5, 6)]

    # run outputs
    run = tmp_path / "full"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["steps"] == 6 and saved["mesh"]["tensor"] == 2
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "tokens_per_s", "tokens_per_s_per_device", "mfu", "grad_norm", "lr", "step_time"):
        assert all(isinstance(r[key], float) for r in train_rows), key
    assert any("eval_loss" in r and "eval_ppl" in r for r in rows)
    assert sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == [3, 6]
    assert (run / "tokenizer.model").is_file()

    # init_from takes parameters only: with lr 0 they stay exactly the source's
    init_run = train(load_config(tiny, _mesh_overrides(tmp_path / "init", f"init_from={run}", "train.steps=2",
                                                       "optimizer.lr=0", "optimizer.warmup_steps=0",
                                                       f"data.tokenizer.path={run / 'tokenizer.model'}")))
    for a, b in zip(jax.tree.leaves(as_numpy(full.state.params)), jax.tree.leaves(as_numpy(init_run.state.params))):
        assert np.array_equal(a, b)

    # a model that does not match the checkpoint gets a message naming the parameter
    with pytest.raises(UserError, match=r"parameter .* has shape .* in the checkpoint but the model expects"):
        train(load_config(tiny, _mesh_overrides(tmp_path / "bad", f"init_from={run}", "model.d_model=32",
                                                f"data.tokenizer.path={run / 'tokenizer.model'}")))


def test_tensorboard_events_written(tmp_path):
    res = train(load_config(ROOT / "configs/model/tiny.yaml",
                            tiny_overrides(tmp_path / "tb", "train.steps=2", "log.tensorboard=true", "checkpoint.enabled=false",
                                           "mesh.data=1", "mesh.tensor=-1")))
    events = list((res.run_dir / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100


def _cli(args, env_devices=1, **kw):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={env_devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.Popen([sys.executable, "-m", "jaxllm.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.slow
def test_sigterm_saves_and_resume_matches_uninterrupted(tmp_path):
    args = ["train", "configs/model/tiny.yaml", *tiny_overrides(tmp_path / "x", "train.steps=60", "checkpoint.every=1000",
                                                               "checkpoint.async_save=false")]
    full_args = [a.replace(str(tmp_path / "x"), str(tmp_path / "full")) for a in args]
    assert _cli(full_args, 2).wait(timeout=600) == 0

    proc = _cli(args, 2)
    metrics = tmp_path / "x" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 5):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "SIGTERM: saved step" in out
    stopped = int(out.split("SIGTERM: saved step ")[1].split(",")[0])
    assert 5 <= stopped < 60

    proc = _cli(args, 2)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert f"resumed from {tmp_path / 'x' / 'checkpoints'} at step {stopped}" in out

    cfg = load_config(ROOT / "configs/model/tiny.yaml", tiny_overrides(tmp_path / "x"))
    from jaxllm.data.tokenizer import Tokenizer
    spec = resolve_spec(cfg.model, Tokenizer.load(tmp_path / "x" / "tokenizer.model").vocab_size, backend="cpu")
    abstract = jax.eval_shape(lambda: Transformer(spec).init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"])
    abstract = nn.meta.unbox(abstract)
    a = load_params(str(tmp_path / "x"), abstract)
    b = load_params(str(tmp_path / "full"), abstract)
    for x, y in zip(jax.tree.leaves(as_numpy(a)), jax.tree.leaves(as_numpy(b))):
        assert np.array_equal(x, y)
