"""The PyTorch side of the CPU comparison: a nanoGPT-shaped model trained with AdamW.

    python benchmarks/torch_reference.py --layers 4 --width 256 --heads 4 --vocab 4096 --seq 256 --batch 16

Written after nanoGPT's model.py (Karpathy, MIT): pre-LayerNorm blocks with biases, learned position
embeddings, fused qkv, `scaled_dot_product_attention(is_causal=True)`, GELU MLP 4x wide, output head
tied to the token embedding, AdamW (fused where torch offers it). Random tokens, float32, the threads
torch picks (one per core). Prints one JSON line: median step seconds and tokens/s. Used by
benchmarks/cpu_vs_torch.py; needs the `torch` extra.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.fc_out = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return x + self.fc_out(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, layers: int, width: int, heads: int, vocab: int, seq: int):
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(seq, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.wte.weight
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.blocks:
            x = blk(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for k, v in [("layers", 4), ("width", 256), ("heads", 4), ("vocab", 4096), ("seq", 256), ("batch", 16), ("steps", 10)]:
        p.add_argument(f"--{k}", type=int, default=v)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (nanoGPT's default on GPU)")
    a = p.parse_args()
    torch.manual_seed(0)
    model = GPT(a.layers, a.width, a.heads, a.vocab, a.seq)
    fwd = torch.compile(model) if a.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95))
    toks = torch.randint(0, a.vocab, (a.batch, a.seq + 1))
    x, y = toks[:, :-1].contiguous(), toks[:, 1:].contiguous()

    def step() -> float:
        loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    step()
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t)
    dt = statistics.median(times)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "step_s": dt,
                      "tokens_per_s": a.batch * a.seq / dt, "loss": loss,
                      "params": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    main()
