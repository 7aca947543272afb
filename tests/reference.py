"""An independent NumPy forward pass of both model families, written from the formulas.

It shares no code with jaxllm.model: it reads the parameter dict by name and
computes LayerNorm/RMSNorm, RoPE (rotate-half), grouped-query causal attention
with segment masking, GELU/SwiGLU MLPs and the (tied) output head directly.
"""

import numpy as np


def _norm(x, p, family, eps):
    if family == "gpt2":
        x = x - x.mean(-1, keepdims=True)
    y = x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * p["scale"]
    return y + p["bias"] if "bias" in p else y


def _dense(x, p):
    y = x @ p["kernel"]
    return y + p["bias"] if "bias" in p else y


def _rope(x, pos, theta):  # x [B, L, H, D]
    d = x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, d, 2) / d)
    ang = pos[..., None] * inv  # [B, L, D/2]
    cos, sin = np.cos(ang)[:, :, None], np.sin(ang)[:, :, None]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def layer_params(params, i):
    if "blocks" in params:
        import jax
        return jax.tree.map(lambda a: np.asarray(a)[i], params["blocks"])
    return params[f"block_{i}"]


def forward(params, spec, tokens, positions=None, segment_ids=None):
    """``tokens [B, L]`` -> float64 logits ``[B, L, V]``."""
    import jax
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    b, l = tokens.shape
    pos = np.broadcast_to(np.arange(l), (b, l)) if positions is None else positions
    seg = np.ones((b, l)) if segment_ids is None else segment_ids
    x = params["embed"][tokens]
    if spec.family == "gpt2":
        x = x + params["pos_embed"][pos]
    mask = (np.tril(np.ones((l, l), bool))[None]) & (seg[:, :, None] == seg[:, None, :])  # [B, Lq, Lk]
    h_q, h_kv, d = spec.n_heads, spec.n_kv_heads, spec.head_dim
    for i in range(spec.n_layers):
        p = layer_params(params, i)
        h = _norm(x, p["attn_norm"], spec.family, spec.norm_eps)
        q = _dense(h, p["attn"]["q"]).reshape(b, l, h_q, d)
        k = _dense(h, p["attn"]["k"]).reshape(b, l, h_kv, d)
        v = _dense(h, p["attn"]["v"]).reshape(b, l, h_kv, d)
        if spec.family == "llama":
            q, k = _rope(q, pos, spec.rope_theta), _rope(k, pos, spec.rope_theta)
        k = np.repeat(k, h_q // h_kv, axis=2)  # query head j uses kv head j // (h_q / h_kv)
        v = np.repeat(v, h_q // h_kv, axis=2)
        s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d)
        s = np.where(mask[:, None], s, -np.inf)
        w = np.exp(s - s.max(-1, keepdims=True))
        w = w / w.sum(-1, keepdims=True)
        o = np.einsum("bhqk,bkhd->bqhd", w, v).reshape(b, l, h_q * d)
        x = x + _dense(o, p["attn"]["o"])
        h = _norm(x, p["mlp_norm"], spec.family, spec.norm_eps)
        if spec.family == "gpt2":
            m = _gelu_tanh(_dense(h, p["mlp"]["fc"]))
        else:
            g = _dense(h, p["mlp"]["gate"])
            m = g / (1 + np.exp(-g)) * _dense(h, p["mlp"]["up"])
        x = x + _dense(m, p["mlp"]["proj"])
    x = _norm(x, params["final_norm"], spec.family, spec.norm_eps)
    return x @ params["embed"].T if spec.tie_embeddings else _dense(x, params["lm_head"])
