"""LoRA and QLoRA: the adapters against NumPy, the frozen base, the reference for free, checkpoints, sharding,
export to PEFT and merged weights, and every objective training with adapters."""

import dataclasses
import json
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxllm.config.schema import LoraConfig, ModelConfig
from jaxllm.model import Transformer, resolve_spec
from jaxllm.model import lora
from jaxllm.model.layers import Dense

ROOT = Path(__file__).resolve().parents[1]
ALL = ["q", "k", "v", "o", "gate", "up", "proj", "fc", "lm_head", "embed"]
# QLoRA's NormalFloat-4 levels (Dettmers et al. 2023, bitsandbytes), written out independently of qwix
NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0])


def _spec(family, rank=4, targets=ALL, **kw):
    cfg = ModelConfig(family=family, n_layers=2, d_model=32, n_heads=4, d_ff=48, vocab_size=96, max_seq_len=64,
                      dtype="float32", lora=LoraConfig(rank=rank, alpha=8.0, targets=list(targets)), **kw)
    return resolve_spec(cfg)


def _init(spec, seed=0):
    tokens = jnp.zeros((1, 4), jnp.int32)
    return jax.jit(lambda: nn.meta.unbox(Transformer(spec).init(jax.random.PRNGKey(seed), tokens)["params"]))()


def _base_spec(spec):
    return dataclasses.replace(spec, lora_rank=0, lora_alpha=0.0, lora_targets=())


def _moved(trainable, seed=1, std=0.3):
    leaves, tree = jax.tree.flatten(trainable)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(tree, [x + std * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


TOKENS = np.random.default_rng(0).integers(0, 96, (2, 12))


@pytest.mark.parametrize("family,tie", [("gpt2", True), ("llama", False)])
def test_at_init_the_lora_model_is_the_base_exactly(family, tie):
    """B starts at zero (the embedding's A): op by op (unrolled layers, not compiled as one program) the logits
    equal the base model's bit for bit, and with the adapters left out of the tree (adapters off) too. Targets
    cover every module, the tied head through the embedding's adapters."""
    spec = _spec(family, tie_embeddings=tie, scan_layers=False)
    params = _init(spec)
    assert lora.has_adapters(params)
    trainable, base = lora.split(params)
    want = np.asarray(Transformer(_base_spec(spec)).apply({"params": base}, TOKENS))
    np.testing.assert_array_equal(np.asarray(Transformer(spec).apply({"params": params}, TOKENS)), want)
    np.testing.assert_array_equal(np.asarray(Transformer(spec).apply({"params": base}, TOKENS)), want)
    names = {k[-2] if k[-1] in ("lora_a", "lora_b") else "embed" for k in traverse_util.flatten_dict(trainable)}
    mlp = {"fc", "proj"} if family == "gpt2" else {"gate", "up", "proj"}
    assert names == {"q", "k", "v", "o", "embed", *mlp, *(() if tie else ("lm_head",))}


@pytest.mark.parametrize("family,tie", [("gemma2", True), ("qwen3", False)])
def test_at_init_the_compiled_lora_model_agrees_with_the_base_to_rounding(family, tie):
    """Compiled (scanned, jitted) XLA may fuse the extra zero term differently: the logits agree to float32
    rounding (Qwen3's q/k norms: 9e-8; GPT-2, Llama and Gemma 2 were bit for bit)."""
    spec = _spec(family, tie_embeddings=tie)
    params = _init(spec)
    got = jax.jit(Transformer(spec).apply)({"params": params}, TOKENS)
    want = jax.jit(Transformer(_base_spec(spec)).apply)({"params": lora.split(params)[1]}, TOKENS)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6, rtol=0)


def test_the_update_is_the_rank_r_product_of_a_numpy_reference():
    """One Dense with adapters: ``x W + b + (alpha / r) x A B`` in NumPy; the embedding adds ``(alpha / r) A[t] B``."""
    spec = _spec("llama")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 32)).astype(np.float32)
    p = {"kernel": rng.normal(size=(32, 48)), "bias": rng.normal(size=48), "lora_a": rng.normal(size=(32, 4)),
         "lora_b": rng.normal(size=(4, 48))}
    p = {k: np.asarray(v, np.float32) for k, v in p.items()}
    got = jax.jit(Dense(48, ("embed", "mlp"), spec, bias=True, name="up").apply)({"params": p}, jnp.asarray(x))
    want = x @ p["kernel"] + p["bias"] + (8.0 / 4) * (x @ p["lora_a"]) @ p["lora_b"]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-4)
    off = jax.jit(Dense(48, ("embed", "mlp"), spec, bias=True, name="up").apply)(
        {"params": {"kernel": p["kernel"], "bias": p["bias"]}}, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(off), x @ p["kernel"] + p["bias"], rtol=1e-5, atol=1e-4)
    # the embedding: a model whose only adapters are the embedding's, blocks' output checked through "hidden"
    spec_e = _spec("llama", targets=["embed"])
    params = _moved(_init(spec_e), std=0.5)
    emb = traverse_util.flatten_dict(params)
    a, b, e = (np.asarray(emb[(k,)]) for k in ("embed_lora_a", "embed_lora_b", "embed"))
    merged = {**params, "embed": jnp.asarray(e + 2.0 * a @ b)}
    merged = {k: v for k, v in merged.items() if k not in ("embed_lora_a", "embed_lora_b")}
    got = jax.jit(Transformer(spec_e).apply)({"params": params}, TOKENS)
    want = jax.jit(Transformer(_base_spec(spec_e)).apply)({"params": merged}, TOKENS)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family,tie", [("gpt2", True), ("llama", False)])
def test_merged_weights_give_the_unmerged_forward(family, tie):
    spec = _spec(family, tie_embeddings=tie)
    trainable, base = lora.split(_init(spec))
    full = lora.overlay(base, _moved(trainable))
    unmerged = np.asarray(jax.jit(Transformer(spec).apply)({"params": full}, TOKENS))
    plain = jax.jit(Transformer(_base_spec(spec)).apply)
    merged = np.asarray(plain({"params": lora.merge(full, spec.lora_scale)}, TOKENS))
    np.testing.assert_allclose(merged, unmerged, atol=5e-5, rtol=0)  # logits up to 11: float32 rounding (3e-5 seen)
    assert np.abs(unmerged - plain({"params": base}, TOKENS)).max() > 0.1


def test_gradients_reach_only_the_adapters_and_the_trained_leaves():
    """The trainer differentiates the trainable part alone: gradients exist only for adapters (and
    ``lora.train`` leaves), B's are non-zero at the first step, A's are zero there (B = 0)."""
    from jaxllm.objectives.pretrain import make_lm_loss
    from jaxllm.train.adapters import BASE, LoraRun, wrap_loss

    spec = _spec("llama")
    model = Transformer(spec)
    trainable, base = lora.split(_init(spec))
    loss = wrap_loss(make_lm_loss(model), LoraRun(base, {}))
    batch = {"inputs": jnp.asarray(TOKENS[:, :-1]), "targets": jnp.asarray(TOKENS[:, 1:]),
             "positions": jnp.broadcast_to(jnp.arange(11), (2, 11)), "segment_ids": jnp.ones((2, 11), jnp.int32),
             "loss_mask": jnp.ones((2, 11), jnp.float32)}
    grads = jax.jit(jax.grad(lambda t: loss(t, batch, {BASE: base})[0]))(trainable)
    flat = traverse_util.flatten_dict(grads)
    assert flat and all(lora.is_adapter(k) for k in flat)
    assert all(np.abs(np.asarray(g)).max() > 0 for k, g in flat.items() if k[-1] in ("lora_b", "embed_lora_a"))
    assert all(np.abs(np.asarray(g)).max() == 0 for k, g in flat.items() if k[-1] in ("lora_a", "embed_lora_b"))


def test_nf4_base_equals_a_numpy_nf4_reference_and_int8_its_absmax_rounding():
    """QLoRA's stored base, read back: NF4 = the nearest of the 16 NormalFloat levels times each 64-input block's
    absmax (per output); int8 = round(w / s) * s with s = absmax / 127.5 per block (qwix's symmetric int8)."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.02, (2, 128, 24)).astype(np.float32)  # a stacked [layers, in, out] kernel
    tree = {"blocks": {"attn": {"q": {"kernel": jnp.asarray(w)}}}}
    blocks = w.reshape(2, 2, 64, 24)
    absmax = np.abs(blocks).max(axis=2, keepdims=True)
    absmax_bf16 = np.asarray(jnp.asarray(absmax, jnp.bfloat16).astype(jnp.float32))
    idx = np.abs((blocks / absmax)[..., None] - NF4).argmin(-1)
    want = (NF4[idx] * absmax_bf16).reshape(w.shape)
    packed = lora.quantize_kernels(tree, "nf4", 64)["blocks"]["attn"]["q"]["kernel"]
    assert isinstance(packed, lora.Packed4) and packed.codes.dtype == jnp.uint8 and packed.codes.shape == (2, 64, 24)
    got = np.asarray(lora.kernel_value(packed).astype(jnp.float32))
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-6)  # the scale is stored in bfloat16
    q8 = lora.quantize_kernels(tree, "int8", 64)["blocks"]["attn"]["q"]["kernel"]
    scale = np.asarray(jnp.asarray(absmax / 127.5, jnp.bfloat16).astype(jnp.float32))
    want8 = (np.clip(np.round(blocks / (absmax / 127.5)), -128, 127) * scale).reshape(w.shape)
    got8 = np.asarray(lora.kernel_value(q8).astype(jnp.float32))
    step = np.broadcast_to(scale, blocks.shape).reshape(w.shape)
    # read back in bfloat16 (the scale's dtype); a value on a rounding boundary may land one step over
    assert np.all(np.abs(got8 - want8) <= step * 1.01 + np.abs(want8) * 2 ** -8)
    assert np.mean(np.isclose(got8, want8, rtol=1e-2, atol=1e-6)) > 0.999


@pytest.mark.parametrize("family", [pytest.param("llama", marks=pytest.mark.slow), "gpt2"])
def test_qlora_forward_stays_within_a_stated_tolerance_of_the_bf16_base(family):
    """Quantized base (the blocks' kernels; embeddings and head stay) against the bf16 base, at init scale:
    logits' RMS error relative to their spread, and the mean KL per token. Measured 2026-12-06: int8 0.007-0.008
    and 2e-6; NF4 0.10-0.11 and 4e-4 (the weights' own errors: 0.7% and 9%)."""
    cfg = ModelConfig(family=family, n_layers=2, d_model=128, n_heads=4, d_ff=256, vocab_size=256, max_seq_len=64,
                      dtype="float32")
    spec = resolve_spec(cfg)
    tokens = np.random.default_rng(1).integers(0, 256, (4, 32))
    bf16 = lora.cast(_init(spec), jnp.bfloat16)
    apply = jax.jit(Transformer(spec).apply)
    ref = apply({"params": bf16}, tokens)
    for qtype, rms_bound, kl_bound in (("int8", 0.02, 1e-5), ("nf4", 0.2, 1e-3)):
        out = apply({"params": lora.quantize_kernels(bf16, qtype, 64)}, tokens)
        rms = float(jnp.sqrt(jnp.mean((out - ref) ** 2)) / ref.std())
        lp, lq = jax.nn.log_softmax(ref), jax.nn.log_softmax(out)
        kl = float(jnp.mean(jnp.sum(jnp.exp(lp) * (lp - lq), -1)))
        assert rms < rms_bound and kl < kl_bound, (qtype, rms, kl)
        assert rms > 1e-4  # the base really is quantized


# -- through the trainer (slow: they share one trained fixture, and the quick tier stays under 6 minutes) ---------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny pre-trained run and a LoRA SFT run from it (every module targeted, the tied head through the
    embedding), checkpointed at steps 2 and 4."""
    from conftest import tiny_config
    from jaxllm.train.loop import train

    d = tmp_path_factory.mktemp("lora")
    train(tiny_config(d / "pre", "train.steps=2", "checkpoint.every=2"))
    sft = train(tiny_config(d / "sft", *_sft(d)))
    return d, sft


SFT = ["objective.name=sft", "train.steps=4", "checkpoint.every=2", "optimizer.lr=1e-2", "model.lora.rank=4",
       "model.lora.targets=[q,k,v,o,fc,proj,embed]"]


def _sft(d, *extra):
    return [f"init_from={d / 'pre'}", *SFT, *extra]


@pytest.mark.slow
def test_a_lora_checkpoint_holds_adapters_and_a_pointer_to_its_base(runs):
    from conftest import tiny_config  # noqa: F401
    from jaxllm.train.checkpoint import load_saved_params

    d, sft = runs
    saved = load_saved_params(str(d / "sft"), jax.sharding.NamedSharding(jax.sharding.Mesh(jax.devices()[:1], ("x",)),
                                                                         jax.sharding.PartitionSpec()))
    flat = traverse_util.flatten_dict(saved)
    assert flat and all(lora.is_adapter(k) for k in flat), sorted(flat)
    record = json.loads((d / "sft" / "lora_base.json").read_text())
    assert record == {"scale": 16.0 / 4, "parts": {"": str((d / "pre").absolute())}}
    # AdamW's moments exist for the adapters only
    n_trainable = sum(int(np.prod(x.shape)) for x in flat.values())
    opt = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(sft.state.opt_state) if getattr(x, "ndim", 0))
    assert opt == 2 * n_trainable


@pytest.mark.slow
def test_training_moves_the_adapters_and_never_the_base(runs):
    """The run's merged parameters minus the pre-trained ones are exactly ``scale * A B`` of the saved adapters."""
    from jaxllm.infer.load import load_checkpoint
    from jaxllm.pretrained import load_params

    d, sft = runs
    loaded = load_checkpoint(d / "sft")
    abstract = loaded.layout.abstract_params(Transformer(_base_spec(loaded.model.spec)))
    with loaded.layout.context():
        pre = traverse_util.flatten_dict(jax.device_get(load_params(str(d / "pre"), abstract)))
    merged = traverse_util.flatten_dict(jax.device_get(loaded.params))
    adapters = traverse_util.flatten_dict(jax.device_get(sft.state.params))
    assert set(merged) == set(pre)
    for k, w in merged.items():
        owner = "embed" if k == ("embed",) else None
        if owner:
            a, b = adapters[("embed_lora_a",)], adapters[("embed_lora_b",)]
        elif k[-1] == "kernel" and k[:-1] + ("lora_a",) in adapters:
            a, b = adapters[k[:-1] + ("lora_a",)], adapters[k[:-1] + ("lora_b",)]
        else:
            np.testing.assert_array_equal(w, pre[k])  # untargeted: bit for bit the base
            continue
        delta = 4.0 * np.einsum("...ir,...ro->...io", np.asarray(a, np.float64), np.asarray(b, np.float64))
        np.testing.assert_allclose(np.asarray(w, np.float64) - pre[k], delta, atol=2e-6)
        assert np.abs(delta).max() > 1e-4


@pytest.mark.slow
def test_a_resumed_lora_run_equals_the_uninterrupted_one_bit_for_bit(runs, tmp_path):
    from conftest import tiny_config
    from jaxllm.train.loop import train

    d, sft = runs
    train(tiny_config(tmp_path / "r", *_sft(d, "train.stop_at_step=2")))
    resumed = train(tiny_config(tmp_path / "r", *_sft(d)))
    for a, b in zip(jax.tree.leaves(resumed.state.params), jax.tree.leaves(sft.state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in sft.history[2:]]


@pytest.mark.slow
def test_generate_chat_and_eval_load_a_lora_run(runs, capsys, monkeypatch):
    """`load_checkpoint` (generate, chat, eval) merges the adapters: its logits equal the adapters applied."""
    from jaxllm.cli import main
    from jaxllm.infer.load import load_checkpoint
    from jaxllm.pretrained import load_params

    d, sft = runs
    loaded = load_checkpoint(d / "sft")
    spec = loaded.model.spec
    assert spec.lora_rank == 4
    with loaded.layout.context():
        base = load_params(str(d / "pre"), loaded.layout.abstract_params(Transformer(_base_spec(spec))))
    applied = Transformer(spec).apply({"params": lora.overlay(jax.device_get(base), jax.device_get(sft.state.params))},
                                      TOKENS % spec.vocab_size)
    got = loaded.model.apply({"params": jax.device_get(loaded.params)}, TOKENS % spec.vocab_size)
    np.testing.assert_allclose(np.asarray(got), np.asarray(applied), atol=1e-5)
    assert main(["generate", str(d / "sft"), "--prompt", "The capital of", "--max-new-tokens", "4"]) == 0
    assert main(["eval", str(d / "sft"), "--questions", "builtin", "--max-new-tokens", "4", "--limit", "4"]) == 0
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("What is the capital of France?\n/quit\n"))
    assert main(["chat", str(d / "sft"), "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert "4 questions, exact match" in out and out.count("you> ") == 2


@pytest.mark.slow
def test_the_reference_is_the_base_itself_and_equals_a_separately_loaded_copy(runs):
    """DPO with LoRA and a live reference: the objective's reference is the step's frozen base (the same
    buffers, not a copy), and equals the SFT run's parameters loaded on their own. The step's frozen argument
    holds one model; full fine-tuning's holds the reference copy."""
    from conftest import tiny_config
    from jaxllm.objectives.dpo import sequence_logps
    from jaxllm.pretrained import load_params
    from jaxllm.train.adapters import BASE
    from jaxllm.train.loop import _initial_state, _prepare

    d, _ = runs
    dpo = ["objective.name=dpo", "data.builtin.rankings=60", "train.seq_len=64", "objective.dpo.reference=live",
           "checkpoint.enabled=false", f"init_from={d / 'sft'}"]
    r = _prepare(tiny_config(d / "dpo-lora", *dpo, "model.lora.rank=4"), None)
    with r.layout.context():
        state, frozen, *_ = _initial_state(r)
        declared = r.declared(frozen)
        assert set(frozen) == {BASE} and r.lora.views == {"reference": None}
        for a, b in zip(jax.tree.leaves(declared["reference"]), jax.tree.leaves(frozen[BASE])):
            assert a is b
        separate = load_params(str(d / "sft"), lora.without_adapters(r.layout.abstract_params(r.model)))
        for a, b in zip(jax.tree.leaves(declared["reference"]), jax.tree.leaves(separate)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        batch = {k: jnp.asarray(v) for k, v in r.objective.eval_batches[0].items()}
        n, k, length = batch["tokens"].shape
        rows = [batch[x].reshape(n * k, length) for x in ("tokens", "mask", "response")]
        ref_lp = sequence_logps(r.model, declared["reference"], *rows)[0]
        sep_lp = sequence_logps(r.model, separate, *rows)[0]
        np.testing.assert_array_equal(np.asarray(ref_lp), np.asarray(sep_lp))
        base_bytes = sum(x.nbytes for x in jax.tree.leaves(frozen))
    full = _prepare(tiny_config(d / "dpo-full", *dpo), None)
    with full.layout.context():
        _, full_frozen, *_ = _initial_state(full)
    assert set(full_frozen) == {"reference"}
    assert sum(x.nbytes for x in jax.tree.leaves(full_frozen)) == base_bytes  # full FT: this copy is extra


@pytest.mark.slow
def test_sharded_lora_on_fsdp_and_tensor_rules(runs):
    """8 devices as (data 2, fsdp 2, tensor 2): the same losses as pure data parallelism; adapters sharded by the
    rules (A by its input over fsdp, B's rank over fsdp and its output over tensor). QLoRA on a sharded mesh:
    the DPO case of `test_every_objective_trains_with_lora`."""
    from conftest import tiny_config
    from jaxllm.train.loop import train

    d, sft = runs
    mesh = ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2", "checkpoint.enabled=false", "train.steps=2"]
    res = train(tiny_config(d / "sharded", *_sft(d, *mesh)))
    np.testing.assert_allclose([h["loss"] for h in res.history], [h["loss"] for h in sft.history[:2]], rtol=2e-5)
    ab = res.state.params["blocks"]["mlp"]["fc"]
    P = jax.sharding.PartitionSpec
    assert ab["lora_a"].sharding.spec == P(None, "fsdp", None)
    assert ab["lora_b"].sharding.spec == P(None, "fsdp", "tensor")
    # an NF4 base on the same mesh: codes [layers, in/2, out] and scales [layers, in/64, out] keep the kernel's axes
    # where they divide (the 64-wide input makes one scale row: replicated there)
    from jaxllm.train.adapters import storage
    mesh = ab["lora_a"].sharding.mesh
    kernel = jax.ShapeDtypeStruct((2, 64, 256), jnp.float32, sharding=jax.sharding.NamedSharding(mesh, P(None, "fsdp", "tensor")))
    _, shardings = storage({"blocks": {"mlp": {"fc": {"kernel": kernel}}}}, "bfloat16", "nf4", 64)
    packed = shardings["blocks"]["mlp"]["fc"]["kernel"]
    assert packed.codes.spec == P(None, "fsdp", "tensor") and packed.scale.spec == P(None, None, "tensor")


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["pretrain", "reward", "dpo", "grpo", "ppo"])
def test_every_objective_trains_with_lora(runs, objective):
    """Each objective with adapters from the LoRA SFT run (loaded merged): it trains (the loss moves, the base
    does not), and the on-policy ones start at KL 0 from a reference that is the base with adapters off. DPO
    runs QLoRA (NF4 base, bfloat16 scales) on a (data 2, fsdp 2, tensor 2) mesh; its reference is the same
    quantized base, so its first loss is exactly DPO's log 2."""
    from conftest import tiny_config
    from jaxllm.train.loop import train

    sys.path.insert(0, str(ROOT / "tests"))
    d, _ = runs
    common = [f"init_from={d / 'sft'}", "model.lora.rank=4", "checkpoint.enabled=false", "optimizer.lr=1e-2"]
    extra = {
        "pretrain": ["train.steps=3"],
        "reward": ["objective.name=reward", "data.builtin.rankings=60", "train.seq_len=64", "train.steps=3"],
        "dpo": ["objective.name=dpo", "data.builtin.rankings=60", "train.seq_len=64", "train.steps=3",
                "model.lora.quantize=nf4", "model.lora.base_dtype=bfloat16", "mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"],
        "grpo": ["objective.name=grpo", "train.seq_len=40", "objective.grpo.max_new_tokens=8",
                 "objective.grpo.prompts_per_rollout=4", "objective.grpo.group_size=4", "data.builtin.task_questions=100",
                 "objective.grpo.eval_prompts=0", "train.steps=2"],
        "ppo": ["objective.name=ppo", "train.seq_len=48", "objective.ppo.reward_fn=test_ppo:vowel_reward",
                "objective.ppo.rollout_prompts=8", "objective.ppo.max_new_tokens=8", "objective.ppo.eval_prompts=0",
                "objective.ppo.ppo_epochs=1", "train.steps=2", "checkpoint.enabled=true", "checkpoint.every=2"],
    }[objective]
    res = train(tiny_config(d / f"{objective}-lora", *common, *extra))
    losses = [h["loss"] for h in res.history]
    assert all(np.isfinite(losses)) and len(set(losses)) > 1, losses
    flat = traverse_util.flatten_dict(jax.device_get(res.state.params))
    in_full = {"reward": {("head_kernel",), ("head_bias",)},  # the new scalar head trains beside the adapters
               "ppo": {("critic", "head_kernel"), ("critic", "head_bias")}}.get(objective, set())
    assert {k for k in flat if not lora.is_adapter(k)} == in_full
    if objective == "dpo":
        assert res.history[0]["loss"] == pytest.approx(np.log(2), rel=1e-6)
    if objective in ("grpo", "ppo"):
        assert res.history[0]["kl"] == 0.0  # first rollout: policy = base + 0, reference = the base itself
    if objective == "ppo":  # its policy chats (the critic's base was a fresh init: only the policy is read back)
        from jaxllm.infer.load import load_checkpoint
        assert load_checkpoint(d / "ppo-lora").params["blocks"]["attn"]["q"]["kernel"].shape[0] == 2


@pytest.mark.slow
def test_to_hf_merges_a_lora_run_and_refuses_a_peft_adapter_it_could_not_express(runs, tmp_path):
    """The fixture's adapters include the embedding of a tied GPT-2: `to-hf` refuses a PEFT adapter (PEFT's tied
    head would not see the embedding's update) and `--merge` writes weights transformers reads with jaxllm's logits."""
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("transformers")
    from jaxllm.errors import UserError
    from jaxllm.infer.load import load_checkpoint
    from jaxllm.interop.convert import to_hf

    d, _ = runs
    with pytest.raises(UserError, match="tied output head.*--merge"):
        to_hf(d / "sft", tmp_path / "adapter")
    to_hf(d / "sft", tmp_path / "merged", merge=True)
    loaded = load_checkpoint(d / "sft")
    tokens = TOKENS % loaded.tokenizer.vocab_size
    ours = np.asarray(loaded.model.apply({"params": jax.device_get(loaded.params)}, tokens))[..., :loaded.tokenizer.vocab_size]
    with torch.no_grad():
        theirs = tf.AutoModelForCausalLM.from_pretrained(tmp_path / "merged")(torch.tensor(tokens)).logits.numpy()
    np.testing.assert_allclose(theirs[..., :loaded.tokenizer.vocab_size], ours, atol=1e-4)


@pytest.mark.slow
def test_lora_mistakes_get_one_line_each(runs, tmp_path):
    import shutil

    from conftest import tiny_config
    from jaxllm.errors import ConfigError, UserError
    from jaxllm.infer.load import load_checkpoint
    from jaxllm.interop.peft import read_peft_config

    d, _ = runs
    with pytest.raises(ConfigError, match="init_from is not set"):
        tiny_config(tmp_path / "x", "model.lora.rank=4")
    with pytest.raises(ConfigError, match="'qq' is not a module name"):
        tiny_config(tmp_path / "x", f"init_from={d / 'pre'}", "model.lora.rank=4", "model.lora.targets=[q,qq]")
    with pytest.raises(ConfigError, match="names no module of this llama model"):
        tiny_config(tmp_path / "x", f"init_from={d / 'pre'}", "model.lora.rank=4", "model.lora.targets=[fc]",
                    model="tiny-llama")
    moved = tmp_path / "sft"
    shutil.copytree(d / "sft", moved)
    (moved / "lora_base.json").write_text(json.dumps({"scale": 4.0, "parts": {"": str(tmp_path / "gone")}}))
    with pytest.raises(UserError, match="gone.*lora_base.json.*must stay"):
        load_checkpoint(moved)
    for extra, match in (({"use_dora": True}, "use_dora"), ({"modules_to_save": ["score"]}, "modules_to_save"),
                         ({"peft_type": "IA3"}, "only LoRA")):
        (tmp_path / "adapter").mkdir(exist_ok=True)
        (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", **extra}))
        with pytest.raises(UserError, match=match):
            read_peft_config(tmp_path / "adapter")
