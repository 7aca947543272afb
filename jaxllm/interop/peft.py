"""PEFT LoRA adapters in and out: ``adapter_config.json`` + ``adapter_model.safetensors``, as the ``peft`` package
writes and reads them, for every family `interop.hf` maps.

Names come from `hf._names` (jaxllm leaf -> HF tensor and the function that turns the HF array into ours), so
adapters follow the same map as the weights. jaxllm's ``lora_a [in, r]`` / ``lora_b [r, out]`` are PEFT's
``lora_A.weight [r, in]`` / ``lora_B.weight [out, r]`` transposed; the embedding's are ``lora_embedding_A
[r, vocab]`` / ``lora_embedding_B [embed, r]``. GPT-2 fuses q, k and v in one ``c_attn``: its adapter is the
three stacked (rank 3r, B block-diagonal, alpha 3 alpha so the scale is unchanged), which is exactly their sum.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from jaxllm.errors import UserError
from jaxllm.interop.hf import _hf_name, _leaf_path, _names
from jaxllm.interop.tensor_files import TensorFiles, save_file
from jaxllm.model.spec import ModelSpec

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."


def is_peft_dir(path: str | Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def _modules(spec: ModelSpec) -> dict[tuple, list[tuple[str, int | None, object]]]:
    """jaxllm module path (per layer, "L" marks the layer) -> HF module name with {i}, and the slice of a fused
    module it is (``(index, parts)`` for GPT-2's c_attn, else None)."""
    out = {}
    for path, (name, _) in _names(spec).items():
        if path[-1] == "kernel":
            module = name[: -len(".weight")]
            fused = (("qkv".index(path[-2]), 3) if spec.family == "gpt2" and ".c_attn" in name else None)
            out[path[:-1]] = (module, fused)
    return out


def _target_name(hf_module: str) -> str:
    """PEFT matches a target by the module name's suffix: the last two parts (``self_attn.q_proj``,
    ``mlp.c_proj``) tell the attention's and the MLP's projections apart."""
    return ".".join(hf_module.split(".")[-2:])


def peft_tensors(trainable, spec: ModelSpec) -> tuple[dict[str, np.ndarray], list[str], dict, dict]:
    """jaxllm adapters -> ``(PEFT tensors, target_modules, rank_pattern, alpha_pattern)``."""
    from jaxllm.parallel.sharding import to_host

    flat = {tuple(k.key for k in path): np.asarray(v, np.float32)
            for path, v in jax.tree_util.tree_flatten_with_path(to_host(trainable))[0]}
    r, tensors, targets, fused = spec.lora_rank, {}, set(), {}
    for mpath, (module, part) in _modules(spec).items():
        for i in (range(spec.n_layers) if mpath[0] == "L" else [None]):
            leaf = _leaf_path(mpath, spec, i)
            if leaf + ("lora_a",) not in flat:
                continue
            a, b = flat[leaf + ("lora_a",)], flat[leaf + ("lora_b",)]
            if mpath[0] == "L" and spec.scan_layers:
                a, b = a[i], b[i]
            name = _hf_name(spec, module, i)
            targets.add(_target_name(name))
            if part is None:
                tensors[f"{PREFIX}{name}.lora_A.weight"] = a.T
                tensors[f"{PREFIX}{name}.lora_B.weight"] = b.T
            else:
                fused.setdefault(name, {})[part[0]] = (a, b)
    for name, pieces in fused.items():  # GPT-2's c_attn: q, k, v stacked along the rank
        d_in, d = next(iter(pieces.values()))[0].shape[0], spec.d_model
        big_a, big_b = np.zeros((3 * r, d_in), np.float32), np.zeros((3 * d, 3 * r), np.float32)
        for j, (a, b) in pieces.items():
            big_a[j * r:(j + 1) * r] = a.T
            big_b[j * d:(j + 1) * d, j * r:(j + 1) * r] = b.T
        tensors[f"{PREFIX}{name}.lora_A.weight"], tensors[f"{PREFIX}{name}.lora_B.weight"] = big_a, big_b
    if ("embed_lora_a",) in flat:
        if spec.tie_embeddings:
            raise UserError("model.lora.targets has embed on a model with a tied output head: in jaxllm the head sees "
                            "the embedding's adapter, in PEFT it does not. Export merged weights (to-hf --merge).")
        name = _hf_name(spec, _names(spec)[("embed",)][0][: -len(".weight")], None)
        tensors[f"{PREFIX}{name}.lora_embedding_A"] = flat[("embed_lora_a",)].T
        tensors[f"{PREFIX}{name}.lora_embedding_B"] = flat[("embed_lora_b",)].T
        targets.add(_target_name(name))
    if not tensors:
        raise UserError("the run holds no LoRA adapters to export.")
    rank_pattern = {_target_name(n): 3 * r for n in fused}
    alpha_pattern = {_target_name(n): 3 * spec.lora_alpha for n in fused}
    return tensors, sorted(targets), rank_pattern, alpha_pattern


def write_peft(trainable, spec: ModelSpec, out: str | Path, base: str, dropout: float = 0.0) -> list[str]:
    """``adapter_config.json`` + ``adapter_model.safetensors`` for ``peft.PeftModel.from_pretrained(base_model, out)``."""
    tensors, targets, rank_pattern, alpha_pattern = peft_tensors(trainable, spec)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base, "r": spec.lora_rank,
              "lora_alpha": spec.lora_alpha, "lora_dropout": dropout, "target_modules": targets, "bias": "none",
              "fan_in_fan_out": spec.family == "gpt2", "use_rslora": False, "init_lora_weights": True,
              "rank_pattern": rank_pattern, "alpha_pattern": alpha_pattern, "modules_to_save": None,
              "inference_mode": True}
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    save_file(tensors, out / WEIGHTS, {"format": "pt"})
    return [f"wrote a PEFT LoRA adapter ({len(tensors) // 2} modules, r={spec.lora_rank}, alpha={spec.lora_alpha:g}, "
            f"targets {', '.join(targets)}) for the base {base}"]


def read_peft_config(path: str | Path) -> dict:
    cfg = json.loads((Path(path) / CONFIG).read_text())
    where = Path(path) / CONFIG
    if cfg.get("peft_type", "LORA") != "LORA":
        raise UserError(f"{where}: peft_type {cfg.get('peft_type')!r}; only LoRA adapters are read.")
    for key in ("use_dora", "layer_replication"):
        if cfg.get(key):
            raise UserError(f"{where}: {key} is set; jaxllm reads plain LoRA adapters (merge it with peft first).")
    if cfg.get("modules_to_save"):
        raise UserError(f"{where}: modules_to_save {cfg['modules_to_save']}: fully trained modules are not read; "
                        "merge the adapter with peft (merge_and_unload) and convert the merged model.")
    return cfg


def peft_base_dir(path: str | Path) -> Path:
    """The local Hugging Face directory an adapter belongs to (``base_model_name_or_path``)."""
    from jaxllm.interop.hf import is_hf_dir

    cfg = read_peft_config(path)
    base = cfg.get("base_model_name_or_path")
    candidates = [Path(base), Path(path) / base] if base else []
    found = next((c for c in candidates if c.is_dir() and is_hf_dir(c)), None)
    if found is None:
        raise UserError(f"{Path(path) / CONFIG}: base_model_name_or_path = {base!r} is not a local Hugging Face model "
                        "directory; jaxllm never downloads. Download the base model and set base_model_name_or_path "
                        "to its directory.")
    return found


def _scale(cfg: dict, target: str, r: int) -> float:
    alpha = next((v for k, v in (cfg.get("alpha_pattern") or {}).items() if target.endswith(k)), cfg.get("lora_alpha", 8))
    return alpha / (r ** 0.5 if cfg.get("use_rslora") else r)


def peft_deltas(path: str | Path, spec: ModelSpec) -> dict[tuple, np.ndarray]:
    """An adapter's updates in jaxllm's layout: leaf path (a stacked leaf's path with the layer index last) ->
    ``scale * A B`` shaped like that kernel or embedding (float32)."""
    cfg = read_peft_config(path)
    if not (Path(path) / WEIGHTS).is_file():
        raise UserError(f"{path}: {CONFIG} without {WEIGHTS}; jaxllm reads PEFT adapters saved as safetensors "
                        "(adapter_model.bin is a pickle and is never loaded).")
    files = TensorFiles(Path(path))
    names = set(files.names())
    fan_in_fan_out = cfg.get("fan_in_fan_out", spec.family == "gpt2")
    out, used = {}, set()
    for wpath, (name, fn) in _names(spec).items():
        for i in (range(spec.n_layers) if wpath[0] == "L" else [None]):
            module = _hf_name(spec, name, i)[: -len(".weight")]
            key = (*_leaf_path(wpath, spec, i), *((i,) if wpath[0] == "L" and spec.scan_layers else ()))
            a_name, b_name = f"{PREFIX}{module}.lora_A.weight", f"{PREFIX}{module}.lora_B.weight"
            if a_name in names:
                a, b = files[a_name].astype(np.float32), files[b_name].astype(np.float32)
                delta = (b @ a) * _scale(cfg, module, a.shape[0])  # [out, in], as torch.nn.Linear's weight
                conv1d = fan_in_fan_out and spec.family == "gpt2" and not module.startswith("lm_head")
                out[key] = np.asarray(fn(delta.T if conv1d else delta))  # GPT-2's Conv1D weights are [in, out]
                used |= {a_name, b_name}
            e_name = f"{PREFIX}{module}.lora_embedding_A"
            if e_name in names:
                a, b = files[e_name].astype(np.float32), files[f"{PREFIX}{module}.lora_embedding_B"].astype(np.float32)
                out[key] = np.asarray(fn((b @ a).T * _scale(cfg, module, a.shape[0])))
                used |= {e_name, f"{PREFIX}{module}.lora_embedding_B"}
    left = sorted(n for n in names - used if "lora_" in n)
    if left:
        raise UserError(f"{Path(path) / WEIGHTS}: adapter tensor {left[0]} belongs to no weight of this "
                        f"{spec.family} model; the adapter is for another architecture.")
    return out


def merge_peft(path: str | Path, base_params, spec: ModelSpec):
    """``base_params`` (the adapter's base, jaxllm tree on the mesh) with the adapter folded in."""
    from flax import traverse_util
    import jax.numpy as jnp

    flat = traverse_util.flatten_dict(base_params)
    for key, delta in peft_deltas(path, spec).items():
        leaf, layer = (key[:-1], key[-1]) if isinstance(key[-1], int) else (key, None)
        w = jnp.asarray(flat[leaf])
        d = jnp.asarray(delta, jnp.float32)
        if layer is None:
            flat[leaf] = (w.astype(jnp.float32) + d).astype(w.dtype)
        else:
            flat[leaf] = w.at[layer].add(d.astype(w.dtype))
    return traverse_util.unflatten_dict(flat)
