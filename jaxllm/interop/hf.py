"""Hugging Face checkpoints <-> jaxllm parameters: GPT-2, Llama, Mistral, Qwen2/2.5, Qwen3 and Gemma 2.

Reading (``from_hf``): ``config.json`` becomes a `ModelConfig`; every jaxllm parameter gets a getter that
slices the memory-mapped safetensors (`tensor_files.TensorFiles`), so `load_hf_params` builds each sharded
array from the slices its devices hold (``jax.make_array_from_callback``): no full copy per device, and
only the bytes a host needs are read. Writing (``to_hf``): parameters on the host become HF tensors,
written as safetensors (sharded with an index above ``max_shard_bytes``) plus ``config.json`` that
``transformers`` loads with ``from_pretrained`` (causal LM, or sequence classification for scalar models).

Layout facts the mapping rests on:
- GPT-2 keeps ``Conv1D`` weights as ``[in, out]`` (jaxllm's kernel layout) and fuses q, k, v in ``c_attn``;
- Llama (and Mistral, Qwen, Gemma) keep ``nn.Linear`` weights as ``[out, in]`` (transposed here); their q/k
  rows are already in the rotate-half order jaxllm's RoPE uses;
- Gemma 2 names its four norms input/post_attention/pre_feedforward/post_feedforward; in Llama
  ``post_attention_layernorm`` is the MLP's pre-norm;
- a scalar model (reward model, critic) is a trunk plus ``score.weight [1, embed]`` (no bias in HF).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from jaxllm.config.schema import ModelConfig
from jaxllm.errors import UserError
from jaxllm.interop.tensor_files import INDEX, TensorFiles, save_file
from jaxllm.model.spec import ModelSpec

Getter = Callable[[int | None], np.ndarray]  # layer index (None for non-layer tensors) -> array in jaxllm layout


# -- config.json <-> ModelConfig --------------------------------------------------------------------------------

def is_hf_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / "config.json").is_file() and ((p / INDEX).is_file() or any(p.glob("*.safetensors")))


def read_hf_config(directory: str | Path) -> dict:
    p = Path(directory) / "config.json"
    if not p.is_file():
        raise UserError(f"{directory}: no config.json; give a Hugging Face model directory (config.json + *.safetensors).")
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        raise UserError(f"{p}: not valid JSON ({e}).") from None


def _rope_fields(hf: dict, where: str) -> dict:
    """RoPE theta and scaling from either transformers 5's ``rope_parameters`` or 4.x's ``rope_theta``/``rope_scaling``."""
    params = dict(hf.get("rope_parameters") or {})
    scaling = dict(hf.get("rope_scaling") or {})
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    src = params if params.get("rope_type") else scaling
    out = {"rope_theta": float(theta)}
    if kind == "default":
        return out
    if kind == "linear":
        return {**out, "rope_scaling": "linear", "rope_scaling_factor": float(src["factor"])}
    if kind == "llama3":
        return {**out, "rope_scaling": "llama3", "rope_scaling_factor": float(src["factor"]),
                "rope_low_freq_factor": float(src["low_freq_factor"]), "rope_high_freq_factor": float(src["high_freq_factor"]),
                "rope_original_max_len": int(src["original_max_position_embeddings"])}
    raise UserError(f"{where}: RoPE scaling type {kind!r} is not supported (supported: default, linear, llama3).")


_ARCH = {"gpt2": "GPT2", "llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3", "gemma2": "Gemma2"}
SUPPORTED = "gpt2, llama, mistral, qwen2, qwen3, gemma2"


def _layer_windows(hf: dict, kind: str, n_layers: int, where: str) -> dict:
    """``sliding_window`` / ``global_every`` from HF's ``sliding_window`` and per-layer ``layer_types``."""
    window = hf.get("sliding_window")
    if kind in ("qwen2", "qwen3") and not hf.get("use_sliding_window", False):
        window = None  # Qwen configs carry a sliding_window they do not use
    if not window:
        return {}
    types = hf.get("layer_types")
    if types is None:
        if kind == "gemma2":
            types = ["full_attention" if (i + 1) % 2 == 0 else "sliding_attention" for i in range(n_layers)]
        elif kind in ("qwen2", "qwen3"):
            first = hf.get("max_window_layers", n_layers)
            types = ["sliding_attention" if i >= first else "full_attention" for i in range(n_layers)]
        else:
            types = ["sliding_attention"] * n_layers
    local = [t == "sliding_attention" for t in types]
    if not any(local):
        return {}
    if all(local):
        return {"sliding_window": int(window)}
    for every in range(2, n_layers + 1):
        if all(local[i] == ((i + 1) % every != 0) for i in range(n_layers)):
            return {"sliding_window": int(window), "global_every": every}
    raise UserError(f"{where}: layer_types {types} is not a pattern jaxllm supports: all layers local, or every "
                    "n-th layer global and the rest local (Gemma 2: every 2nd, Gemma 3: every 6th).")


def model_config_from_hf(hf: dict, where: str = "config.json") -> ModelConfig:
    """The `ModelConfig` that reproduces the HF model exactly (float32 parameters)."""
    kind = hf.get("model_type")
    if kind == "gpt2":
        act = hf.get("activation_function", "gelu_new")
        bad = [k for k, want in (("scale_attn_by_inverse_layer_idx", False), ("reorder_and_upcast_attn", False),
                                 ("scale_attn_weights", True), ("add_cross_attention", False)) if hf.get(k, want) != want]
        if act not in ("gelu_new", "gelu_pytorch_tanh") or bad:
            raise UserError(f"{where}: GPT-2 with {'activation ' + act if bad == [] else bad[0] + '=' + str(hf[bad[0]])} "
                            "is not supported (jaxllm's gpt2 family: tanh GELU, 1/sqrt(head_dim) attention scale).")
        d = hf["n_embd"]
        return ModelConfig(family="gpt2", vocab_size=hf["vocab_size"], n_layers=hf["n_layer"], d_model=d, n_heads=hf["n_head"],
                           d_ff=hf.get("n_inner") or 4 * d, max_seq_len=hf["n_positions"],
                           norm_eps=hf.get("layer_norm_epsilon", 1e-5), tie_embeddings=hf.get("tie_word_embeddings", True),
                           use_bias=True)
    if kind not in ("llama", "mistral", "qwen2", "qwen3", "gemma2"):
        arch = ", ".join(hf.get("architectures") or []) or "none listed"
        raise UserError(f"{where}: model_type {kind!r} is not supported (architectures: {arch}); "
                        f"jaxllm converts model_type {SUPPORTED}.")
    act_key = "hidden_activation" if kind == "gemma2" else "hidden_act"
    act, want_act = hf.get(act_key) or hf.get("hidden_act"), ("gelu_pytorch_tanh" if kind == "gemma2" else "silu")
    if act not in (None, want_act):
        raise UserError(f"{where}: {act_key} {act!r} is not supported for {kind} (jaxllm's {kind} uses {want_act}).")
    d, heads, n_layers = hf["hidden_size"], hf["num_attention_heads"], hf["num_hidden_layers"]
    attn_bias = bool(hf.get("attention_bias", False))
    biases = {"qkv_bias": True, "out_bias": False} if kind == "qwen2" else {"qkv_bias": attn_bias, "out_bias": attn_bias}
    family = "llama" if kind == "mistral" else kind
    extra = {}
    if kind == "gemma2":
        extra = {"attn_softcap": float(hf.get("attn_logit_softcapping") or 0.0),
                 "final_softcap": float(hf.get("final_logit_softcapping") or 0.0),
                 "query_pre_attn_scalar": float(hf.get("query_pre_attn_scalar") or (hf.get("head_dim") or d // heads))}
    return ModelConfig(family=family, vocab_size=hf["vocab_size"], n_layers=n_layers, d_model=d,
                       n_heads=heads, n_kv_heads=hf.get("num_key_value_heads") or heads,
                       head_dim=hf.get("head_dim") or d // heads, d_ff=hf["intermediate_size"],
                       max_seq_len=hf["max_position_embeddings"], norm_eps=hf.get("rms_norm_eps", 1e-6),
                       tie_embeddings=bool(hf.get("tie_word_embeddings", kind == "gemma2")), use_bias=False,
                       mlp_bias=bool(hf.get("mlp_bias", False)), **biases,
                       **_layer_windows(hf, kind, n_layers, where), **extra, **_rope_fields(hf, where))


def _int_if_whole(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x  # transformers' Gemma2Config checks for an int


def _hf_model_type(spec: ModelSpec) -> str:
    if spec.family == "llama" and spec.sliding_window:
        return "mistral"
    return spec.family


def _check_exportable(spec: ModelSpec, kind: str) -> None:
    """Refuse a spec whose choices the HF class of ``kind`` cannot express, naming the keys."""
    qkv, out, mlp = spec.bias("qkv"), spec.bias("out"), spec.bias("mlp")
    if kind == "qwen2":
        if (qkv, out, mlp) != (True, False, False):
            raise UserError(f"a qwen2 model with qkv_bias={qkv}, out_bias={out}, mlp_bias={mlp} has no Hugging Face "
                            "equivalent (Qwen2 biases q/k/v only).")
    elif qkv != out:
        raise UserError(f"a {spec.family} model with qkv_bias={qkv} but out_bias={out} has no Hugging Face equivalent "
                        f"({kind}'s attention_bias covers q, k, v and o alike).")
    if mlp and kind not in ("llama", "mistral"):
        raise UserError(f"a {spec.family} model with mlp_bias = true has no Hugging Face equivalent.")
    if kind == "mistral" and spec.global_every:
        raise UserError("a llama-family model with model.global_every has no Hugging Face equivalent (Mistral's window "
                        "covers every layer).")
    if kind != "gemma2" and (spec.attn_softcap or spec.final_softcap or spec.query_pre_attn_scalar):
        raise UserError(f"model.attn_softcap/final_softcap/query_pre_attn_scalar are Gemma's; Hugging Face's {kind} has "
                        "none of them.")


def hf_config_from_spec(spec: ModelSpec, scalar: bool = False, pad_id: int | None = None,
                        bos_id: int | None = None, eos_id: int | None = None) -> dict:
    """``config.json`` for ``spec``: a causal LM, or (``scalar``) a one-label sequence classifier."""
    kind = _hf_model_type(spec)
    arch = _ARCH[kind] + ("ForSequenceClassification" if scalar else "LMHeadModel" if kind == "gpt2" else "ForCausalLM")
    common = {"architectures": [arch], "vocab_size": spec.vocab_size, "tie_word_embeddings": spec.tie_embeddings,
              "pad_token_id": pad_id, "bos_token_id": bos_id, "eos_token_id": eos_id, "dtype": "float32"}
    if scalar:
        common.update(num_labels=1, id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    if kind == "gpt2":
        if spec.head_dim * spec.n_heads != spec.d_model:
            raise UserError(f"model.head_dim = {spec.head_dim} x n_heads {spec.n_heads} != d_model {spec.d_model}: "
                            "Hugging Face's GPT-2 has no separate head width.")
        return {**common, "model_type": "gpt2", "n_embd": spec.d_model, "n_layer": spec.n_layers, "n_head": spec.n_heads,
                "n_inner": spec.d_ff, "n_positions": spec.max_seq_len, "layer_norm_epsilon": spec.norm_eps,
                "activation_function": "gelu_new", "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    _check_exportable(spec, kind)
    rope = {"rope_type": "default", "rope_theta": spec.rope_theta}
    if spec.rope_scaling:
        scaling, factor, low, high, original = spec.rope_scaling
        rope = {**rope, "rope_type": scaling, "factor": factor}
        if scaling == "llama3":
            rope.update(low_freq_factor=low, high_freq_factor=high, original_max_position_embeddings=original)
    out = {**common, "model_type": kind, "hidden_size": spec.d_model, "intermediate_size": spec.d_ff,
           "num_hidden_layers": spec.n_layers, "num_attention_heads": spec.n_heads, "num_key_value_heads": spec.n_kv_heads,
           "head_dim": spec.head_dim, "max_position_embeddings": spec.max_seq_len, "rms_norm_eps": spec.norm_eps,
           "rope_theta": spec.rope_theta, "rope_parameters": rope, **({"rope_scaling": rope} if spec.rope_scaling else {})}
    if kind != "qwen2":
        out["attention_bias"] = spec.bias("qkv")
    if kind in ("llama", "mistral"):
        out.update(hidden_act="silu", mlp_bias=spec.bias("mlp"))
    if kind == "mistral":
        out["sliding_window"] = spec.sliding_window
    types = [("sliding_attention" if spec.layer_window(i) else "full_attention") for i in range(spec.n_layers)]
    if kind in ("qwen2", "qwen3"):
        out.update(hidden_act="silu", use_sliding_window=bool(spec.sliding_window), sliding_window=spec.sliding_window or None,
                   max_window_layers=spec.n_layers if not spec.sliding_window else 0, layer_types=types)
    if kind == "gemma2":
        out.update(hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=_int_if_whole(spec.query_pre_attn_scalar or spec.head_dim),
                   attn_logit_softcapping=spec.attn_softcap or None, final_logit_softcapping=spec.final_softcap or None,
                   sliding_window=spec.sliding_window or None, layer_types=types)
    return out


# -- tensor names ----------------------------------------------------------------------------------------------

def _gpt2_names(spec: ModelSpec) -> dict[tuple, tuple[str, Callable]]:
    """jaxllm leaf path (per layer, "L" marks the layer) -> (HF name with {i}, HF array -> jaxllm array)."""
    d = spec.d_model
    ident = lambda a: a  # noqa: E731
    out = {("embed",): ("wte.weight", ident), ("pos_embed",): ("wpe.weight", ident),
           ("final_norm", "scale"): ("ln_f.weight", ident), ("final_norm", "bias"): ("ln_f.bias", ident)}
    for ours, theirs in (("attn_norm", "ln_1"), ("mlp_norm", "ln_2")):
        out[("L", ours, "scale")] = (f"h.{{i}}.{theirs}.weight", ident)
        out[("L", ours, "bias")] = (f"h.{{i}}.{theirs}.bias", ident)
    for j, name in enumerate("qkv"):
        out[("L", "attn", name, "kernel")] = ("h.{i}.attn.c_attn.weight", lambda a, j=j: a[:, j * d:(j + 1) * d])
        out[("L", "attn", name, "bias")] = ("h.{i}.attn.c_attn.bias", lambda a, j=j: a[j * d:(j + 1) * d])
    for ours, theirs in ((("attn", "o"), "attn.c_proj"), (("mlp", "fc"), "mlp.c_fc"), (("mlp", "proj"), "mlp.c_proj")):
        out[("L", *ours, "kernel")] = (f"h.{{i}}.{theirs}.weight", ident)
        out[("L", *ours, "bias")] = (f"h.{{i}}.{theirs}.bias", ident)
    if not spec.tie_embeddings:
        out[("lm_head", "kernel")] = ("lm_head.weight", lambda a: a.T)
    return out


def _llama_names(spec: ModelSpec) -> dict[tuple, tuple[str, Callable]]:
    """Llama, Mistral, Qwen2/3 and Gemma 2: one layout, with biases, q/k norms and post-norms where the spec has them."""
    ident = lambda a: a  # noqa: E731
    tr = lambda a: a.T  # noqa: E731
    gemma = spec.post_norms
    out = {("embed",): ("embed_tokens.weight", ident), ("final_norm", "scale"): ("norm.weight", ident),
           ("L", "attn_norm", "scale"): ("layers.{i}.input_layernorm.weight", ident),
           ("L", "mlp_norm", "scale"): ("layers.{i}.pre_feedforward_layernorm.weight" if gemma
                                        else "layers.{i}.post_attention_layernorm.weight", ident)}
    if gemma:
        out[("L", "attn_post_norm", "scale")] = ("layers.{i}.post_attention_layernorm.weight", ident)
        out[("L", "mlp_post_norm", "scale")] = ("layers.{i}.post_feedforward_layernorm.weight", ident)
    for name in "qkvo":
        out[("L", "attn", name, "kernel")] = (f"layers.{{i}}.self_attn.{name}_proj.weight", tr)
        if spec.bias("out" if name == "o" else "qkv"):
            out[("L", "attn", name, "bias")] = (f"layers.{{i}}.self_attn.{name}_proj.bias", ident)
    if spec.qk_norm:
        for name in "qk":
            out[("L", "attn", f"{name}_norm", "scale")] = (f"layers.{{i}}.self_attn.{name}_norm.weight", ident)
    for ours, theirs in (("gate", "gate_proj"), ("up", "up_proj"), ("proj", "down_proj")):
        out[("L", "mlp", ours, "kernel")] = (f"layers.{{i}}.mlp.{theirs}.weight", tr)
        if spec.bias("mlp"):
            out[("L", "mlp", ours, "bias")] = (f"layers.{{i}}.mlp.{theirs}.bias", ident)
    if not spec.tie_embeddings:
        out[("lm_head", "kernel")] = ("lm_head.weight", tr)
    return out


def _names(spec: ModelSpec) -> dict:
    return _gpt2_names(spec) if spec.family == "gpt2" else _llama_names(spec)


def _trunk_prefix(spec: ModelSpec) -> str:
    return "transformer." if spec.family == "gpt2" else "model."


def _hf_name(spec: ModelSpec, name: str, i: int | None) -> str:
    full = name.format(i=i) if i is not None else name
    return full if full.startswith("lm_head") else _trunk_prefix(spec) + full


def _leaf_path(path: tuple, spec: ModelSpec, layer: int | None) -> tuple:
    if path[0] != "L":
        return path
    return ("blocks", *path[1:]) if spec.scan_layers else (f"block_{layer}", *path[1:])


# -- reading ----------------------------------------------------------------------------------------------------

class _Source:
    """HF tensors by name, with the name prefix the files actually use (old GPT-2 files have none)."""

    def __init__(self, files: TensorFiles, spec: ModelSpec, where: str):
        self.files, self.spec, self.where = files, spec, where
        prefix = _trunk_prefix(spec)
        self.strip = not any(n.startswith(prefix) for n in files.names())

    def get(self, hf_name: str) -> np.ndarray:
        name = hf_name[len(_trunk_prefix(self.spec)):] if self.strip and not hf_name.startswith("lm_head") else hf_name
        if name not in self.files:
            raise UserError(f"{self.where}: tensor {name} is missing from the safetensors files (model_type "
                            f"{self.spec.family}, {self.spec.n_layers} layers); the checkpoint is incomplete or another architecture.")
        return self.files[name]


def _expected_shapes(spec: ModelSpec, scalar: bool = False) -> dict[tuple, tuple]:
    from jaxllm.model import Transformer
    from jaxllm.model.scalar import ScalarModel
    import flax.linen as nn
    import jax.numpy as jnp

    model = ScalarModel(spec) if scalar else Transformer(spec)
    shapes = jax.eval_shape(lambda: nn.meta.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]))
    flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
    return {tuple(k.key for k in path): tuple(v.shape) for path, v in flat}


def hf_getters(directory: str | Path, spec: ModelSpec, scalar: bool = False) -> dict[tuple, Callable[[tuple], np.ndarray]]:
    """jaxllm leaf path -> ``index -> np.ndarray`` slice of that leaf (in jaxllm layout, the leaf's dtype not yet
    applied), reading only the sliced bytes. Shapes are checked against ``spec`` first, naming the HF tensor."""
    where = str(directory)
    src = _Source(TensorFiles(directory), spec, where)
    want = _expected_shapes(spec, scalar)
    out: dict[tuple, Callable] = {}
    trunk = ("trunk",) if scalar else ()
    for path, (name, fn) in _names(spec).items():
        if scalar and path[0] == "lm_head":
            continue
        layers = range(spec.n_layers) if path[0] == "L" else [None]
        for i in layers:
            hf_name = _hf_name(spec, name, i)
            arr = fn(src.get(hf_name))
            leaf = (*trunk, *_leaf_path(path, spec, i))
            expect = want[leaf][1:] if (path[0] == "L" and spec.scan_layers) else want[leaf]
            if tuple(arr.shape) != tuple(expect):
                raise UserError(f"{where}: tensor {hf_name} gives shape {tuple(arr.shape)} for jaxllm's "
                                f"{'/'.join(leaf)}, which expects {tuple(expect)}; config.json and the weights disagree.")
        if path[0] == "L" and spec.scan_layers:
            out[(*trunk, *_leaf_path(path, spec, 0))] = (
                lambda idx, name=name, fn=fn: np.stack([fn(src.get(_hf_name(spec, name, i)))[idx[1:]]
                                                        for i in range(spec.n_layers)[idx[0]]]))
        else:
            for i in layers:
                out[(*trunk, *_leaf_path(path, spec, i))] = (
                    lambda idx, name=name, fn=fn, i=i: np.asarray(fn(src.get(_hf_name(spec, name, i)))[idx]))
    if scalar:
        if "score.weight" not in src.files:
            raise UserError(f"{where}: no score.weight: not a sequence-classification checkpoint; load it as a language model.")
        score = src.files["score.weight"]
        if tuple(score.shape) != (1, spec.d_model):
            raise UserError(f"{where}: score.weight has shape {tuple(score.shape)}; a reward model needs (1, {spec.d_model}).")
        out[("head_kernel",)] = lambda idx: np.asarray(score.T[idx])
        out[("head_bias",)] = lambda idx: np.zeros((1,), np.float32)[idx]
    if ("lm_head", "bias") in want:  # jaxllm's untied GPT-2 head with biases; HF's has none
        out[("lm_head", "bias")] = lambda idx: np.zeros(want[("lm_head", "bias")], np.float32)[idx]
    missing = sorted(set(want) - set(out))
    if missing:
        raise UserError(f"{where}: nothing in the checkpoint maps to jaxllm's {'/'.join(missing[0])}.")
    return out


def load_hf_params(directory: str | Path, spec: ModelSpec, abstract_params, scalar: bool = False):
    """The HF checkpoint as jaxllm parameters on the shardings (and dtypes) of ``abstract_params``."""
    getters = hf_getters(directory, spec, scalar)

    def build(path, leaf):
        key = tuple(k.key for k in path)
        get = getters[key]
        sharding = getattr(leaf, "sharding", None)
        if sharding is None:
            return np.asarray(get(tuple(slice(None) for _ in leaf.shape))).astype(leaf.dtype)
        return jax.make_array_from_callback(leaf.shape, sharding, lambda idx: np.asarray(get(idx)).astype(leaf.dtype))

    return jax.tree_util.tree_map_with_path(build, abstract_params)


# -- writing ----------------------------------------------------------------------------------------------------

def hf_tensors(params, spec: ModelSpec, scalar: bool = False) -> dict[str, np.ndarray]:
    """jaxllm parameters (host arrays, or device arrays gathered here) -> HF tensor name -> array."""
    from jaxllm.parallel.sharding import to_host

    flat = {tuple(k.key for k in path): v for path, v in jax.tree_util.tree_flatten_with_path(to_host(params))[0]}
    trunk = ("trunk",) if scalar else ()
    out: dict[str, np.ndarray] = {}
    fused: dict[str, list] = {}
    for path, (name, _) in _names(spec).items():
        if scalar and path[0] == "lm_head":
            continue
        for i in (range(spec.n_layers) if path[0] == "L" else [None]):
            leaf = (*trunk, *_leaf_path(path, spec, i))
            if leaf not in flat:
                raise UserError(f"the parameters have no {'/'.join(leaf)}; they do not match the model config.")
            a = flat[leaf]
            if path[0] == "L" and spec.scan_layers:
                a = a[i]
            hf_name = _hf_name(spec, name, i)
            if spec.family == "gpt2" and ".c_attn." in hf_name:
                fused.setdefault(hf_name, []).append(("qkv".index(path[2]), a))
                continue
            out[hf_name] = a.T if (spec.family != "gpt2" and path[-1] == "kernel") or path[0] == "lm_head" else a
    for hf_name, parts in fused.items():
        out[hf_name] = np.concatenate([a for _, a in sorted(parts, key=lambda x: x[0])], axis=-1)
    if ("lm_head", "bias") in flat and np.any(flat[("lm_head", "bias")]):
        raise UserError("the output head has a non-zero bias, which Hugging Face's GPT-2/Llama heads lack.")
    if scalar:
        out["score.weight"] = flat[("head_kernel",)].T.astype(np.float32)
    return out


def write_hf(params, spec: ModelSpec, out_dir: str | Path, scalar: bool = False, max_shard_bytes: int = 5 << 30,
             dtype: str = "float32", **ids) -> list[str]:
    """``config.json`` and ``model.safetensors`` (or shards plus ``model.safetensors.index.json``) in ``out_dir``.
    Returns notes for the user (e.g. a dropped scalar-head bias)."""
    notes = []
    tensors = hf_tensors(params, spec, scalar)
    if scalar:
        bias = float(np.asarray(jax.device_get(params["head_bias"]))[0])
        if bias:
            notes.append(f"the score head's bias ({bias:+.4f}) is dropped: Hugging Face's score layer has none. "
                         "Every score shifts by that constant; rankings and differences are unchanged.")
    cast = {"float32": np.float32, "bfloat16": jax.numpy.bfloat16, "float16": np.float16}[dtype]
    tensors = {k: np.asarray(v, dtype=cast) for k, v in tensors.items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = hf_config_from_spec(spec, scalar, **ids)
    config["dtype"] = dtype
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    shards: list[dict] = [{}]
    size = 0
    for name in sorted(tensors):
        if size and size + tensors[name].nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensors[name]
        size += tensors[name].nbytes
    meta = {"format": "pt"}  # transformers expects it; the bytes are framework-neutral
    if len(shards) == 1:
        save_file(shards[0], out / "model.safetensors", meta)
        return notes
    weight_map = {}
    for j, shard in enumerate(shards):
        fname = f"model-{j + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, out / fname, meta)
        weight_map.update({k: fname for k in shard})
    total = sum(a.nbytes for a in tensors.values())
    (out / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    return notes


def spec_from_hf(directory: str | Path, **overrides) -> ModelSpec:
    """The `ModelSpec` of an HF checkpoint (CPU defaults; ``overrides`` replace spec fields)."""
    from jaxllm.model import resolve_spec

    cfg = model_config_from_hf(read_hf_config(directory), str(Path(directory) / "config.json"))
    return dataclasses.replace(resolve_spec(cfg, backend=jax.default_backend()), **overrides)
