"""Model families: every per-family choice in one table, so the layers branch on what a choice *is*
(``spec.norm == "rmsnorm"``), never on a family's name.

A family fixes the norm, the position scheme, the MLP and the defaults a config may override (tied
output head, biases, MLP width). Adding a family (Qwen, Gemma) is a row here plus any new choice the
layers must learn (e.g. biases on q/k/v only), and its tensor names in `interop/hf.py`.
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
    mlp: str                # gelu (fc -> GELU(tanh) -> proj) | swiglu (silu(gate) * up -> proj)
    tie_embeddings: bool    # default of model.tie_embeddings
    use_bias: bool          # default of model.use_bias
    default_d_ff: Callable[[int], int]

    @property
    def mlp_matrices(self) -> int:
        """Matmul kernels of ``[embed, d_ff]`` size per block (for FLOPs)."""
        return 3 if self.mlp == "swiglu" else 2


def _swiglu_width(d_model: int) -> int:
    return int(math.ceil(8 * d_model / 3 / 64) * 64)  # SwiGLU keeps ~the same params as a 4x GELU MLP


FAMILIES = {
    "gpt2": Family("gpt2", norm="layernorm", positions="learned", mlp="gelu", tie_embeddings=True, use_bias=True,
                   default_d_ff=lambda d: 4 * d),
    "llama": Family("llama", norm="rmsnorm", positions="rope", mlp="swiglu", tie_embeddings=False, use_bias=False,
                    default_d_ff=_swiglu_width),
}


def family(name: str) -> Family:
    return FAMILIES[name]
