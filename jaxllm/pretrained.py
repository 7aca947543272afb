"""Parameters from any checkpoint a user can name in ``init_from``: a jaxllm run (Orbax, through
`train.checkpoint`) or a Hugging Face model directory (converted on the fly by `interop.hf`), placed
on the shardings of the abstract tree either way."""

from __future__ import annotations

from pathlib import Path

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxllm.errors import UserError
from jaxllm.model.lora import merge, overlay, without_adapters
from jaxllm.run_dir import run_dir_holding
from jaxllm.train.adapters import BASE_FILE, read_base_file
from jaxllm.train.checkpoint import load_params as load_orbax_params, load_saved_params


def load_params(path: str, abstract_params):
    """``path``'s parameters onto ``abstract_params``' shapes and shardings (names and shapes checked). A LoRA
    run comes back merged (its base with the adapters folded in): a plain model, whatever reads it."""
    p = Path(path)
    from jaxllm.interop.hf import is_hf_dir, load_hf_params, spec_from_hf
    abstract_params = without_adapters(abstract_params)
    from jaxllm.interop.peft import is_peft_dir, merge_peft, peft_base_dir
    if p.exists() and is_peft_dir(p):  # a PEFT LoRA adapter: its base, with the adapter folded in
        base_dir = peft_base_dir(p)
        base = load_params(str(base_dir), abstract_params)
        layers = base["trunk"] if "head_kernel" in base else base
        spec = spec_from_hf(base_dir, scan_layers="blocks" in layers)
        if "head_kernel" in base:
            raise UserError(f"{path}: a PEFT adapter is read onto a language model; this model has a scalar head "
                            "(merge the adapter into a reward model with peft first).")
        merged = merge_peft(p, base, spec)
        if all(isinstance(x, jax.Array) for x in jax.tree.leaves(base)):  # keep the base's shardings
            merged = jax.device_put(merged, jax.tree.map(lambda x: x.sharding, base))
        return merged
    if p.exists() and is_hf_dir(p):
        scalar = "head_kernel" in abstract_params
        layers = abstract_params["trunk"] if scalar else abstract_params
        spec = spec_from_hf(p, scan_layers="blocks" in layers)
        return load_hf_params(p, spec, abstract_params, scalar=scalar)
    run_dir = run_dir_holding(p, BASE_FILE) if p.exists() else None
    if run_dir is not None:
        return merge_lora_run(path, read_base_file(run_dir), abstract_params)
    return load_orbax_params(path, abstract_params)


def lora_base_and_adapters(path: str, record: dict, abstract_params) -> tuple[dict, dict]:
    """A LoRA run's ``(base, trainable part)``: the base re-read from the sources ``lora_base.json`` names, onto
    ``abstract_params`` (no adapters), and the checkpoint's adapters (+ trained heads), replicated."""
    parts = record["parts"]
    if "" in parts:
        base = _base_part(path, parts[""], abstract_params, "")
    else:  # a part that started fresh (PPO's critic without a reward model) is left out: it cannot be rebuilt
        base = {k: _base_part(path, src, abstract_params[k], k) for k, src in parts.items()
                if k in abstract_params and src is not None}
    mesh = next(iter(jax.tree.leaves(abstract_params))).sharding.mesh
    trainable = load_saved_params(path, NamedSharding(mesh, P()))
    trainable = {k: v for k, v in trainable.items() if k in base} if "" not in parts else trainable
    return base, trainable


def _base_part(path: str, source: str | None, abstract, key: str):
    if source is None:
        raise UserError(f"{path}: a LoRA run whose base{' ' + key if key else ''} was a fresh initialisation (no "
                        "init_from for it); it cannot be read back without its base.")
    if not Path(source).exists():
        raise UserError(f"{path}: the LoRA run's base{' ' + key if key else ''} {source} (lora_base.json) is gone; "
                        "a LoRA checkpoint holds only adapters, so its base must stay where it was.")
    return load_params(source, abstract)


def merge_lora_run(path: str, record: dict, abstract_params):
    """A LoRA run's parameters merged: ``W + (alpha / r) A B`` on the base's shardings."""
    base, trainable = lora_base_and_adapters(path, record, abstract_params)
    shardings = jax.tree.map(lambda x: x.sharding, base)
    return jax.jit(lambda b, t: merge(overlay(b, t), record["scale"]), out_shardings=shardings)(base, trainable)
