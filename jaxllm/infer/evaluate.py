"""`jaxllm eval`: question answering accuracy and perplexity of a checkpoint.

Questions: ``builtin`` (every attribute of the built-in world's countries and
people that SFT never showed; ``builtin:train`` for those it did) or a JSONL
file of ``{"question", "answer": str | [str], "contains": str | [str]?}``.
A reply scores *exact match* when, normalised (case, punctuation, articles,
spaces), it equals an answer, and *contains* when it includes a ``contains``
string (default: the answers) as whole words. Replies are greedy.

Prompt formats: ``chat`` (the chat template; the reply ends at ``<|end|>``)
or ``qa`` (``Question: ...\\nAnswer:`` as plain text, reply cut at the first
newline) for models that never saw the template, the fair baseline for a
pre-trained-only model.
"""

from __future__ import annotations

import math
import re
import string
from collections import defaultdict
from pathlib import Path

import jax
import numpy as np

from jaxllm.data.chat import Message
from jaxllm.data.readers import BadRecords, expand_paths, iter_jsonl, read_text
from jaxllm.errors import UserError
from jaxllm.infer.load import Loaded
from jaxllm.model.decode import Sampling


def normalize(text: str) -> str:
    """SQuAD-style: lower case, no punctuation or articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _as_list(v) -> list[str]:
    return [str(x) for x in v] if isinstance(v, list) else [str(v)]


def load_questions(spec: str, loaded: Loaded) -> list[dict]:
    """``[{"question", "answers", "contains", "kind"}]`` from ``builtin[:heldout|:train]`` or a JSONL file."""
    if spec.startswith("builtin"):
        from jaxllm.world.chats import builtin_questions
        which = spec.partition(":")[2] or "heldout"
        if which not in ("heldout", "train"):
            raise UserError(f"--questions {spec}: use builtin, builtin:heldout or builtin:train.")
        d = loaded.cfg.data
        return [{"question": q.question, "answers": [q.answer], "contains": [q.short], "kind": q.kind}
                for q in builtin_questions(which, d.builtin.seed, d.builtin.heldout)]
    out, bad = [], BadRecords("raise", hint="")
    for path in expand_paths([spec]):
        for line, rec in iter_jsonl(Path(path), bad):
            if not isinstance(rec.get("question"), str) or "answer" not in rec:
                raise UserError(f"{path}:{line}: a question record needs \"question\" (string) and \"answer\" "
                                "(string or list); optional \"contains\".")
            answers = _as_list(rec["answer"])
            out.append({"question": rec["question"], "answers": answers,
                        "contains": _as_list(rec.get("contains", answers)), "kind": str(rec.get("kind", "all"))})
    return out


def _contains(reply: str, needle: str) -> bool:
    return f" {normalize(needle)} " in f" {normalize(reply)} "


def qa_accuracy(loaded: Loaded, questions: list[dict], prompt_format: str = "chat", max_new_tokens: int = 32,
                batch_size: int = 64, seed: int = 0) -> dict:
    """Greedy replies scored by exact match and contains-answer; per question kind too."""
    sampling = Sampling(temperature=0.0, max_new_tokens=max_new_tokens)
    key = jax.random.PRNGKey(seed)
    if prompt_format == "chat":
        outs = loaded.reply([[Message("user", q["question"])] for q in questions], sampling, key)
        replies, stopped = [o["text"] for o in outs], [o["stopped"] for o in outs]
    elif prompt_format == "qa":
        texts = loaded.complete([f"Question: {q['question']}\nAnswer:" for q in questions], sampling, key)
        replies = [t.strip().split("\n")[0].strip() for t in texts]
        stopped = ["\n" in t.strip() for t in texts]
    else:
        raise UserError(f"--prompt-format {prompt_format!r}: use chat or qa.")
    per_kind = defaultdict(lambda: [0, 0, 0])
    rows = []
    for q, reply, stop in zip(questions, replies, stopped):
        em = any(normalize(reply) == normalize(a) for a in q["answers"])
        cont = any(_contains(reply, c) for c in q["contains"])
        k = per_kind[q["kind"]]
        k[0], k[1], k[2] = k[0] + 1, k[1] + em, k[2] + cont
        rows.append({**q, "reply": reply, "exact_match": em, "contains_answer": cont, "stopped": stop})
    n = max(len(rows), 1)
    return {
        "questions": len(rows),
        "exact_match": sum(r["exact_match"] for r in rows) / n,
        "contains_answer": sum(r["contains_answer"] for r in rows) / n,
        "stopped": sum(r["stopped"] for r in rows) / n,
        "by_kind": {k: {"n": v[0], "exact_match": v[1] / v[0], "contains_answer": v[2] / v[0]} for k, v in sorted(per_kind.items())},
        "rows": rows,
    }


def perplexity(loaded: Loaded, paths: list[str], seq_len: int | None = None, batch_size: int = 8) -> dict:
    """Token-level perplexity of plain-text (documents split by blank lines) or JSONL (``text``) files.

    Documents are packed into rows of ``seq_len`` (default: the model's max) like pre-training; every token but
    each document's first is scored once.
    """
    from jaxllm.data.packing import build_stream, num_rows, pack_rows
    from jaxllm.data.readers import read_jsonl
    from jaxllm.objectives.pretrain import make_lm_loss

    docs = []
    for p in expand_paths(paths):
        docs += read_jsonl(p, "text") if ".jsonl" in p.name else read_text(p)
    if not docs:
        raise UserError(f"--text {paths}: no documents.")
    tok = loaded.tokenizer
    seq_len = seq_len or min(loaded.model.spec.max_seq_len, 1024)
    stream = build_stream(tok.encode(docs), tok.bos_id, tok.eos_id)
    n = num_rows(stream, seq_len)
    if n == 0:
        raise UserError(f"--text {paths}: shorter than one row of {seq_len} tokens; lower --seq-len.")
    layout = loaded.layout
    loss_fn = jax.jit(make_lm_loss(loaded.model))
    total, count = 0.0, 0.0
    with layout.context():
        div = layout.batch_divisor
        b = -(-batch_size // div) * div
        for start in range(0, n, b):
            rows = np.arange(start, start + b) % n
            batch = pack_rows(stream, rows, seq_len)
            batch["loss_mask"][start + np.arange(b) >= n] = 0.0  # wrapped-around padding rows
            s, c, _ = layout.to_host(loss_fn(loaded.params, layout.global_batch(batch)))
            total, count = total + float(s), count + float(c)
    nll = total / max(count, 1.0)
    return {"documents": len(docs), "tokens": int(count), "nll": nll, "perplexity": math.exp(min(nll, 50.0))}
