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


def trunk_matmul_params(s: ModelSpec) -> int:
    """Matmul parameters of the blocks (q, k, v, o and the MLP), without the output head."""
    attn = s.d_model * s.head_dim * (2 * s.n_heads + 2 * s.n_kv_heads)
    mlp = s.d_model * s.d_ff * (2 if s.mlp == "gelu" else 3)
    return s.n_layers * (attn + mlp)


def matmul_params(s: ModelSpec) -> int:
    """Parameters that take part in a matmul for every token (the N of 6N): blocks plus the output head."""
    return trunk_matmul_params(s) + s.d_model * s.vocab_size


def attention_flops_per_token(s: ModelSpec, seq_len: int, causal: bool = True) -> float:
    """Forward FLOPs per token of QK^T and PV over all layers."""
    f = 4.0 * seq_len * s.n_heads * s.head_dim * s.n_layers
    return f / 2 if causal else f


def train_flops_per_token(s: ModelSpec, seq_len: int, lm_head: bool = True, trunks: int = 1) -> float:
    """Forward + backward FLOPs per trained token of ``trunks`` transformer trunks plus either the
    vocabulary head (``lm_head``) or a scalar head: a language model is (True, 1), a reward model
    (False, 1), PPO's policy + critic (True, 2)."""
    trunk = 2.0 * trunk_matmul_params(s) + attention_flops_per_token(s, seq_len)
    head = 2.0 * s.d_model * (s.vocab_size if lm_head else 1)
    return 3.0 * (trunks * trunk + head)


def lora_flops_factor(s: ModelSpec, seq_len: int) -> float:
    """Training FLOPs with a frozen base over full training's, for a language model: no weight gradients for
    the frozen matmuls (4N instead of 6N; the adapters' own FLOPs, 6 r (in + out) per module, are negligible).
    Applied to every objective's count as the same share."""
    full = train_flops_per_token(s, seq_len)
    return (full - 2.0 * matmul_params(s)) / full
