"""Hugging Face interop against the real `transformers` implementation (small random models made on the fly):
logit parity, round trips, greedy generation, reward-model export, sharded loading and errors."""

import json
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")

from jaxllm.errors import UserError  # noqa: E402
from jaxllm.interop.convert import from_hf, to_hf  # noqa: E402
from jaxllm.interop.hf import load_hf_params, spec_from_hf, write_hf  # noqa: E402
from jaxllm.interop.tensor_files import TensorFiles  # noqa: E402
from jaxllm.model import Transformer  # noqa: E402
from jaxllm.model.decode import Sampling, generate  # noqa: E402
from jaxllm.model.scalar import ScalarModel  # noqa: E402
from jaxllm.objectives.reward import sequence_scores  # noqa: E402

LLAMA = dict(vocab_size=41, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=64)
LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 16}
QWEN = dict(vocab_size=43, hidden_size=36, intermediate_size=44, num_hidden_layers=2, num_attention_heads=6,
            max_position_embeddings=64, tie_word_embeddings=False)
# Gemma 2 at odd sizes: 3 layers (local, global, local), window 6, head_dim 10 apart from hidden/heads, a query
# scale apart from head_dim and soft-caps small enough to bite on std-0.2 weights
GEMMA2 = dict(vocab_size=47, hidden_size=28, intermediate_size=44, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, head_dim=10, query_pre_attn_scalar=12, sliding_window=6, max_position_embeddings=64,
              attn_logit_softcapping=3.0, final_logit_softcapping=5.0)
GPT2 = dict(vocab_size=37, n_embd=24, n_layer=2, n_head=3, n_positions=32, bos_token_id=0, eos_token_id=1)
CASES = {
    "gpt2": lambda: tf.GPT2LMHeadModel(tf.GPT2Config(**GPT2)),
    "gpt2-untied": lambda: tf.GPT2LMHeadModel(tf.GPT2Config(**GPT2, tie_word_embeddings=False)),
    "llama-gqa": lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**LLAMA, num_key_value_heads=2, rope_theta=500.0)),
    "llama-tied-mqa-llama3-rope": lambda: tf.LlamaForCausalLM(tf.LlamaConfig(
        **{**LLAMA, "num_hidden_layers": 3}, num_key_value_heads=1, tie_word_embeddings=True, rope_scaling=LLAMA3_SCALING)),
    "llama-linear-rope-head-dim": lambda: tf.LlamaForCausalLM(tf.LlamaConfig(
        **LLAMA, head_dim=12, rope_scaling={"rope_type": "linear", "factor": 4.0})),
    "mistral": lambda: tf.MistralForCausalLM(tf.MistralConfig(**LLAMA, num_key_value_heads=2, sliding_window=None)),
    "mistral-window": lambda: tf.MistralForCausalLM(tf.MistralConfig(**LLAMA, num_key_value_heads=2, sliding_window=7)),
    "llama-attention-mlp-bias": lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**LLAMA, attention_bias=True, mlp_bias=True)),
    "qwen2": lambda: tf.Qwen2ForCausalLM(tf.Qwen2Config(**QWEN, num_key_value_heads=2, rope_theta=1e6)),
    "qwen2-tied": lambda: tf.Qwen2ForCausalLM(tf.Qwen2Config(**{**QWEN, "tie_word_embeddings": True}, num_key_value_heads=1)),
    "qwen3": lambda: tf.Qwen3ForCausalLM(tf.Qwen3Config(**QWEN, num_key_value_heads=2, head_dim=10)),
    "qwen3-window": lambda: tf.Qwen3ForCausalLM(tf.Qwen3Config(**QWEN, num_key_value_heads=3, head_dim=10, use_sliding_window=True,
                                                               sliding_window=5, max_window_layers=0)),
    "gemma2": lambda: tf.Gemma2ForCausalLM(tf.Gemma2Config(**GEMMA2)),
}


UNROLLED_TOO = ("gpt2", "llama-gqa", "mistral-window", "gemma2")  # the unrolled stack too (per-layer windows: int index)


def _hf_model(name, tmp_path, std=0.2):
    torch.manual_seed(0)
    m = CASES[name]()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, std)
    m.eval()
    d = tmp_path / name
    m.save_pretrained(d)
    m.set_attn_implementation("eager")  # the reference; transformers' SDPA path breaks on Qwen3 sliding windows
    return m, d


def _load(d, **spec_kw):
    spec = spec_from_hf(d, **spec_kw)
    model = Transformer(spec)
    abstract = jax.eval_shape(lambda: nn.meta.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]))
    return spec, model, load_hf_params(d, spec, abstract)


def _hf_logits(m, tokens):
    with torch.no_grad():
        return m(torch.tensor(np.asarray(tokens))).logits.float().numpy()


@pytest.mark.parametrize("name", list(CASES))
def test_logits_equal_transformers(name, tmp_path):
    m, d = _hf_model(name, tmp_path)
    tokens = np.random.default_rng(0).integers(0, m.config.vocab_size, (2, 30))
    want = _hf_logits(m, tokens)
    for scan in (True, False) if name in UNROLLED_TOO else (True,):
        spec, model, params = _load(d, scan_layers=scan)
        got = np.asarray(jax.jit(model.apply)({"params": params}, jnp.asarray(tokens)))
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_rope_scaling_is_what_makes_the_llama3_model_match(tmp_path):
    """Negative control: the same weights without the llama3 frequency scaling give different logits."""
    m, d = _hf_model("llama-tied-mqa-llama3-rope", tmp_path)
    tokens = np.random.default_rng(1).integers(0, 41, (1, 30))
    spec, model, params = _load(d, rope_scaling=())
    got = np.asarray(Transformer(spec).apply({"params": params}, jnp.asarray(tokens)))
    assert np.abs(got - _hf_logits(m, tokens)).max() > 1e-2


@pytest.mark.parametrize("name,changes", [("mistral-window", [{"sliding_window": 0}]),
                                          ("gemma2", [{"global_every": 0}, {"attn_softcap": 0.0}, {"final_softcap": 0.0}]),
                                          ("qwen3", [{"qk_norm": False}])])
def test_each_family_choice_is_what_makes_the_model_match(name, changes, tmp_path):
    """Negative controls: dropping one choice (the window, the global layers, a soft-cap, the q/k norms) gives
    different logits, so the parity above exercises it. ``qk_norm`` off needs its scales gone too."""
    import dataclasses

    m, d = _hf_model(name, tmp_path)
    tokens = np.random.default_rng(1).integers(0, m.config.vocab_size, (1, 30))
    want = _hf_logits(m, tokens)
    spec, model, params = _load(d)
    for change in changes:
        p = params
        if change.get("qk_norm") is False:
            p = {**params, "blocks": {**params["blocks"], "attn": {k: v for k, v in params["blocks"]["attn"].items()
                                                                   if k not in ("q_norm", "k_norm")}}}
        got = np.asarray(Transformer(dataclasses.replace(spec, **change)).apply({"params": p}, jnp.asarray(tokens)))
        assert np.abs(got - want).max() > 1e-2, change


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa"])
def test_bfloat16_compute_stays_within_a_kl_bound(name, tmp_path):
    """bf16 compute (float32 parameters): mean KL(transformers fp32 || jaxllm bf16) per token below 1e-3."""
    m, d = _hf_model(name, tmp_path, std=0.05)
    tokens = np.random.default_rng(2).integers(0, m.config.vocab_size, (4, 30))
    spec, model, params = _load(d, dtype="bfloat16")
    got = np.asarray(model.apply({"params": params}, jnp.asarray(tokens)), np.float64)
    want = _hf_logits(m, tokens).astype(np.float64)
    lp, lq = jax.nn.log_softmax(want, -1), jax.nn.log_softmax(got, -1)
    kl = float(np.mean(np.sum(np.exp(lp) * (lp - lq), -1)))
    assert 0 < kl < 1e-3, kl


@pytest.mark.parametrize("name", ["gpt2", "gpt2-untied", "llama-gqa", "llama-tied-mqa-llama3-rope", "mistral-window",
                                  "llama-attention-mlp-bias", "qwen2", "qwen2-tied", "qwen3", "qwen3-window", "gemma2"])
def test_round_trip_through_a_jaxllm_run_gives_identical_tensors(name, tmp_path):
    m, d = _hf_model(name, tmp_path)
    lines = from_hf(d, tmp_path / "run")
    assert "causal LM" in lines[0]
    to_hf(tmp_path / "run", tmp_path / "back")
    back, info = type(m).from_pretrained(tmp_path / "back", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    a, b = m.state_dict(), back.state_dict()
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the saved files themselves: same tensor names and bytes
    ours, theirs = TensorFiles(tmp_path / "back"), TensorFiles(d)
    assert ours.names() == theirs.names()
    for k in theirs.names():
        np.testing.assert_array_equal(ours[k], theirs[k])


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa", "qwen3-window", "gemma2"])
def test_greedy_generation_equals_transformers_generate(name, tmp_path):
    m, d = _hf_model(name, tmp_path, std=0.3)
    spec, model, params = _load(d)
    prompts = [[5, 9, 2, 7], [3, 3, 8, 1, 4, 6, 2]]
    ours = generate(model, params, prompts, jax.random.PRNGKey(0), Sampling(temperature=0.0, max_new_tokens=12),
                    length_multiple=1)
    for p, o in zip(prompts, ours):
        with torch.no_grad():
            ref = m.generate(torch.tensor([p]), max_new_tokens=12, do_sample=False, min_new_tokens=12,
                             eos_token_id=None, pad_token_id=0)[0, len(p):].tolist()
        assert list(o["tokens"]) == ref


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_reward_model_exports_as_a_sequence_classifier(family, tmp_path):
    """A scalar model's score == transformers' *ForSequenceClassification score at the last real token
    (right padding with the pad id); the head bias is dropped with a note, shifting every score by it."""
    from jaxllm.config.schema import ModelConfig
    from jaxllm.model import resolve_spec

    cfg = ModelConfig(family=family, vocab_size=40, n_layers=2, d_model=16, n_heads=2, max_seq_len=32)
    spec = resolve_spec(cfg, backend="cpu")
    model = ScalarModel(spec)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(3), jnp.zeros((1, 4), jnp.int32))["params"])
    params = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.PRNGKey(4), x.shape), params)
    notes = write_hf(params, spec, tmp_path / "rm", scalar=True, pad_id=0, bos_id=2, eos_id=3)
    assert notes and "bias" in notes[0]
    hf, info = tf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    tokens = np.array([[5, 6, 7, 8, 9, 0, 0], [4, 4, 5, 6, 7, 8, 9]])
    mask = (tokens != 0).astype(np.float32)
    ours = np.asarray(sequence_scores(model, params, jnp.asarray(tokens), jnp.asarray(mask)))
    with torch.no_grad():
        theirs = hf(torch.tensor(tokens)).logits[:, 0].numpy()
    np.testing.assert_allclose(ours - float(params["head_bias"][0]), theirs, atol=1e-5)
    # and back in: from_hf reads it as a reward model, head bias 0
    from_hf(tmp_path / "rm", tmp_path / "rm-run")
    assert "name: reward" in (tmp_path / "rm-run" / "config.yaml").read_text()


def test_sharded_checkpoint_loads_onto_an_fsdp_mesh(tmp_path):
    """A multi-file checkpoint (index + shards) loads straight onto 8 devices: each holds its slice only."""
    from jaxllm.config.schema import MeshConfig
    from jaxllm.parallel.mesh import make_mesh
    from jaxllm.train.state import abstract_params
    from jaxllm.parallel.layout import mesh_context

    torch.manual_seed(0)
    m = tf.LlamaForCausalLM(tf.LlamaConfig(**{**LLAMA, "hidden_size": 64, "vocab_size": 64}, num_key_value_heads=2))
    m.save_pretrained(tmp_path / "hf", max_shard_size="20KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    assert len(list((tmp_path / "hf").glob("*.safetensors"))) > 2
    spec = spec_from_hf(tmp_path / "hf")
    mc = MeshConfig(data=1, fsdp=8)
    mesh = make_mesh(mc)
    with mesh_context(mesh, mc.rules):
        params = load_hf_params(tmp_path / "hf", spec, abstract_params(Transformer(spec), mesh, mc.rules))
    emb = params["embed"]
    assert len(emb.addressable_shards) == 8
    assert emb.addressable_shards[0].data.size * 8 == emb.size  # each device holds an eighth, not a copy
    tokens = np.arange(20).reshape(2, 10)
    with mesh_context(mesh, mc.rules):
        got = np.asarray(jax.jit(Transformer(spec).apply)({"params": params}, jnp.asarray(tokens)))
    np.testing.assert_allclose(got, _hf_logits(m, tokens), atol=1e-4)


def test_init_from_takes_a_hugging_face_directory(tmp_path):
    from jaxllm.pretrained import load_params

    m, d = _hf_model("gpt2", tmp_path)
    spec = spec_from_hf(d)
    model = Transformer(spec)
    abstract = jax.eval_shape(lambda: nn.meta.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]))
    params = load_params(str(d), abstract)
    tokens = np.arange(12).reshape(1, 12)
    np.testing.assert_allclose(np.asarray(model.apply({"params": params}, jnp.asarray(tokens))), _hf_logits(m, tokens), atol=1e-4)


def test_bad_checkpoints_get_messages_that_name_the_problem(tmp_path):
    m, d = _hf_model("gpt2", tmp_path)
    cfg = json.loads((d / "config.json").read_text())

    def variant(name, **changes):
        v = tmp_path / name
        shutil.copytree(d, v)
        (v / "config.json").write_text(json.dumps({**cfg, **changes}))
        return v

    with pytest.raises(UserError, match="model_type 'bert' is not supported"):
        spec_from_hf(variant("bert", model_type="bert"))
    with pytest.raises(UserError, match=r"tensor transformer.wte.weight gives shape \(37, 24\) for jaxllm.s embed, which expects \(37, 32\)"):
        _load(variant("wide", n_embd=32, n_head=4))
    with pytest.raises(UserError, match="tensor transformer.h.2.ln_1.weight is missing"):
        _load(variant("deep", n_layer=3))
    with pytest.raises(UserError, match="RoPE scaling type 'yarn' is not supported"):
        spec_from_hf(variant("yarn", model_type="llama", hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                             num_attention_heads=3, max_position_embeddings=32,
                             rope_scaling={"rope_type": "yarn", "factor": 2.0}))
    # a dtype the model cannot use
    fp8 = tmp_path / "fp8"
    fp8.mkdir()
    shutil.copy(d / "config.json", fp8 / "config.json")
    header = json.dumps({"x": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}).encode()
    (fp8 / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0\0")
    with pytest.raises(UserError, match="tensor x has dtype F8_E4M3, which jaxllm cannot use"):
        TensorFiles(fp8)["x"]
    # a sharded checkpoint with a shard missing
    torch.manual_seed(0)
    tf.GPT2LMHeadModel(tf.GPT2Config(**GPT2)).save_pretrained(tmp_path / "sharded", max_shard_size="10KB")
    shard = sorted((tmp_path / "sharded").glob("*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(UserError, match=f"lists shard {shard.name}, which is not in"):
        TensorFiles(tmp_path / "sharded")
    with pytest.raises(UserError, match="no such directory.*Hugging Face model directory"):
        from jaxllm.pretrained import load_params
        load_params(str(tmp_path / "nowhere"), {})


def test_safetensors_writer_is_read_back_by_the_safetensors_package(tmp_path):
    from safetensors.torch import load_file

    from jaxllm.interop.tensor_files import save_file

    rng = np.random.default_rng(0)
    tensors = {"a.bf16": rng.normal(size=(3, 5)).astype(jnp.bfloat16), "b.f16": rng.normal(size=(4,)).astype(np.float16),
               "c.i32": np.arange(6, dtype=np.int32).reshape(2, 3), "d.f32": rng.normal(size=(2, 2, 2)).astype(np.float32)}
    save_file(tensors, tmp_path / "x.safetensors", {"format": "pt"})
    back = load_file(tmp_path / "x.safetensors")
    for k, v in tensors.items():
        np.testing.assert_array_equal(back[k].float().numpy(), np.asarray(v, np.float32))
    ours = TensorFiles(tmp_path)
    for k, v in tensors.items():
        assert ours[k].dtype == v.dtype
        np.testing.assert_array_equal(ours[k], v)


@pytest.mark.slow
def test_a_llama_checkpoint_converts_fine_tunes_chats_and_exports(tmp_path, capsys):
    """The user's path: an HF Llama dir with its SentencePiece tokenizer (Llama's ids, no chat pieces) ->
    `jaxllm convert from-hf` -> `jaxllm train` SFT on it -> `jaxllm generate` (chat template) ->
    `jaxllm convert to-hf` -> transformers loads the export, whose logits equal jaxllm's."""
    import io

    import sentencepiece as spm

    from jaxllm.cli import main
    from jaxllm.world.corpus import generate_documents
    from jaxllm.infer.load import load_checkpoint

    sp = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(generate_documents(60_000, 0)), model_writer=sp, vocab_size=512,
                                   pad_id=-1, unk_id=0, bos_id=1, eos_id=2, byte_fallback=True, minloglevel=2)
    hf_dir = tmp_path / "hf-llama"
    torch.manual_seed(0)
    m = tf.LlamaForCausalLM(tf.LlamaConfig(**{**LLAMA, "vocab_size": 512, "max_position_embeddings": 128},
                                           num_key_value_heads=2, bos_token_id=1, eos_token_id=2))
    m.save_pretrained(hf_dir)
    (hf_dir / "tokenizer.model").write_bytes(sp.getvalue())

    conv = tmp_path / "converted"
    assert main(["convert", "from-hf", str(hf_dir), str(conv)]) == 0
    assert (conv / "tokenizer.model").is_file() and (conv / "model.yaml").is_file()
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    sft_cfg = tmp_path / "sft.yaml"
    sft_cfg.write_text(f"base: [{root}/configs/sft/demo.yaml, {conv}/model.yaml]\ninit_from: {conv}\n"
                       f"run:\n  dir: {tmp_path}/sft\n")
    assert main(["train", str(sft_cfg), "data.builtin.conversations=300", "data.builtin.behaviour_chats=0",
                 "train.steps=4", "train.batch_size=8", "train.seq_len=64", "train.log_every=2", "train.eval_every=0",
                 "train.eval_batches=1", "train.sample_tokens=0", "train.progress=off", "optimizer.warmup_steps=1",
                 "log.tensorboard=false", "checkpoint.every=4"]) == 0
    loaded = load_checkpoint(tmp_path / "sft")
    assert loaded.tokenizer.eos_id == 2 and not loaded.chat_template.reserved
    assert main(["generate", str(tmp_path / "sft"), "--prompt", "What is the capital of France?",
                 "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().out.strip()

    assert main(["convert", "to-hf", str(tmp_path / "sft"), str(tmp_path / "export")]) == 0
    back, info = tf.AutoModelForCausalLM.from_pretrained(tmp_path / "export", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert back.config.eos_token_id == 2 and (tmp_path / "export" / "tokenizer.model").is_file()
    tokens = np.array([loaded.chat_template.prompt([__import__("jaxllm.data.chat", fromlist=["user"]).user("Hi")])])
    ours = np.asarray(loaded.model.apply({"params": jax.device_get(loaded.params)}, jnp.asarray(tokens)))
    np.testing.assert_allclose(ours, _hf_logits(back, tokens), atol=1e-4)
    # fine-tuning moved the weights away from the converted ones
    assert not np.allclose(_hf_logits(back, tokens), _hf_logits(m, tokens), atol=1e-3)

    # LoRA straight from the HF dir: `to-hf` writes a PEFT adapter for it, `--merge` the merged model
    peft = pytest.importorskip("peft")
    assert main(["train", str(sft_cfg), f"init_from={hf_dir}", f"run.dir={tmp_path}/lora", "model.lora.rank=4",
                 "model.lora.targets=[q,k,v,o,gate,up,proj,lm_head,embed]", "optimizer.lr=1e-2",
                 "data.builtin.conversations=300", "data.builtin.behaviour_chats=0", "train.steps=4", "train.batch_size=8",
                 "train.seq_len=64", "train.log_every=2", "train.eval_every=0", "train.eval_batches=1",
                 "train.sample_tokens=0", "train.progress=off", "optimizer.warmup_steps=1", "log.tensorboard=false",
                 "checkpoint.every=4"]) == 0
    lora_run = load_checkpoint(tmp_path / "lora")
    ours = np.asarray(lora_run.model.apply({"params": jax.device_get(lora_run.params)}, jnp.asarray(tokens)))
    assert main(["convert", "to-hf", str(tmp_path / "lora"), str(tmp_path / "adapter")]) == 0
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(hf_dir.absolute())
    wrapped = peft.PeftModel.from_pretrained(tf.AutoModelForCausalLM.from_pretrained(hf_dir), tmp_path / "adapter").eval()
    np.testing.assert_allclose(_hf_logits(wrapped, tokens), ours, atol=1e-4)
    assert not np.allclose(ours, _hf_logits(m, tokens), atol=1e-3)
    assert main(["convert", "to-hf", str(tmp_path / "lora"), str(tmp_path / "lora-merged"), "--merge"]) == 0
    np.testing.assert_allclose(_hf_logits(tf.AutoModelForCausalLM.from_pretrained(tmp_path / "lora-merged"), tokens), ours,
                               atol=1e-4)


@pytest.mark.parametrize("name", ["gpt2", pytest.param("gpt2-untied", marks=pytest.mark.slow),
                                  pytest.param("llama-gqa", marks=pytest.mark.slow)])
def test_a_lora_adapter_is_the_peft_adapter_both_ways(name, tmp_path):
    """jaxllm adapters (random, every module the family has; the embedding where the head is untied) written
    as a PEFT adapter: `peft.PeftModel` on the transformers base gives jaxllm's logits; `convert from-hf` of
    the adapter dir (merged onto its base) and ``init_from`` = the adapter dir give them too. GPT-2's fused
    c_attn takes q, k and v as one rank-3r adapter; Qwen and Gemma use Llama's module names (checked by hand
    2026-12-06: qwen3 7e-7, gemma2 5e-6)."""
    import dataclasses

    peft = pytest.importorskip("peft")
    from jaxllm.interop.peft import write_peft
    from jaxllm.model import lora
    from jaxllm.pretrained import load_params

    m, d = _hf_model(name, tmp_path)
    spec, _, params = _load(d)
    mlp = ["fc", "proj"] if spec.family == "gpt2" else ["gate", "up", "proj"]
    targets = ("q", "k", "v", "o", *mlp) + (() if spec.tie_embeddings else ("lm_head", "embed"))
    lspec = dataclasses.replace(spec, lora_rank=3, lora_alpha=6.0, lora_targets=targets)
    full = jax.jit(lambda: nn.meta.unbox(Transformer(lspec).init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]))()
    leaves, tree = jax.tree.flatten(lora.split(full)[0])
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    adapters = jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    write_peft(adapters, lspec, tmp_path / "adapter", str(d))
    tokens = np.random.default_rng(0).integers(0, m.config.vocab_size, (2, 20))
    ours = np.asarray(jax.jit(Transformer(lspec).apply)({"params": lora.overlay(params, adapters)}, jnp.asarray(tokens)))
    assert np.abs(ours - _hf_logits(m, tokens)).max() > 0.1  # the adapters change the model
    wrapped = peft.PeftModel.from_pretrained(m, tmp_path / "adapter").eval()
    np.testing.assert_allclose(_hf_logits(wrapped, tokens), ours, atol=1e-4)
    plain = jax.jit(Transformer(spec).apply)
    from_hf(tmp_path / "adapter", tmp_path / "merged")
    for source in ("merged", "adapter"):  # the converted run; the adapter itself as init_from
        got = plain({"params": load_params(str(tmp_path / source), jax.eval_shape(lambda: params))}, jnp.asarray(tokens))
        np.testing.assert_allclose(np.asarray(got), ours, atol=1e-4)


def test_bfloat16_files_in_and_out(tmp_path):
    """A bf16 HF checkpoint loads exactly (upcast to float32 parameters); `to-hf --dtype bfloat16` writes bf16
    tensors that transformers loads equal to jaxllm's rounded weights."""
    m, d = _hf_model("llama-gqa", tmp_path)
    m.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    assert TensorFiles(tmp_path / "bf16")["model.norm.weight"].dtype == jnp.bfloat16
    spec, model, params = _load(tmp_path / "bf16")
    np.testing.assert_array_equal(params["blocks"]["attn"]["q"]["kernel"][1],
                                  m.model.layers[1].self_attn.q_proj.weight.detach().float().numpy().T)
    write_hf(params, spec, tmp_path / "out", dtype="bfloat16")
    back = tf.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.bfloat16)
    for k, v in m.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_unsupported_architectures_and_choices_name_themselves():
    """Config-level refusals, both ways: the model type (listing the supported ones), a layer pattern, an
    activation, and an export whose choices the Hugging Face class cannot express."""
    import dataclasses

    from jaxllm.interop.hf import hf_config_from_spec, model_config_from_hf
    from jaxllm.model import resolve_spec

    with pytest.raises(UserError, match=r"model_type 'phi3' is not supported \(architectures: Phi3ForCausalLM\); "
                                        r"jaxllm converts model_type gpt2, llama, mistral, qwen2, qwen3, gemma2"):
        model_config_from_hf({"model_type": "phi3", "architectures": ["Phi3ForCausalLM"]})
    gemma = dict(model_type="gemma2", hidden_size=8, num_attention_heads=2, num_hidden_layers=3, intermediate_size=8,
                 vocab_size=10, max_position_embeddings=16, sliding_window=4)
    with pytest.raises(UserError, match=r"layer_types \['full_attention', 'sliding_attention', 'sliding_attention'\] "
                                        "is not a pattern jaxllm supports"):
        model_config_from_hf({**gemma, "layer_types": ["full_attention", "sliding_attention", "sliding_attention"]})
    with pytest.raises(UserError, match="hidden_activation 'gelu' is not supported for gemma2"):
        model_config_from_hf({**gemma, "hidden_activation": "gelu"})
    cfg = model_config_from_hf(gemma)
    assert (cfg.sliding_window, cfg.global_every) == (4, 2)  # Gemma 2's default: local, global, local
    qwen = resolve_spec(model_config_from_hf({**gemma, "model_type": "qwen2"}), backend="cpu")
    with pytest.raises(UserError, match="a qwen2 model with qkv_bias=True, out_bias=True, mlp_bias=False has no"):
        hf_config_from_spec(dataclasses.replace(qwen, out_bias=True))
    with pytest.raises(UserError, match="attn_softcap/final_softcap/query_pre_attn_scalar are Gemma's"):
        hf_config_from_spec(dataclasses.replace(qwen, final_softcap=30.0))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen3", "gemma2"])
def test_a_qwen_or_gemma_with_its_own_tokenizer_converts_fine_tunes_aligns_chats_and_exports(family, tmp_path, capsys,
                                                                                             monkeypatch):
    """The user's path for a model with a ``tokenizer.json`` and a chat template: `convert from-hf` -> SFT on chats
    (the model's template, assistant-only loss) -> DPO from the SFT run (qwen3) -> `jaxllm chat` -> `convert
    to-hf` -> transformers loads model and tokenizer: logits equal jaxllm's, AutoTokenizer's ids and chat
    template equal the source's."""
    from test_tokenizers import CONV, STYLES, _bpe_dir

    from jaxllm.cli import main
    from jaxllm.data.model_template import ModelChatTemplate
    from jaxllm.infer.load import load_checkpoint
    from jaxllm.world.corpus import generate_documents

    style = "qwen" if family == "qwen3" else "llama3"
    source, specials, config = STYLES[style]
    hf_dir = _bpe_dir(tmp_path / "hf", list(generate_documents(40_000, 0)), specials, {**config, "chat_template": source})
    torch.manual_seed(0)
    vocab = 400 + 4  # the tokenizer's 400 plus unused rows, as real checkpoints pad their embeddings
    m = (tf.Qwen3ForCausalLM(tf.Qwen3Config(**{**QWEN, "vocab_size": vocab, "max_position_embeddings": 128},
                                            num_key_value_heads=2, head_dim=10)) if family == "qwen3" else
         tf.Gemma2ForCausalLM(tf.Gemma2Config(**{**GEMMA2, "vocab_size": vocab, "max_position_embeddings": 128})))
    m.save_pretrained(hf_dir)

    conv = tmp_path / "converted"
    assert main(["convert", "from-hf", str(hf_dir), str(conv)]) == 0
    assert "its chat template is used (assistant turns found by its {% generation %} markers)" in capsys.readouterr().out
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    common = ["train.batch_size=8", "train.log_every=2", "train.eval_every=0", "train.eval_batches=1",
              "train.sample_tokens=0", "train.progress=off", "optimizer.warmup_steps=1", "log.tensorboard=false"]
    (tmp_path / "sft.yaml").write_text(f"base: [{root}/configs/sft/demo.yaml, {conv}/model.yaml]\ninit_from: {conv}\n"
                                       f"run:\n  dir: {tmp_path}/sft\n")
    assert main(["train", str(tmp_path / "sft.yaml"), "data.builtin.conversations=300", "data.builtin.behaviour_chats=0",
                 "train.steps=4", "train.seq_len=64", "checkpoint.every=4", *common]) == 0
    last = tmp_path / "sft"
    if family == "qwen3":
        (tmp_path / "dpo.yaml").write_text(f"base: [{root}/configs/dpo/demo.yaml, {conv}/model.yaml]\n"
                                           f"init_from: {tmp_path}/sft\nrun:\n  dir: {tmp_path}/dpo\n")
        assert main(["train", str(tmp_path / "dpo.yaml"), "data.builtin.rankings=60", "train.steps=2",
                     "train.seq_len=96", "checkpoint.every=2", *common]) == 0
        last = tmp_path / "dpo"
    loaded = load_checkpoint(last)
    assert isinstance(loaded.chat_template, ModelChatTemplate)
    assert loaded.tokenizer.eos_id == loaded.tokenizer.piece_id(config["eos_token"])
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("What is the capital of France?\nAnd of Peru?\n/quit\n"))
    assert main(["chat", str(last), "--max-new-tokens", "6", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.count("you> ") == 3

    export = tmp_path / "export"
    assert main(["convert", "to-hf", str(last), str(export)]) == 0
    back, info = tf.AutoModelForCausalLM.from_pretrained(export, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    back.set_attn_implementation("eager")
    tokens = np.array([loaded.chat_template.prompt(CONV[:2])])
    ours = np.asarray(loaded.model.apply({"params": jax.device_get(loaded.params)}, jnp.asarray(tokens)))
    np.testing.assert_allclose(ours, _hf_logits(back, tokens), atol=1e-4)
    assert not np.allclose(_hf_logits(back, tokens), _hf_logits(m, tokens), atol=1e-3)  # training moved the weights
    ref, src = tf.AutoTokenizer.from_pretrained(export), tf.AutoTokenizer.from_pretrained(hf_dir)
    messages = [{"role": x.role, "content": x.content} for x in CONV]
    kw = dict(tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assert ref.apply_chat_template(messages, **kw) == src.apply_chat_template(messages, **kw)
    assert ref("Hello there, 2024!")["input_ids"] == src("Hello there, 2024!")["input_ids"]
    generation = json.loads((export / "generation_config.json").read_text())
    assert loaded.tokenizer.piece_id(config["eos_token"]) in np.atleast_1d(generation["eos_token_id"])
