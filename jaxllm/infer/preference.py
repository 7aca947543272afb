"""``jaxllm eval RUN --pairs FILE``: how often a reward model or a DPO policy ranks preference data right.

Records as the reward model reads them (`data/pref_data.py`: rankings, pairs, HH-RLHF dialogues).
Every ordered pair (i better than j) of a ranking counts once; a pair is right when the run's
score of i is strictly higher: the reward model's scalar for a reward run, the implicit reward
``beta * (log pi - log ref)`` (per the run's loss type) for a DPO run, whose reference is its
``init_from`` (or, without one, its own first parameters: the init of its seed). Beside it, the length-only baseline: "the shorter response wins" (ties count half).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import jax
import numpy as np

from jaxllm.errors import UserError


def _pair_accuracy(scores: np.ndarray, n_ranked: np.ndarray) -> tuple[int, int]:
    right = pairs = 0
    for s, n in zip(scores, n_ranked):
        for i, j in itertools.combinations(range(int(n)), 2):
            pairs += 1
            right += bool(s[i] > s[j])
    return right, pairs


def _length_baseline(rankings) -> float:
    score = pairs = 0.0
    for r in rankings:
        lens = [len(c.text) for c in r.responses]
        for i, j in itertools.combinations(range(len(lens)), 2):
            pairs += 1
            score += 1.0 if lens[i] < lens[j] else 0.5 if lens[i] == lens[j] else 0.0
    return score / max(pairs, 1)


def _fresh_init(cfg, model, layout):
    """A DPO run without ``init_from`` took a frozen copy of its own first parameters: the same init, same seed."""
    from jaxllm.train.optimizer import make_optimizer
    from jaxllm.train.state import sharded_init

    tx, _ = make_optimizer(cfg.optimizer, cfg.train.steps)
    init, _, _ = sharded_init(model, tx, cfg.train.seq_len, layout.mesh, layout.rules)
    return init(jax.random.PRNGKey(cfg.seed)).params


def preference_accuracy(path: str | Path, files: list[str], on_error: str = "skip", batch: int = 32) -> dict:
    """Accuracy of the run at ``path`` on the rankings in ``files``, with the length baseline and what was skipped."""
    from jaxllm.config import load_config
    from jaxllm.data.chat import chat_template
    from jaxllm.data.pref_data import encode_rankings, read_ranking_files
    from jaxllm.data.tokenizer import Tokenizer, tokenizer_file
    from jaxllm.model import Transformer, resolve_spec
    from jaxllm.model.scalar import ScalarModel, sequence_scores
    from jaxllm.objectives.dpo import map_responses, sequence_logps
    from jaxllm.objectives.preference_losses import implicit_rewards
    from jaxllm.parallel.layout import Layout
    from jaxllm.parallel.mesh import make_mesh
    from jaxllm.pretrained import load_params
    from jaxllm.run_dir import find_run_dir

    run_dir = find_run_dir(path)
    cfg = load_config(run_dir / "config.yaml", ["mesh.data=-1", "mesh.fsdp=1", "mesh.tensor=1"])
    kind = cfg.objective.name
    if kind not in ("reward", "dpo"):
        raise UserError(f"--pairs: {run_dir} is a {kind} run; preference accuracy needs a reward model run (its "
                        "scores) or a DPO run (its implicit reward).")
    tok = Tokenizer.load(tokenizer_file(run_dir) or run_dir / "tokenizer.model")
    template = chat_template(tok)
    rankings, report = read_ranking_files(files, on_error)
    k = max(len(r.responses) for r in rankings)
    arrays, cut = encode_rankings(template, rankings, k, cfg.train.seq_len, response_mask=True)
    spec = resolve_spec(cfg.model, tok.vocab_size)
    layout = Layout(make_mesh(cfg.mesh), cfg.mesh.rules)
    with layout.context():
        if kind == "reward":
            model = ScalarModel(spec)
            params = load_params(str(path), layout.abstract_params(model))
            fn = jax.jit(lambda t, m, r: sequence_scores(model, params, t, m))
            scores = map_responses(fn, arrays, batch, layout)
        else:
            c = cfg.objective.dpo
            model = Transformer(spec)
            abstract = layout.abstract_params(model)
            logp_fn = jax.jit(lambda p, t, m, r: sequence_logps(model, p, t, m, r))

            def logps(params):
                return map_responses(lambda t, m, r: logp_fn(params, t, m, r)[0], arrays, batch, layout)

            logp = logps(load_params(str(path), abstract))
            if c.loss_type == "simpo":
                ref = np.zeros_like(logp)
            else:
                ref = logps(load_params(cfg.init_from, abstract) if cfg.init_from else _fresh_init(cfg, model, layout))
            n_tok = arrays["response"][..., 1:].sum(-1)  # scored tokens per response: a host sum, no device pass
            scores = np.asarray(implicit_rewards(c.loss_type, logp, ref, n_tok, c.beta))
    right, pairs = _pair_accuracy(scores, arrays["n_ranked"])
    return {"run": str(run_dir), "kind": kind, "files": list(files), "rankings": len(rankings), "pairs": pairs,
            "accuracy": right / max(pairs, 1), "length_baseline": _length_baseline(rankings),
            "skipped_records": report["skipped_records"], "skipped_examples": report["skipped_examples"][:3],
            "responses_cut": cut, "score": "reward model score" if kind == "reward" else "implicit reward"}

