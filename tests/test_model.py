"""The model against an independent NumPy forward pass, plus masking, scan/remat and FLOP counts."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference
from jaxllm.config.schema import ModelConfig
from jaxllm.model import Transformer, resolve_spec
from jaxllm.model.flops import matmul_params, train_flops_per_token

# Odd sizes on purpose (as Levanter's parity tests): bugs hide behind square shapes.
GPT2 = ModelConfig(family="gpt2", vocab_size=37, n_layers=2, d_model=24, n_heads=3, max_seq_len=16, init_std=0.2)
LLAMA = ModelConfig(family="llama", vocab_size=41, n_layers=3, d_model=32, n_heads=4, n_kv_heads=2, d_ff=40,
                    max_seq_len=16, init_std=0.2, rope_theta=500.0)
LLAMA_TIED_MHA = dataclasses.replace(LLAMA, n_kv_heads=None, tie_embeddings=True, use_bias=True)
# windows shorter than the documents, so packing must apply both the window and the segments
GEMMA2 = ModelConfig(family="gemma2", vocab_size=41, n_layers=3, d_model=28, n_heads=4, n_kv_heads=2, head_dim=10, d_ff=44,
                     max_seq_len=16, init_std=0.2, sliding_window=3, global_every=2, attn_softcap=3.0, final_softcap=5.0,
                     query_pre_attn_scalar=12.0)


def _init(cfg, **spec_kw):
    spec = dataclasses.replace(resolve_spec(cfg, backend="cpu"), **spec_kw)
    model = Transformer(spec)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]
    params = nn.meta.unbox(params)
    return spec, model, params


@pytest.mark.parametrize("cfg", [GPT2, LLAMA, LLAMA_TIED_MHA], ids=["gpt2", "llama-gqa", "llama-tied-mha-bias"])
@pytest.mark.parametrize("scan", [True, False], ids=["scan", "unrolled"])
def test_logits_match_numpy_reference(cfg, scan):
    spec, model, params = _init(cfg, scan_layers=scan)
    tokens = np.random.default_rng(0).integers(0, spec.vocab_size, (2, 11))
    got = np.asarray(jax.jit(model.apply)({"params": params}, jnp.asarray(tokens)))
    want = reference.forward(params, spec, tokens)
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("cfg", [GPT2, LLAMA, GEMMA2], ids=["gpt2", "llama", "gemma2-windows"])
def test_packed_segments_equal_separate_documents(cfg):
    """Two documents packed in one row give the same logits as each run on its own."""
    spec, model, params = _init(cfg)
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, spec.vocab_size, 5), rng.integers(0, spec.vocab_size, 7)
    packed = np.concatenate([a, b])[None]
    seg = np.array([[1] * 5 + [2] * 7])
    pos = np.array([list(range(5)) + list(range(7))])
    apply = jax.jit(model.apply)
    out = np.asarray(apply({"params": params}, jnp.asarray(packed), jnp.asarray(pos), jnp.asarray(seg)))
    alone_a = np.asarray(apply({"params": params}, jnp.asarray(a[None])))
    alone_b = np.asarray(apply({"params": params}, jnp.asarray(b[None])))
    np.testing.assert_allclose(out[0, :5], alone_a[0], atol=1e-5)
    np.testing.assert_allclose(out[0, 5:], alone_b[0], atol=1e-5)
    if not spec.sliding_window and spec.family in ("gpt2", "llama"):  # the NumPy reference knows these two
        np.testing.assert_allclose(out, reference.forward(params, spec, packed, pos, seg), atol=2e-4, rtol=1e-4)
    else:  # query-blocked attention (each block's window and segments) agrees with the whole matrix
        blocked = Transformer(dataclasses.replace(spec, attention_blocks=4))
        got = np.asarray(jax.jit(blocked.apply)({"params": params}, jnp.asarray(packed), jnp.asarray(pos), jnp.asarray(seg)))
        np.testing.assert_allclose(got, out, atol=1e-5)


@pytest.mark.parametrize("cfg", [GPT2, LLAMA], ids=["gpt2", "llama-gqa"])
@pytest.mark.parametrize("blocks,unroll", [(4, 1), (3, 3), (5, 2)], ids=["blocks4", "blocks3-unrolled", "blocks5-not-dividing"])
def test_query_blocked_attention_and_unrolled_scan_match_reference(cfg, blocks, unroll):
    """`model.attention_blocks` skips only masked score blocks and `model.scan_unroll` only changes the loop:
    packed logits equal the NumPy forward pass and gradients equal the plain model's (length 12; 5 does not
    divide it and falls back to whole attention)."""
    spec, model, params = _init(cfg)
    fast = Transformer(dataclasses.replace(spec, attention_blocks=blocks, scan_unroll=unroll))
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, spec.vocab_size, (2, 12))
    seg = np.array([[1] * 5 + [2] * 7, [1] * 12])
    pos = np.array([list(range(5)) + list(range(7)), list(range(12))])
    args = [jnp.asarray(a) for a in (tokens, pos, seg)]
    got = np.asarray(jax.jit(fast.apply)({"params": params}, *args))
    np.testing.assert_allclose(got, reference.forward(params, spec, tokens, pos, seg), atol=2e-4, rtol=1e-4)

    def loss(m, p):
        return jnp.mean(jax.nn.log_softmax(m.apply({"params": p}, *args))[..., 0])

    g0 = jax.jit(jax.grad(lambda p: loss(model, p)))(params)
    g1 = jax.jit(jax.grad(lambda p: loss(fast, p)))(params)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-6), g0, g1)


@pytest.mark.parametrize("remat", ["full", "save_dots"])
def test_remat_keeps_loss_and_gradients(remat):
    spec, model, params = _init(LLAMA)
    remat_model = Transformer(dataclasses.replace(spec, remat=remat))
    tokens = jnp.asarray(np.random.default_rng(2).integers(0, spec.vocab_size, (2, 9)))

    def loss(m, p):
        return jnp.mean(jax.nn.log_softmax(m.apply({"params": p}, tokens))[..., 0])

    g0 = jax.jit(jax.grad(lambda p: loss(model, p)))(params)
    g1 = jax.jit(jax.grad(lambda p: loss(remat_model, p)))(params)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-6), g0, g1)


def test_bfloat16_compute_stays_close_to_float32():
    spec, model, params = _init(GPT2)
    bf = Transformer(dataclasses.replace(spec, dtype="bfloat16"))
    tokens = jnp.asarray(np.random.default_rng(3).integers(0, spec.vocab_size, (2, 8)))
    p32 = jax.nn.softmax(jax.jit(model.apply)({"params": params}, tokens))
    p16 = jax.nn.softmax(jax.jit(bf.apply)({"params": params}, tokens))
    kl = jnp.sum(p32 * (jnp.log(p32) - jnp.log(p16)), -1)
    assert float(kl.max()) < 1e-2


@pytest.mark.parametrize("cfg", [GPT2, LLAMA, LLAMA_TIED_MHA], ids=["gpt2", "llama", "llama-tied"])
def test_matmul_params_counts_every_kernel(cfg):
    """N in 6N = all dense kernels, plus the embedding when it doubles as the output head."""
    spec, _, params = _init(cfg)
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    kernels = sum(v.size for path, v in flat if getattr(path[-1], "key", "") == "kernel")
    if spec.tie_embeddings:
        kernels += params["embed"].size
    assert matmul_params(spec) == kernels


def test_flops_per_token_formula():
    """GPT-2 124M at seq 1024: 6N + 6*L*T*d (causal-halved attention), N from the shapes."""
    from pathlib import Path

    from jaxllm.config import load_config
    root = Path(__file__).resolve().parents[1]
    spec = resolve_spec(load_config(root / "configs/model/gpt2-124m.yaml").model, backend="cpu")
    n = 12 * (4 * 768 * 768 + 8 * 768 * 768) + 768 * 50304
    want = 6 * n + 6 * 12 * 1024 * 768
    assert train_flops_per_token(spec, 1024) == pytest.approx(want)
    # a reward model has a scalar head instead of the vocabulary's; PPO trains policy and critic trunks
    assert train_flops_per_token(spec, 1024, lm_head=False) == pytest.approx(want - 6 * 768 * 50304 + 6 * 768)
    assert train_flops_per_token(spec, 1024, trunks=2) == pytest.approx(2 * want - 6 * 768 * 50304)


def test_cudnn_on_cpu_is_a_config_error():
    from jaxllm.errors import ConfigError
    with pytest.raises(ConfigError, match="model.attention = 'cudnn' needs a GPU"):
        resolve_spec(dataclasses.replace(GPT2, attention="cudnn"), backend="cpu")


def test_cudnn_only_in_half_precision():
    """cuDNN's fused kernel takes bf16/fp16 only: auto picks xla for float32 on a GPU, an explicit choice is refused."""
    from jaxllm.errors import ConfigError
    assert resolve_spec(dataclasses.replace(GPT2, dtype="float32"), backend="gpu").attention == "xla"
    assert resolve_spec(dataclasses.replace(GPT2, dtype="auto"), backend="gpu").attention == "cudnn"
    with pytest.raises(ConfigError, match="needs model.dtype bfloat16"):
        resolve_spec(dataclasses.replace(GPT2, attention="cudnn", dtype="float32"), backend="gpu")
