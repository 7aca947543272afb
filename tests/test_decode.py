"""KV-cache decoding against full forward passes; sampling filters; stopping; left padding; sharded decode."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxllm.config.schema import ModelConfig
from jaxllm.model import Transformer, resolve_spec
from jaxllm.model.decode import Sampling, choose, generate, init_cache, left_pad, token_logprobs
from jaxllm.parallel.mesh import make_mesh
from jaxllm.config.schema import MeshConfig, DEFAULT_RULES
from jaxllm.train.state import abstract_params
from jaxllm.parallel.layout import mesh_context

V = 96


def _model(family, scan=True):
    spec = resolve_spec(ModelConfig(family=family, vocab_size=V, n_layers=2, d_model=32, n_heads=4,
                                    n_kv_heads=2 if family == "llama" else None, max_seq_len=48, scan_layers=scan),
                        backend="cpu")
    model = Transformer(spec)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(1), jnp.zeros((1, 4), jnp.int32))["params"])
    return model, params


def _full_logits(model, params, seq):
    """Logits of one unpadded sequence, full forward (padded to a bucket so few shapes compile)."""
    n = len(seq)
    padded = np.zeros((1, -(-n // 16) * 16), np.int32)
    padded[0, :n] = seq
    return np.asarray(_jit_apply(model)(params, jnp.asarray(padded)))[0, :n]


_JITS = {}


def _jit_apply(model):
    if model.spec not in _JITS:
        _JITS[model.spec] = jax.jit(lambda p, t: model.apply({"params": p}, t))
    return _JITS[model.spec]


PROMPTS = [[2, 5, 6, 7, 8, 9], [2, 11], [2, 20, 21, 22]]


@pytest.mark.parametrize("family,scan", [("gpt2", True), ("gpt2", False), ("llama", True), ("llama", False)])
def test_cached_logits_equal_full_forward_at_every_position(family, scan):
    """Prefill of left-padded prompts, then one token at a time: every logit row equals the unpadded full forward."""
    model, params = _model(family, scan)
    rng = np.random.default_rng(0)
    conts = [rng.integers(4, V, 5).tolist() for _ in PROMPTS]
    tokens, lens = left_pad(PROMPTS, 0)
    b, p = tokens.shape
    n = 5
    real = (np.arange(p)[None] >= (p - lens)[:, None]).astype(np.int32)
    pos = np.maximum(np.arange(p)[None] - (p - lens)[:, None], 0)
    kv_seg = jnp.asarray(np.concatenate([real, np.ones((b, n), np.int32)], 1))
    apply = jax.jit(lambda tok, pos, seg, cache, index: model.apply(
        {"params": params}, tok, pos, seg, cache=cache, kv_segments=kv_seg, cache_index=index))
    logits, cache = apply(jnp.asarray(tokens), jnp.asarray(pos), jnp.asarray(real), init_cache(model, b, p + n), 0)
    steps = [np.asarray(logits)]
    for t in range(n):
        tok = jnp.asarray([[c[t]] for c in conts])
        lg, cache = apply(tok, jnp.asarray(lens + t)[:, None], jnp.ones((b, 1), jnp.int32), cache, p + t)
        steps.append(np.asarray(lg))
    for i, (prompt, cont) in enumerate(zip(PROMPTS, conts)):
        ref = _full_logits(model, params, prompt + cont)
        got = np.concatenate([steps[0][i, p - len(prompt):]] + [s[i] for s in steps[1:]])
        np.testing.assert_allclose(got, ref, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("family,temperature", [("gpt2", 1.0), ("llama", 0.7)])
def test_returned_logprobs_equal_forward_recomputation(family, temperature):
    """log softmax(logits / T) of each sampled token, as a full forward pass and NumPy recompute it."""
    model, params = _model(family)
    outs = generate(model, params, PROMPTS, jax.random.PRNGKey(3), Sampling(temperature=temperature, max_new_tokens=8))
    for prompt, o in zip(PROMPTS, outs):
        assert len(o["tokens"]) == 8
        ref = _full_logits(model, params, prompt + o["tokens"])[len(prompt) - 1:-1].astype(np.float64) / temperature
        logp = ref - ref.max(-1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
        np.testing.assert_allclose(o["logprobs"], logp[np.arange(8), o["tokens"]], atol=1e-5)


def test_greedy_is_deterministic_and_left_padding_changes_nothing():
    model, params = _model("llama")
    greedy = Sampling(temperature=0.0, max_new_tokens=10)
    a = generate(model, params, PROMPTS, jax.random.PRNGKey(0), greedy)
    b = generate(model, params, PROMPTS, jax.random.PRNGKey(99), greedy)
    assert [o["tokens"] for o in a] == [o["tokens"] for o in b]
    for i, prompt in enumerate(PROMPTS):  # each prompt alone (no padding) decodes the same
        alone = generate(model, params, [prompt], jax.random.PRNGKey(0), greedy)[0]
        assert alone["tokens"] == a[i]["tokens"]
        np.testing.assert_allclose(alone["logprobs"], a[i]["logprobs"], atol=1e-5)
        # and greedy picks the argmax of a full forward at every step
        ref = _full_logits(model, params, prompt + alone["tokens"])[len(prompt) - 1:-1]
        assert alone["tokens"] == ref.argmax(-1).tolist()


def test_learned_positions_bound_prompt_plus_new_tokens():
    model, params = _model("gpt2")  # max_seq_len 48
    with pytest.raises(ValueError, match="exceeds the learned position table"):
        generate(model, params, [[2] * 40], jax.random.PRNGKey(0), Sampling(max_new_tokens=9))


def test_stop_token_ends_one_sequence_while_others_continue():
    model, params = _model("gpt2")
    greedy = Sampling(temperature=0.0, max_new_tokens=10)
    free = [o["tokens"] for o in generate(model, params, PROMPTS, jax.random.PRNGKey(0), greedy)]
    stop = next(t for t in free[0][1:] if t not in free[1] and t not in free[2])
    cut = free[0].index(stop) + 1
    outs = generate(model, params, PROMPTS, jax.random.PRNGKey(0), greedy, stop_ids=(stop,))
    assert outs[0]["tokens"] == free[0][:cut]  # ends with the stop token
    assert outs[1]["tokens"] == free[1] and outs[2]["tokens"] == free[2]  # the others run to max_new_tokens


def _distinct_logits(rng, b=4):
    return jnp.asarray(rng.permutation(np.tile(np.linspace(-3, 3, V), (b, 1)).T).T.copy(), jnp.float32)


def test_top_k_and_top_p_never_emit_excluded_tokens():
    rng = np.random.default_rng(0)
    logits = _distinct_logits(rng)
    keys = jax.random.split(jax.random.PRNGKey(0), 300)
    draws = np.asarray(jax.vmap(lambda k: choose(logits, k, Sampling(temperature=1.0, top_k=5)))(keys))  # [300, B]
    top5 = np.argsort(-np.asarray(logits), axis=-1)[:, :5]
    for row in range(logits.shape[0]):
        assert set(draws[:, row]) <= set(top5[row])
        assert len(set(draws[:, row])) > 1  # it does sample

    probs = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))  # nucleus 0.7: {0, 1} (0.5 < 0.7, 0.8 >= 0.7)
    draws = np.asarray(jax.vmap(lambda k: choose(probs, k, Sampling(temperature=1.0, top_p=0.7)))(keys))
    assert set(draws[:, 0]) == {0, 1}
    draws = np.asarray(jax.vmap(lambda k: choose(probs, k, Sampling(temperature=1.0, top_p=0.4)))(keys))
    assert set(draws[:, 0]) == {0}  # the top token always survives


def test_padded_vocab_rows_are_never_sampled():
    model, params = _model("gpt2")
    outs = generate(model, params, PROMPTS, jax.random.PRNGKey(0), Sampling(temperature=2.0, max_new_tokens=12),
                    vocab_size=20)
    assert all(t < 20 for o in outs for t in o["tokens"])
    ref = _full_logits(model, params, PROMPTS[1] + outs[1]["tokens"])[len(PROMPTS[1]) - 1:-1]
    np.testing.assert_allclose(outs[1]["logprobs"], np.asarray(token_logprobs(jnp.asarray(ref), jnp.asarray(outs[1]["tokens"]), 20, 2.0)),
                               atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_decoding_on_8_devices_with_the_trainers_sharded_params(family):
    """Parameters sharded as the trainer shards them (data=2, fsdp=2, tensor=2); same tokens as one device."""
    model, params = _model(family)
    greedy = Sampling(temperature=0.0, max_new_tokens=8)
    prompts = PROMPTS + [[2, 30, 31], [2, 40]]  # 5 prompts: padded to the 4 batch shards inside
    single = generate(model, params, prompts, jax.random.PRNGKey(0), greedy)
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    assert mesh.devices.size == 8
    with mesh_context(mesh, DEFAULT_RULES):
        shardings = jax.tree.map(lambda a: a.sharding, abstract_params(model, mesh, DEFAULT_RULES))
        sharded = jax.device_put(params, shardings)
        assert any(len(x.sharding.device_set) == 8 and not x.sharding.is_fully_replicated for x in jax.tree.leaves(sharded))
        outs = generate(model, sharded, prompts, jax.random.PRNGKey(0), greedy, batch_multiple=4)
    for s, o, prompt in zip(single, outs, prompts):
        assert o["tokens"] == s["tokens"]
        ref = _full_logits(model, params, prompt + o["tokens"])[len(prompt) - 1:-1]
        np.testing.assert_allclose(o["logprobs"], np.asarray(token_logprobs(jnp.asarray(ref), jnp.asarray(o["tokens"]))),
                                   atol=1e-4)
