"""Model families: every per-family choice in one table, so the layers branch on what a choice *is*
(``spec.norm == "rmsnorm"``, ``spec.qk_norm``), never on a family's name.

A family fixes the norm, the position scheme, the MLP, the block's shape (post-norms, q/k norms, a scaled
embedding) and the defaults a config may override (tied output head, biases, MLP width). Adding a family is
a row here plus any new choice the layers must learn, and its tensor names in `interop/hf.py`.
Per-model numbers (sliding window, soft-caps, attention scale) are `ModelConfig` keys, not family choices:
the presets in ``configs/model/`` set them as the real checkpoints do.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    norm: str               # layernorm (mean-centred, optional bias) | rmsnorm
    positions: str          # learned (a [max_seq_len, embed] table) | rope (rotary, rotate-half layout)
    mlp: str                # gelu (fc -> GELU(tanh) -> proj) | swiglu (silu(gate) * up) | geglu (GELU(tanh)(gate) * up)
    tie_embeddings: bool    # default of model.tie_embeddings
    use_bias: bool          # default of model.use_bias
    default_d_ff: Callable[[int], int]
    qkv_bias: bool | None = None  # default of model.qkv_bias (None: model.use_bias); Qwen2 biases q/k/v only
    qk_norm: bool = False         # an RMSNorm over each head's q and k before RoPE (Qwen3)
    norm_offset: float = 0.0      # norms scale by (offset + w); Gemma stores w around 0, so offset 1
    embed_scale: bool = False     # token embeddings times sqrt(d_model) (Gemma)
    post_norms: bool = False      # a norm on each branch's output before the residual add (Gemma 2)

    @property
    def mlp_matrices(self) -> int:
        """Matmul kernels of ``[embed, d_ff]`` size per block (for FLOPs)."""
        return 2 if self.mlp == "gelu" else 3


def _swiglu_width(d_model: int) -> int:
    return int(math.ceil(8 * d_model / 3 / 64) * 64)  # SwiGLU keeps ~the same params as a 4x GELU MLP


FAMILIES = {
    "gpt2": Family("gpt2", norm="layernorm", positions="learned", mlp="gelu", tie_embeddings=True, use_bias=True,
                   default_d_ff=lambda d: 4 * d),
    "llama": Family("llama", norm="rmsnorm", positions="rope", mlp="swiglu", tie_embeddings=False, use_bias=False,
                    default_d_ff=_swiglu_width),
    "qwen2": Family("qwen2", norm="rmsnorm", positions="rope", mlp="swiglu", tie_embeddings=False, use_bias=False,
                    default_d_ff=_swiglu_width, qkv_bias=True),
    "qwen3": Family("qwen3", norm="rmsnorm", positions="rope", mlp="swiglu", tie_embeddings=False, use_bias=False,
                    default_d_ff=_swiglu_width, qk_norm=True),
    "gemma2": Family("gemma2", norm="rmsnorm", positions="rope", mlp="geglu", tie_embeddings=True, use_bias=False,
                     default_d_ff=lambda d: 4 * d, norm_offset=1.0, embed_scale=True, post_norms=True),
}


def family(name: str) -> Family:
    return FAMILIES[name]
