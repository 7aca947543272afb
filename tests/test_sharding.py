"""The same step on different meshes: loss, gradients and one update agree; shardings follow the rules.

Meshes (data, fsdp, tensor): (1,1,1) on one device, and (8,1,1), (2,2,2), (1,2,4)
on 8 fake CPU devices. Parameters are created once and placed on each mesh, so
any difference comes from the partitioning alone.
"""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxllm.config.schema import MeshConfig
from jaxllm.model import Transformer, resolve_spec
from jaxllm.objectives.pretrain import make_lm_loss
from jaxllm.parallel.mesh import make_mesh
from jaxllm.parallel.sharding import global_batch
from jaxllm.train.optimizer import make_optimizer
from jaxllm.train.state import sharded_init
from jaxllm.parallel.layout import mesh_context
from jaxllm.train.step import jit_train_step, make_train_step

MESHES = [pytest.param((8, 1, 1), marks=pytest.mark.slow), (2, 2, 2), pytest.param((1, 2, 4), marks=pytest.mark.slow)]


def _setup(cfg, shape, devices):
    mesh = make_mesh(MeshConfig(*shape, rules=cfg.mesh.rules), devices)
    spec = resolve_spec(cfg.model, backend="cpu")
    model = Transformer(spec)
    tx, schedule = make_optimizer(cfg.optimizer, cfg.train.steps)
    return mesh, spec, model, tx, schedule


def _batch(spec, b=8, length=16, seed=0):
    rng = np.random.default_rng(seed)
    toks = rng.integers(0, spec.vocab_size, (b, length + 1)).astype(np.int32)
    seg = np.repeat(np.array([[1] * 10 + [2] * (length - 10)]), b, 0).astype(np.int32)
    pos = np.concatenate([np.arange(10), np.arange(length - 10)])[None].repeat(b, 0).astype(np.int32)
    mask = np.ones((b, length), np.float32)
    mask[:, 9] = 0  # the target that crosses into the second document
    return {"inputs": toks[:, :-1], "targets": toks[:, 1:], "segment_ids": seg, "positions": pos, "loss_mask": mask}


def _run(cfg, shape, devices, params_np, batch_np):
    """Loss, gradients and the parameters after one update, on one mesh, as numpy."""
    mesh, spec, model, tx, schedule = _setup(cfg, shape, devices)
    loss_fn = make_lm_loss(model)
    with mesh_context(mesh, cfg.mesh.rules):
        init, shardings, abstract = sharded_init(model, tx, 16, mesh, cfg.mesh.rules)
        state = init(jax.random.PRNGKey(0))
        params = jax.tree.map(lambda a, s: jax.device_put(a, s), params_np, shardings.params)
        state = state.replace(params=params, opt_state=tx.init(params))
        state = jax.device_put(state, shardings)
        batch = global_batch(batch_np, mesh, cfg.mesh.rules)

        def grads_fn(p, b):
            s, n, _ = loss_fn(p, b)
            return s / n, jax.grad(lambda q: loss_fn(q, b)[0] / n)(p)

        loss, grads = jax.jit(grads_fn, out_shardings=(None, shardings.params))(state.params, batch)
        step = jit_train_step(make_train_step(loss_fn, tx, schedule), mesh, cfg.mesh.rules, shardings, batch_np)
        new_state, metrics = step(state, batch)
        actual_specs = jax.tree.map(lambda a: a.sharding.spec, new_state.params)
        return (float(loss), jax.tree.map(np.asarray, grads), jax.tree.map(np.asarray, new_state.params),
                float(metrics["loss"]), actual_specs, shardings)


@pytest.fixture(scope="module", params=["tiny", "tiny-llama"])
def baseline(request, tmp_path_factory):
    from conftest import tiny_config
    cfg = tiny_config(tmp_path_factory.mktemp("run"), "model.vocab_size=256", model=request.param)
    mesh, spec, model, tx, _ = _setup(cfg, (1, 1, 1), jax.devices()[:1])
    with mesh_context(mesh, cfg.mesh.rules):
        init, _, _ = sharded_init(model, tx, 16, mesh, cfg.mesh.rules)
        params = jax.tree.map(np.asarray, init(jax.random.PRNGKey(0)).params)
    batch = _batch(spec)
    return cfg, params, batch, _run(cfg, (1, 1, 1), jax.devices()[:1], params, batch)


@pytest.mark.parametrize("shape", MESHES, ids=lambda s: "x".join(map(str, s)))
def test_loss_grads_update_match_single_device(baseline, shape):
    cfg, params, batch, (loss1, grads1, new1, mloss1, _, _) = baseline
    assert len(jax.devices()) == 8
    loss, grads, new, mloss, _, _ = _run(cfg, shape, jax.devices(), params, batch)
    assert loss == pytest.approx(loss1, rel=1e-5)
    assert mloss == pytest.approx(loss1, rel=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, grads1)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), new, new1)


def test_parameter_shardings_follow_rules(tmp_path):
    """On (2,2,2): weights' embed over fsdp, heads/mlp/vocab over tensor, scanned layers and norms unsharded."""
    from conftest import tiny_config
    cfg = tiny_config(tmp_path, "model.vocab_size=256", model="tiny-llama")
    mesh, spec, model, tx, _ = _setup(cfg, (2, 2, 2), jax.devices())
    with mesh_context(mesh, cfg.mesh.rules):
        init, shardings, _ = sharded_init(model, tx, 16, mesh, cfg.mesh.rules)
        state = init(jax.random.PRNGKey(0))
    specs = jax.tree.map(lambda a: a.sharding.spec, state.params)
    blocks = specs["blocks"]
    assert specs["embed"] == P("tensor", "fsdp")
    assert specs["lm_head"]["kernel"] == P("fsdp", "tensor")
    assert blocks["attn"]["q"]["kernel"] == P(None, "fsdp", "tensor")
    assert blocks["attn"]["k"]["kernel"] == P(None, "fsdp", "tensor")
    assert blocks["attn"]["o"]["kernel"] == P(None, "tensor", "fsdp")
    assert blocks["mlp"]["gate"]["kernel"] == P(None, "fsdp", "tensor")
    assert blocks["mlp"]["proj"]["kernel"] == P(None, "tensor", "fsdp")
    assert tuple(blocks["attn_norm"]["scale"]) in ((), (None, None))
    # the optimizer's moments are sharded exactly like their parameters
    mu = state.opt_state[1][0].mu
    assert mu["blocks"]["mlp"]["up"]["kernel"].sharding.spec == P(None, "fsdp", "tensor")
    # and each device holds only its shard
    q = state.params["blocks"]["attn"]["q"]["kernel"]
    assert q.addressable_shards[0].data.shape == (q.shape[0], q.shape[1] // 2, q.shape[2] // 2)
