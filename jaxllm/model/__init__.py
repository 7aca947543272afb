"""Transformer model families, their resolved spec, FLOP counts and sampling."""

from jaxllm.model.spec import ModelSpec, resolve_spec
from jaxllm.model.transformer import Transformer, param_count

__all__ = ["ModelSpec", "resolve_spec", "Transformer", "param_count"]
