"""Model FLOPs per token for MFU, from the spec alone.

Training FLOPs per token = 3 x forward (backward costs two forwards):
- matmuls: 2 x (weights touched per token), i.e. the "6N" term with N the
  matmul parameters (q, k, v, o, MLP and the output head; the embedding lookup
  is a gather and costs nothing);
- attention scores and values: 2 x 2 x seq_len x n_heads x head_dim per layer
  forward, halved for causal masking as MaxText counts it.
"""

from __future__ import annotations

from jaxllm.model.spec import ModelSpec


def matmul_params(s: ModelSpec) -> int:
    """Parameters that take part in a matmul for every token (the N of 6N)."""
    attn = s.d_model * s.head_dim * (2 * s.n_heads + 2 * s.n_kv_heads)
    mlp = s.d_model * s.d_ff * (2 if s.family == "gpt2" else 3)
    head = s.d_model * s.vocab_size
    return s.n_layers * (attn + mlp) + head


def attention_flops_per_token(s: ModelSpec, seq_len: int, causal: bool = True) -> float:
    """Forward FLOPs per token of QK^T and PV over all layers."""
    f = 4.0 * seq_len * s.n_heads * s.head_dim * s.n_layers
    return f / 2 if causal else f


def train_flops_per_token(s: ModelSpec, seq_len: int) -> float:
    """Forward + backward FLOPs per trained token."""
    return 3.0 * (2.0 * matmul_params(s) + attention_flops_per_token(s, seq_len))
