"""Parameters from any checkpoint a user can name in ``init_from``: a jaxllm run (Orbax, through
`train.checkpoint`) or a Hugging Face model directory (converted on the fly by `interop.hf`), placed
on the shardings of the abstract tree either way."""

from __future__ import annotations

from pathlib import Path

from jaxllm.train.checkpoint import load_params as load_orbax_params


def load_params(path: str, abstract_params):
    """``path``'s parameters onto ``abstract_params``' shapes and shardings (names and shapes checked)."""
    p = Path(path)
    from jaxllm.interop.hf import is_hf_dir, load_hf_params, spec_from_hf
    if p.exists() and is_hf_dir(p):
        scalar = "head_kernel" in abstract_params
        layers = abstract_params["trunk"] if scalar else abstract_params
        spec = spec_from_hf(p, scan_layers="blocks" in layers)
        return load_hf_params(p, spec, abstract_params, scalar=scalar)
    return load_orbax_params(path, abstract_params)
