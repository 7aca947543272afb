"""`ModelSpec`: a model config with every default resolved to a concrete value.

The Flax modules take this frozen (hashable) spec, so they never re-derive
family defaults, vocab padding or the compute dtype themselves.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxllm.config.schema import ModelConfig
from jaxllm.errors import ConfigError
from jaxllm.model.families import family


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    family: str
    norm: str        # the family's choices (`families.Family`): layernorm | rmsnorm
    positions: str   # learned | rope
    mlp: str         # gelu | swiglu | geglu
    vocab_size: int
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    max_seq_len: int
    norm_eps: float
    rope_theta: float
    tie_embeddings: bool
    use_bias: bool
    head_bias: bool  # an untied output head with a bias (old untied GPT-2 run dirs only)
    dropout: float
    init_std: float
    param_dtype: str
    dtype: str
    attention: str
    remat: str
    scan_layers: bool
    attention_blocks: int = 1
    scan_unroll: int = 1
    rope_scaling: tuple = ()  # () or (type, factor, low_freq_factor, high_freq_factor, original_max_len)
    qkv_bias: bool | None = None   # None: use_bias (run dirs and specs written before these fields)
    out_bias: bool | None = None
    mlp_bias: bool | None = None
    qk_norm: bool = False          # the family's block choices (`families.Family`)
    norm_offset: float = 0.0
    embed_scale: bool = False
    post_norms: bool = False
    sliding_window: int = 0        # 0: attend to the whole causal prefix
    global_every: int = 0          # with a window: layers n-1, 2n-1, ... attend globally; 0: all local
    attn_softcap: float = 0.0
    final_softcap: float = 0.0
    query_pre_attn_scalar: float = 0.0  # 0: head_dim
    lora_rank: int = 0             # LoRA adapters (`model/lora.py`) on the modules named in lora_targets; 0: none
    lora_alpha: float = 0.0
    lora_dropout: float = 0.0
    lora_targets: tuple = ()

    def bias(self, part: str) -> bool:
        """Whether ``part`` (qkv | out | mlp) has biases."""
        own = {"qkv": self.qkv_bias, "out": self.out_bias, "mlp": self.mlp_bias}[part]
        return self.use_bias if own is None else own

    def lora(self, module: str) -> bool:
        """Whether the module named ``module`` (q, k, v, o, gate, up, proj, fc, lm_head, embed) has adapters."""
        return bool(self.lora_rank) and module in self.lora_targets

    @property
    def lora_scale(self) -> float:
        return self.lora_alpha / self.lora_rank if self.lora_rank else 0.0

    @property
    def attn_scale(self) -> float:
        return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

    @property
    def mixed_windows(self) -> bool:
        """Some layers local and some global: the window depends on the layer index."""
        return bool(self.sliding_window and self.global_every)

    def layer_window(self, layer):
        """The window of block ``layer`` (a Python int, or a traced index inside the layer scan): 0 = global."""
        if not self.sliding_window:
            return 0
        if not self.global_every:
            return self.sliding_window
        is_global = (layer + 1) % self.global_every == 0
        if isinstance(layer, int):
            return 0 if is_global else self.sliding_window
        return jnp.where(is_global, 0, self.sliding_window)

    @property
    def jnp_dtype(self):
        return jnp.dtype(self.dtype)

    @property
    def jnp_param_dtype(self):
        return jnp.dtype(self.param_dtype)


def resolve_spec(cfg: ModelConfig, tokenizer_vocab: int | None = None, backend: str | None = None) -> ModelSpec:
    """Fill family defaults, vocab size (from the tokenizer when null), dtype and attention by backend."""
    backend = backend or jax.default_backend()
    vocab = cfg.vocab_size
    if vocab is None:
        if tokenizer_vocab is None:
            raise ConfigError("model.vocab_size is null and there is no tokenizer to take it from; set model.vocab_size.")
        vocab = int(math.ceil(tokenizer_vocab / cfg.vocab_multiple) * cfg.vocab_multiple)
    elif tokenizer_vocab is not None and tokenizer_vocab > vocab:
        raise ConfigError(f"model.vocab_size = {vocab} is smaller than the tokenizer's {tokenizer_vocab} pieces; "
                          "raise model.vocab_size, set it to null, or use a smaller data.tokenizer.vocab_size.")
    dtype = cfg.dtype if cfg.dtype != "auto" else ("float32" if backend == "cpu" else "bfloat16")
    half = dtype in ("bfloat16", "float16")
    softcap = cfg.attn_softcap > 0
    attention = cfg.attention if cfg.attention != "auto" else ("cudnn" if backend == "gpu" and half and not softcap else "xla")
    if attention == "cudnn" and softcap:
        raise ConfigError(f"model.attention = 'cudnn' cannot soft-cap attention scores (model.attn_softcap = {cfg.attn_softcap}); "
                          "use model.attention=xla or auto.")
    if attention == "cudnn" and backend != "gpu":
        raise ConfigError(f"model.attention = 'cudnn' needs a GPU, but JAX's backend is {backend!r}; "
                          "use model.attention=xla or auto.")
    if attention == "cudnn" and not half:
        raise ConfigError(f"model.attention = 'cudnn' needs model.dtype bfloat16 or float16 (cuDNN's fused kernel "
                          f"has no {dtype}); use model.attention=xla or auto.")
    fam = family(cfg.family)
    return ModelSpec(
        family=cfg.family,
        norm=fam.norm,
        positions=fam.positions,
        mlp=fam.mlp,
        vocab_size=vocab,
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        n_kv_heads=cfg.n_kv_heads or cfg.n_heads,
        head_dim=cfg.head_dim or cfg.d_model // cfg.n_heads,
        d_ff=cfg.d_ff or fam.default_d_ff(cfg.d_model),
        max_seq_len=cfg.max_seq_len,
        norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_theta,
        tie_embeddings=fam.tie_embeddings if cfg.tie_embeddings is None else cfg.tie_embeddings,
        use_bias=fam.use_bias if cfg.use_bias is None else cfg.use_bias,
        head_bias=cfg.head_bias,
        dropout=cfg.dropout,
        init_std=cfg.init_std,
        param_dtype=cfg.param_dtype,
        dtype=dtype,
        attention=attention,
        remat=cfg.remat,
        scan_layers=cfg.scan_layers,
        attention_blocks=cfg.attention_blocks,
        scan_unroll=cfg.scan_unroll,
        rope_scaling=() if cfg.rope_scaling == "none" else (cfg.rope_scaling, cfg.rope_scaling_factor, cfg.rope_low_freq_factor,
                                                           cfg.rope_high_freq_factor, cfg.rope_original_max_len),
        qkv_bias=cfg.qkv_bias if cfg.qkv_bias is not None else fam.qkv_bias,
        out_bias=cfg.out_bias,
        mlp_bias=cfg.mlp_bias,
        qk_norm=fam.qk_norm,
        norm_offset=fam.norm_offset,
        embed_scale=fam.embed_scale,
        post_norms=fam.post_norms,
        sliding_window=cfg.sliding_window or 0,
        global_every=cfg.global_every,
        attn_softcap=cfg.attn_softcap,
        final_softcap=cfg.final_softcap,
        query_pre_attn_scalar=cfg.query_pre_attn_scalar or 0.0,
        lora_rank=cfg.lora.rank,
        lora_alpha=cfg.lora.alpha if cfg.lora.rank else 0.0,
        lora_dropout=cfg.lora.dropout if cfg.lora.rank else 0.0,
        lora_targets=tuple(cfg.lora.targets) if cfg.lora.rank else (),
    )
