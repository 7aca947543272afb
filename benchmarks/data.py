"""Data pipeline speed: prepare rate (MB/s of text) and prepared-data read rate (tokens/s per host).

    python benchmarks/data.py [--chars 3000000] [--batch 64] [--seq 1024]

Prepare = read the built-in corpus -> (clean) -> train the tokenizer -> tokenize -> write shards,
timed with cleaning off and on. Read = the trainer's iterator over the memory-mapped prepared data
(shuffled rows, segment ids, positions and loss mask built per batch), as one host of one process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxllm.config import load_config  # noqa: E402
from jaxllm.data.packing import BatchIterator  # noqa: E402
from jaxllm.data.prepare import prepare_dataset  # noqa: E402
from jaxllm.data.prepared import read_prepared  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chars", type=int, default=3_000_000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--batches", type=int, default=200)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'prepare':<28}{'MB':>8}{'seconds':>10}{'MB/s':>8}")
        for clean in (False, True):
            out = Path(tmp) / f"p{int(clean)}"
            cfg = load_config(ROOT / "configs/pretrain/demo.yaml", [
                f"data.builtin.chars={a.chars}", f"data.prepared_dir={out}", f"data.clean.enabled={clean}"])
            t = time.perf_counter()
            stats = prepare_dataset(cfg)
            dt = time.perf_counter() - t
            mb = sum(stats["characters"].values()) / 1e6
            if clean:
                mb = stats["cleaning"][0]["characters"] / 1e6  # the text that went in
            print(f"{'built-in, clean ' + ('on' if clean else 'off'):<28}{mb:>8.2f}{dt:>10.2f}{mb / dt:>8.2f}")
        stream = read_prepared(out)[0]["train"]
        it = BatchIterator(stream, a.seq, a.batch, seed=0)
        next(it)
        t = time.perf_counter()
        for _ in range(a.batches):
            next(it)
        dt = time.perf_counter() - t
        tok = a.batches * a.batch * a.seq
        print(f"\nread prepared data: {a.batches} batches of {a.batch} x {a.seq} in {dt:.2f}s = "
              f"{tok / dt / 1e6:.2f}M tokens/s per host ({len(stream.tokens):,} tokens on disk, epochs wrap)")


if __name__ == "__main__":
    main()
