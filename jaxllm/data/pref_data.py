"""Ranked responses for the reward model: read, encode, split.

Records (JSONL, ``.gz`` too), detected per record:

- ranking: ``{"prompt": str, "responses": [best, ..., worst]}`` (K >= 2);
- pair: ``{"prompt"?: str, "chosen": str, "rejected": str}``;
- HH-RLHF: ``{"chosen": dialogue, "rejected": dialogue}`` with ``\\n\\nHuman:`` / ``\\n\\nAssistant:`` turns;
  the shared history is the prompt, each dialogue's last assistant turn a response.

Each response is encoded as the whole chat ``prompt + <|assistant|> response <|end|>``
(no ``<|end|>`` for a built-in answer that never stops), right-padded to
``train.seq_len``; prompts too long for it lose their oldest tokens (counted).
Arrays: ``tokens [N, K, L]`` int32, ``mask [N, K, L]`` (1 on real tokens),
``n_ranked [N]`` (responses present; the rest are padding copies).
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np

from jaxllm.config.schema import Config
from jaxllm.data.chat import ChatTemplate, chat_template, Conversation, Message
from jaxllm.data.chat_sources import BadChat, parse_hh
from jaxllm.data.prepare import get_tokenizer
from jaxllm.data.readers import read_records
from jaxllm.data.sources import open_source, train_and_held_out
from jaxllm.data.tokenizer import Tokenizer


@dataclasses.dataclass(frozen=True)
class Candidate:
    text: str
    stops: bool          # False: the answer never ends its turn (cut at the length limit)


@dataclasses.dataclass(frozen=True)
class Ranking:
    prompt: Conversation
    responses: tuple[Candidate, ...]   # best first


def _from_hh(rec: dict) -> Ranking:
    chosen, rejected = parse_hh(rec["chosen"]), parse_hh(rec["rejected"])
    if chosen[-1].role != "assistant" or rejected[-1].role != "assistant":
        raise BadChat("a dialogue does not end with an Assistant turn")
    if chosen[:-1] != rejected[:-1]:
        raise BadChat("chosen and rejected differ before their last turn")
    return Ranking(chosen[:-1], (Candidate(chosen[-1].content, True), Candidate(rejected[-1].content, True)))


def _checked(r: Ranking) -> Ranking:
    """Refuse what no preference loss can learn from: an empty response, or two identical ones."""
    texts = [c.text.strip() for c in r.responses]
    for i, t in enumerate(texts):
        if not t:
            raise BadChat(f"response {i + 1} of {len(texts)} is empty")
    for i, j in itertools.combinations(range(len(texts)), 2):
        if texts[i] == texts[j]:
            raise BadChat(f"responses {i + 1} and {j + 1} are identical: nothing to prefer (chosen = rejected?)")
    return r


def record_to_ranking(rec: dict) -> Ranking:
    return _checked(_record_to_ranking(rec))


def _record_to_ranking(rec: dict) -> Ranking:
    if "responses" in rec:
        resp = rec["responses"]
        if not isinstance(resp, list) or len(resp) < 2 or not all(isinstance(r, str) for r in resp):
            raise BadChat("'responses' must be a list of at least 2 strings, best first")
        if not isinstance(rec.get("prompt"), str):
            raise BadChat("a ranking needs a 'prompt' string")
        return Ranking([Message("user", rec["prompt"])], tuple(Candidate(r, True) for r in resp))
    if "chosen" in rec and "rejected" in rec:
        if not all(isinstance(rec[k], str) for k in ("chosen", "rejected")):
            raise BadChat("'chosen' and 'rejected' must be strings")
        if "\n\nHuman:" in rec["chosen"]:
            return _from_hh(rec)
        if not isinstance(rec.get("prompt"), str):
            raise BadChat("a pair needs a 'prompt' string (or HH-RLHF dialogues in chosen/rejected)")
        return Ranking([Message("user", rec["prompt"])], (Candidate(rec["chosen"], True), Candidate(rec["rejected"], True)))
    raise BadChat(f"keys {sorted(rec)}: expected prompt+responses, or chosen+rejected")


def read_ranking_files(paths: list[str], on_error: str) -> tuple[list[Ranking], dict]:
    return read_records(paths, on_error, lambda rec: [record_to_ranking(rec)], "rankings or pairs")


def encode_response(template: ChatTemplate, prompt: Conversation, c: Candidate) -> tuple[list[int], list[int]]:
    """Tokens of the whole chat and the response mask (1 on the assistant's tokens and its ``<|end|>``). A
    response that does not stop (cut at a length limit) ends before its turn's closing token and whatever the
    template writes after it (ChatML's newline after ``<|im_end|>``)."""
    toks, targets = template.encode([*prompt, Message("assistant", c.text)])
    if c.stops:
        return toks, targets
    ends = [i for i, (t, f) in enumerate(zip(toks, targets)) if f and t in template.stop_ids]
    cut = ends[-1] if ends else len(toks) - 1
    return toks[:cut], targets[:cut]


def encode_rankings(template: ChatTemplate, rankings: list[Ranking], k: int, seq_len: int,
                    response_mask: bool = False) -> tuple[dict, int]:
    """``({"tokens", "mask" [N, K, L], "n_ranked" [N]}, responses cut)``; missing responses repeat the last one.

    ``response_mask``: also ``"response" [N, K, L]``, 1 on response tokens (what preference losses score).
    """
    n = len(rankings)
    tokens = np.zeros((n, k, seq_len), np.int32)
    mask = np.zeros((n, k, seq_len), np.float32)
    response = np.zeros((n, k, seq_len), np.float32)
    n_ranked = np.zeros((n,), np.int32)
    cut = 0
    for i, r in enumerate(rankings):
        resp = r.responses[:k]
        n_ranked[i] = len(resp)
        for j in range(k):
            t, m = encode_response(template, r.prompt, resp[min(j, len(resp) - 1)])
            if len(t) > seq_len:
                t, m, cut = t[-seq_len:], m[-seq_len:], cut + (j < len(resp))
            tokens[i, j, :len(t)] = t
            mask[i, j, :len(t)] = 1.0
            response[i, j, :len(m)] = m
    out = {"tokens": tokens, "mask": mask, "n_ranked": n_ranked}
    if response_mask:
        out["response"] = response
    return out, cut


@dataclasses.dataclass
class PrefData:
    tokenizer: Tokenizer
    template: ChatTemplate
    train: dict[str, np.ndarray]
    eval: dict[str, np.ndarray]
    stats: dict


def load_pref_data(cfg: Config, run_dir: Path | None, max_responses: int, response_mask: bool = False) -> PrefData:
    """Rankings (or pairs) of the configured source as ``[N, K, L]`` arrays, K = at most ``max_responses``."""
    d = cfg.data
    rankings, report = open_source(d).rankings()
    train, held = train_and_held_out(d, rankings, lambda src: src.rankings())
    tok = get_tokenizer(cfg, run_dir, [t for r in train for t in [*(m.content for m in r.prompt), *(c.text for c in r.responses)]])
    template = chat_template(tok)
    k = min(max_responses, max(len(r.responses) for r in [*train, *held]))
    tr, cut = encode_rankings(template, train, k, cfg.train.seq_len, response_mask)
    ev, cut_eval = encode_rankings(template, held, k, cfg.train.seq_len, response_mask)
    stats = {**report, "rankings": {"train": len(train), "eval": len(held), "k": k, "cut": cut + cut_eval}}
    return PrefData(tok, template, tr, ev, stats)
