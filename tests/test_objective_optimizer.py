"""Pre-training loss vs NumPy cross-entropy; exact gradient accumulation; schedule and weight-decay mask."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import reference
from jaxllm.config.schema import ModelConfig, OptimizerConfig
from jaxllm.model import Transformer, resolve_spec
from jaxllm.objectives.lm_head import token_nll
from jaxllm.objectives.pretrain import make_lm_loss
from jaxllm.train.optimizer import decay_mask, lr_schedule, make_optimizer
from jaxllm.train.state import TrainState
from jaxllm.train.step import make_train_step

CFG = ModelConfig(family="llama", vocab_size=29, n_layers=2, d_model=16, n_heads=2, d_ff=24, max_seq_len=16, init_std=0.3)


def _params(cfg=CFG):
    spec = resolve_spec(cfg, backend="cpu")
    model = Transformer(spec)
    params = model.init(jax.random.PRNGKey(1), jnp.zeros((1, 4), jnp.int32))["params"]
    return spec, model, nn.meta.unbox(params)


def _batch(spec, b=8, length=10, seed=0):
    rng = np.random.default_rng(seed)
    toks = rng.integers(0, spec.vocab_size, (b, length + 1)).astype(np.int32)
    mask = (rng.random((b, length)) > 0.3).astype(np.float32)
    return {"inputs": toks[:, :-1], "targets": toks[:, 1:], "loss_mask": mask,
            "positions": np.broadcast_to(np.arange(length), (b, length)).astype(np.int32),
            "segment_ids": np.ones((b, length), np.int32)}


def test_token_nll_is_cross_entropy():
    logits = np.random.default_rng(0).normal(size=(2, 3, 7)).astype(np.float32)
    targets = np.array([[0, 6, 3], [1, 1, 2]])
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(token_nll(jnp.asarray(logits), jnp.asarray(targets)), want, rtol=1e-5)


def test_lm_loss_is_masked_mean_nll_of_reference_logits():
    spec, model, params = _params()
    batch = _batch(spec)
    loss_sum, n, metrics = jax.jit(make_lm_loss(model))(params, batch)
    logits = reference.forward(params, spec, batch["inputs"])
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, batch["targets"][..., None], -1)[..., 0]
    assert float(n) == batch["loss_mask"].sum()
    assert float(loss_sum) / float(n) == pytest.approx((nll * batch["loss_mask"]).sum() / batch["loss_mask"].sum(), rel=1e-4)
    acc = ((logits.argmax(-1) == batch["targets"]) * batch["loss_mask"]).sum()
    assert float(metrics["accuracy"][0]) == acc


@pytest.mark.parametrize("cfg", [
    CFG,  # llama: untied head
    ModelConfig(family="gpt2", vocab_size=29, n_layers=2, d_model=16, n_heads=2, max_seq_len=16, init_std=0.3),  # tied
    ModelConfig(family="gpt2", vocab_size=29, n_layers=1, d_model=16, n_heads=2, max_seq_len=16, init_std=0.3,
                tie_embeddings=False),  # untied head with a bias
], ids=["llama", "gpt2-tied", "gpt2-untied-bias"])
def test_chunked_cross_entropy_equals_the_whole_logits_loss_and_gradient(cfg):
    """Head + cross-entropy 4 positions at a time: the NumPy-checked whole-sequence loss, metrics and gradients."""
    spec, model, params = _params(cfg)
    batch = _batch(spec, length=12)
    def split(fn):
        def f(p):
            loss_sum, n, metrics = fn(p, batch)
            return loss_sum, (n, metrics)
        return jax.jit(jax.value_and_grad(f, has_aux=True))

    whole, chunked = split(make_lm_loss(model)), split(make_lm_loss(model, chunk=4))
    (l1, (n1, m1)), g1 = whole(params)
    (l4, (n4, m4)), g4 = chunked(params)
    assert float(l4) == pytest.approx(float(l1), rel=1e-6) and float(n4) == float(n1)
    assert float(m4["accuracy"][0]) == float(m1["accuracy"][0])
    logits = reference.forward(params, spec, batch["inputs"])
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, batch["targets"][..., None], -1)[..., 0]
    assert float(l4) == pytest.approx(float((nll * batch["loss_mask"]).sum()), rel=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=5e-6), g4, g1)  # float32 sum order


def test_chunked_cross_entropy_never_holds_the_whole_logits():
    """XLA's memory analysis: temporaries of the loss gradient with 16-position chunks are a fraction of the
    whole-logits version (float32 logits [4, 512, 8192] = 64 MiB, and as much again for their gradient)."""
    cfg = ModelConfig(family="llama", vocab_size=8192, n_layers=1, d_model=32, n_heads=2, max_seq_len=512)
    spec, model, params = _params(cfg)
    batch = _batch(spec, b=4, length=512)

    def temps(chunk):
        fn = jax.jit(jax.grad(lambda p: make_lm_loss(model, chunk)(p, batch)[0]))
        return fn.lower(params).compile().memory_analysis().temp_size_in_bytes

    whole, chunked = temps(0), temps(16)
    assert whole > 64 * 2 ** 20
    assert chunked < whole / 4, (chunked / 2 ** 20, whole / 2 ** 20)


def test_gradient_accumulation_is_exact():
    """4 micro-batches with different token counts give the same update as one full batch."""
    spec, model, params = _params()
    batch = _batch(spec, b=8)
    tx, schedule = make_optimizer(OptimizerConfig(lr=1e-2, warmup_steps=0), 10)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=jax.random.PRNGKey(0))
    loss_fn = make_lm_loss(model)
    s1, m1 = jax.jit(make_train_step(loss_fn, tx, schedule, 1))(state, batch)
    s4, m4 = jax.jit(make_train_step(loss_fn, tx, schedule, 4))(state, batch)
    assert float(m4["loss"]) == pytest.approx(float(m1["loss"]), rel=1e-5)
    assert float(m4["grad_norm"]) == pytest.approx(float(m1["grad_norm"]), rel=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), s4.params, s1.params)


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
def test_lr_schedule_formula(kind):
    cfg = OptimizerConfig(lr=1.0, warmup_steps=10, schedule=kind, min_lr_ratio=0.1)
    sched = lr_schedule(cfg, 110)
    for step in [0, 5, 10, 35, 60, 109, 110]:
        if step < 10:
            want = step / 10
        else:
            frac = (step - 10) / 100
            want = {"cosine": 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)),
                    "linear": 1.0 - 0.9 * frac, "constant": 1.0}[kind]
        assert float(sched(step)) == pytest.approx(want, abs=1e-6), step


def test_weight_decay_skips_embeddings_norms_and_biases():
    spec, _, params = _params(ModelConfig(family="gpt2", vocab_size=17, n_layers=1, d_model=8, n_heads=2, max_seq_len=8))
    mask = decay_mask(OptimizerConfig(), params)
    assert mask["embed"] is False and mask["pos_embed"] is False
    assert mask["final_norm"]["scale"] is False and mask["final_norm"]["bias"] is False
    assert mask["blocks"]["attn"]["q"]["kernel"] is True and mask["blocks"]["attn"]["q"]["bias"] is False
    all_on = decay_mask(OptimizerConfig(decay_embeddings=True, decay_norms_and_biases=True), params)
    assert all(jax.tree.leaves(all_on))
    # with zero gradients AdamW moves only decayed parameters, by lr * wd * p
    tx, _ = make_optimizer(OptimizerConfig(lr=0.1, warmup_steps=0, weight_decay=0.5, schedule="constant"), 10)
    zeros = jax.tree.map(jnp.zeros_like, params)
    new = optax.apply_updates(params, tx.update(zeros, tx.init(params), params)[0])
    np.testing.assert_allclose(new["embed"], params["embed"])
    k = params["blocks"]["mlp"]["fc"]["kernel"]
    np.testing.assert_allclose(new["blocks"]["mlp"]["fc"]["kernel"], k * (1 - 0.1 * 0.5), rtol=1e-6)
