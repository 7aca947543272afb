"""Packing documents into fixed-length rows, and a resumable batch iterator.

Pre-training: documents become one stream ``[BOS, doc..., EOS, BOS, doc..., EOS, ...]``; row
``i`` is the window ``stream[i*L : i*L + L + 1]`` (inputs the first L tokens,
targets the last L), so every token is a target exactly once per epoch.
Within a row, ``segment_ids`` number the documents (attention stays inside
one), ``positions`` restart at each document start and at the row start, and
``loss_mask`` drops the one target that crosses from a document's EOS into the
next document.

Fine-tuning: whole examples (a conversation with its per-token loss flags) are
packed into rows without splitting one across rows (`pack_examples`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxllm.data.tokenizer import BOS, EOS
from jaxllm.errors import UserError


@dataclasses.dataclass(frozen=True)
class TokenStream:
    """Documents as one token stream; works the same on in-memory arrays and memory-mapped files."""

    tokens: np.ndarray      # [N] uint16/uint32/int32: BOS doc EOS BOS doc EOS ...
    doc_starts: np.ndarray  # [D] int64, ascending: where each document's BOS is

    def doc_ids(self, idx: np.ndarray) -> np.ndarray:
        """Document number of each stream position in ``idx`` (any shape)."""
        return np.searchsorted(self.doc_starts, idx, side="right") - 1


def build_stream(token_lists: list[list[int]], bos: int = BOS, eos: int = EOS) -> TokenStream:
    toks = [np.asarray([bos, *t, eos], np.int32) for t in token_lists]
    lengths = np.array([len(t) for t in toks], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    tokens = np.concatenate(toks) if toks else np.zeros(0, np.int32)
    return TokenStream(tokens, starts)


def num_rows(stream: TokenStream, seq_len: int) -> int:
    return max(len(stream.tokens) - 1, 0) // seq_len


def pack_rows(stream: TokenStream, rows: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
    """Rows ``rows [B]`` of the stream as a batch of ``[B, L]`` arrays."""
    starts = np.asarray(rows, np.int64)[:, None] * seq_len
    idx = starts + np.arange(seq_len + 1)[None, :]  # [B, L+1]
    toks, docs = np.asarray(stream.tokens[idx]).astype(np.int32), stream.doc_ids(idx)
    inputs, targets = toks[:, :-1], toks[:, 1:]
    in_docs, tgt_docs = docs[:, :-1], docs[:, 1:]
    new_seg = np.concatenate([np.ones_like(in_docs[:, :1], bool), in_docs[:, 1:] != in_docs[:, :-1]], axis=1)
    segment_ids = np.cumsum(new_seg, axis=1).astype(np.int32)  # 1, 1, 2, 2, 2, 3, ...
    col = np.broadcast_to(np.arange(seq_len), inputs.shape)
    seg_start = np.maximum.accumulate(np.where(new_seg, col, 0), axis=1)
    positions = (col - seg_start).astype(np.int32)
    return {
        "inputs": inputs.astype(np.int32),
        "targets": targets.astype(np.int32),
        "segment_ids": segment_ids,
        "positions": positions,
        "loss_mask": (in_docs == tgt_docs).astype(np.float32),
    }


class RowBatches:
    """Global batches of rows ``fetch(row_ids) -> {name: [B, ...]}``, shuffled per epoch, with a JSON-able position.

    Each process gets its own slice of every global batch, so ``N`` processes
    together see exactly the rows one process would. ``state()`` / ``restore()``
    make a resumed run see the same batches as an uninterrupted one.
    """

    def __init__(self, n_rows: int, fetch, global_batch: int, *, seed: int, shuffle: bool = True,
                 process_index: int = 0, process_count: int = 1, what: str = "rows"):
        self.fetch, self.n_rows, self.global_batch = fetch, n_rows, global_batch
        self.seed, self.shuffle = seed, shuffle
        if self.n_rows < global_batch:
            raise UserError(f"the training data packs into only {self.n_rows} {what}, fewer than "
                            f"train.batch_size = {global_batch}; add data or lower train.batch_size / train.seq_len.")
        if global_batch % process_count:
            raise UserError(f"train.batch_size = {global_batch} does not divide across {process_count} processes.")
        self.local = global_batch // process_count
        self.offset = process_index * self.local
        self.epoch, self.index = 0, 0

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n_rows)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_rows)

    def next_rows(self) -> np.ndarray:
        """The global batch's row ids; the last partial batch of an epoch is dropped."""
        if self.index + self.global_batch > self.n_rows:
            self.epoch, self.index = self.epoch + 1, 0
        rows = self._order(self.epoch)[self.index: self.index + self.global_batch]
        self.index += self.global_batch
        return rows

    def next_local_rows(self) -> np.ndarray:
        """This process's slice of the next global batch's row ids."""
        return self.next_rows()[self.offset: self.offset + self.local]

    def __next__(self) -> dict[str, np.ndarray]:
        return self.fetch(self.next_local_rows())

    def __iter__(self):
        return self

    def state(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed, "n_rows": self.n_rows}

    def restore(self, state: dict) -> None:
        if state.get("n_rows") != self.n_rows:
            raise UserError(f"the checkpoint's data position is for {state.get('n_rows')} rows, but the data now packs "
                            f"into {self.n_rows}; the data or train.seq_len changed since the checkpoint was written. "
                            "Resume with the same data, or start a new run dir with init_from.")
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


class BatchIterator(RowBatches):
    """`RowBatches` over the packed rows of a document stream (pre-training)."""

    def __init__(self, stream: TokenStream, seq_len: int, global_batch: int, **kw):
        self.stream, self.seq_len = stream, seq_len
        super().__init__(num_rows(stream, seq_len), lambda rows: pack_rows(stream, rows, seq_len), global_batch,
                         what=f"rows of {seq_len} tokens", **kw)


def pack_examples(examples: list[tuple[list[int], list[int]]], seq_len: int) -> tuple[dict[str, np.ndarray], dict]:
    """Whole examples ``(tokens, targets)`` packed in order into rows ``[R, seq_len]``, and packing statistics.

    Each example contributes ``inputs = tokens[:-1]``, ``targets = tokens[1:]`` and
    ``loss_mask = targets_flag[1:]``; a row holds as many whole examples as fit
    (segment ids 1, 2, ...; positions restart), the rest is padding (segment 0,
    no loss). An example longer than ``seq_len + 1`` tokens is cut (counted).
    """
    rows, cur, used, truncated = [], [], 0, 0
    for toks, flags in examples:
        if len(toks) > seq_len + 1:
            toks, flags, truncated = toks[: seq_len + 1], flags[: seq_len + 1], truncated + 1
        n = len(toks) - 1
        if n < 1:
            continue
        if used + n > seq_len:
            rows.append(cur)
            cur, used = [], 0
        cur.append((toks, flags))
        used += n
    if cur:
        rows.append(cur)
    out = {k: np.zeros((len(rows), seq_len), np.int32) for k in ("inputs", "targets", "segment_ids", "positions")}
    out["loss_mask"] = np.zeros((len(rows), seq_len), np.float32)
    for r, row in enumerate(rows):
        at = 0
        for seg, (toks, flags) in enumerate(row, 1):
            n = len(toks) - 1
            sl = slice(at, at + n)
            out["inputs"][r, sl], out["targets"][r, sl] = toks[:-1], toks[1:]
            out["loss_mask"][r, sl] = flags[1:]
            out["segment_ids"][r, sl], out["positions"][r, sl] = seg, np.arange(n)
            at += n
    stats = {"examples": len(examples), "rows": len(rows), "truncated": truncated,
             "fill": float((out["segment_ids"] > 0).mean()) if rows else 0.0,
             "target_tokens": int(out["loss_mask"].sum())}
    return out, stats


def take_rows(arrays: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in arrays.items()}


def fixed_batches(n_rows: int, fetch, global_batch: int, n_batches: int,
                  process_index: int = 0, process_count: int = 1) -> list[dict[str, np.ndarray]]:
    """A fixed list of held-out batches: rows in order, wrapping around if there are few."""
    local = global_batch // process_count
    out = []
    for b in range(n_batches):
        rows = (np.arange(global_batch) + b * global_batch) % n_rows
        out.append(fetch(rows[process_index * local:(process_index + 1) * local]))
    return out


def eval_batches(stream: TokenStream, seq_len: int, global_batch: int, n_batches: int,
                 process_index: int = 0, process_count: int = 1) -> list[dict[str, np.ndarray]]:
    """Held-out batches of a document stream's packed rows."""
    n = num_rows(stream, seq_len)
    if n == 0:
        raise UserError(f"the evaluation split is shorter than one row of {seq_len} tokens; "
                        "raise data.eval_fraction or lower train.seq_len.")
    return fixed_batches(n, lambda rows: pack_rows(stream, rows, seq_len), global_batch, n_batches,
                         process_index, process_count)
