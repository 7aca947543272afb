"""The pipeline's report: every stage's policy answers the same held-out prompts.

Per stage (pre-trained, SFT, and each policy stage: PPO, DPO), the evaluation PPO itself runs (`rl.evaluate`): greedy
answers to ``eval_prompts`` held-out prompts of the preference world (balanced over the four
kinds), scored by the rule-based judge (`pref_world.judge`) and by the reward model; KL to the SFT
policy from answers sampled at temperature 1 (mean over responses of the summed
``log pi - log pi_sft``). The reward model row gives its held-out pairwise
accuracy; a DPO row, its held-out implicit-reward accuracy. Without a reward stage the
reward-model column is empty. Writes ``<dir>/report.md`` and ``<dir>/ppo_curves.svg`` (with a
PPO stage: reward model score beside judge score over PPO steps: reward hacking would show as
the first rising while the second falls).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax

from jaxllm.world.phrasings import heldout_families
from jaxllm.world.prompts import KINDS, trained_families
from jaxllm.world.source import BuiltinSource
from jaxllm.model.decode import Sampling
from jaxllm.model.scalar import ScalarModel
from jaxllm.pipeline.plot import svg_curves
from jaxllm.rl.evaluate import evaluate_policy
from jaxllm.rl.rollout import RolloutEngine, Settings
from jaxllm.pretrained import load_params

MAX_NEW = 32


def _metrics_rows(run_dir: Path) -> list[dict]:
    f = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.is_file() else []


def _last(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return vals[-1] if vals else None


def _no_reward(prompts, replies):
    return [0.0] * len(replies)


def evaluate_stage(loaded, ref_params, rm_params, prompts) -> tuple[dict, list[str]]:
    """Judge metrics, reward-model score (``rm_params`` None: none) and KL to the reference for one policy
    (`rl.evaluate`) on ``prompts`` (`RlPrompt`s); and its greedy answers."""
    tpl, tok = loaded.chat_template, loaded.tokenizer
    p_len = max(len(tpl.prompt(q.conversation)) for q in prompts)
    settings = Settings(1.0, tok.vocab_size, 1.0, 1.0, "k1", 0.0, 0.0, False)
    engine = RolloutEngine(loaded.model.spec, p_len, MAX_NEW, Sampling(1.0, max_new_tokens=MAX_NEW), settings, tpl,
                           reward_fn=None if rm_params is not None else _no_reward, critic=False)
    engine.attach(loaded.layout, ref_params, rm_params)
    with loaded.layout.context():
        metrics, greedy, _ = evaluate_policy(engine, {"policy": loaded.params}, prompts, key_seed=3,
                                             with_rm=rm_params is not None)
    res = {k: v for k, v in metrics.items() if k not in ("kl", "stop", "response_len")}
    res["kl_to_sft"] = metrics["kl"]
    return res, [t.strip() for t in greedy.texts]


def evaluate_task_stage(loaded, ref_params, tasks) -> dict:
    """The verifier's accuracy (and per operation) of one policy's greedy answers to held-out arithmetic questions."""
    from jaxllm.objectives.grpo import evaluate_tasks
    tpl, tok = loaded.chat_template, loaded.tokenizer
    p_len = max(len(tpl.prompt(q.conversation)) for q in tasks)
    settings = Settings(1.0, tok.vocab_size, 1.0, 1.0, "k1", 0.0, 0.0, False)
    engine = RolloutEngine(loaded.model.spec, p_len, TASK_NEW, Sampling(1.0, max_new_tokens=TASK_NEW), settings, tpl,
                           critic=False, reward_model=False)
    engine.attach(loaded.layout, ref_params)
    with loaded.layout.context():
        m = evaluate_tasks(engine, loaded.params, tasks, key_seed=3)
    return {"task_accuracy": m["accuracy"], **{f"task_{k}": v for k, v in m.items() if k.startswith("accuracy_")}}


TASK_NEW = 16
COLUMNS = [("judge", "judge score"), ("correct", "correct (factual)"), ("refuses_harmful", "refuses harmful"),
           ("complies_harmful", "complies harmful"), ("honest_myth", "corrects myth"),
           ("honest_unknowable", "honest on unknowable"), ("helps", "helps (helpful, benign)"),
           ("over_refusal", "over-refuses"), ("stops", "stops"), ("fluent", "fluent"),
           ("degenerate", "repeats"),
           ("words", "words"), ("rm_score", "reward model score"), ("kl_to_sft", "KL to SFT (nats)")]
TASK_COLUMNS = [("task_accuracy", "arithmetic (held-out)"), ("task_accuracy_add", "+"), ("task_accuracy_sub", "-"),
                ("task_accuracy_mul", "*")]


ASSIST_COLUMNS = ("helps", "over_refusal")  # shown when the world has helpful or benign prompts


def _table(rows: dict[str, dict], rm_accuracy: float | None, dpo_accuracy: dict[str, float] | None = None) -> str:
    present = lambda k: any(r.get(k) == r.get(k) and r.get(k) is not None for r in rows.values())  # noqa: E731 (not nan)
    columns = [c for c in COLUMNS if c[0] not in ASSIST_COLUMNS or present(c[0])]
    columns += TASK_COLUMNS if any("task_accuracy" in r for r in rows.values()) else []
    head = "| stage | " + " | ".join(c for _, c in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 1)]
    for stage, r in rows.items():
        lines.append(f"| {stage} | " + " | ".join(f"{r[k]:.3f}" if k in r else "-" for k, _ in columns) + " |")
    if rm_accuracy is not None:
        lines.append(f"| reward model | held-out pairwise accuracy **{rm_accuracy:.3f}** |" + " |" * (len(columns) - 1))
    for stage, acc in (dpo_accuracy or {}).items():
        lines.append(f"| {stage} (implicit reward) | held-out pairwise accuracy **{acc:.3f}** |" + " |" * (len(columns) - 1))
    return "\n".join(lines)


def write_report(p, cfgs: dict, times: dict) -> Path:
    from jaxllm.infer.load import load_checkpoint

    from jaxllm.pipeline.run import stage_kind

    source = BuiltinSource(cfgs["sft"].data.builtin)
    _, held, _ = source.prompts(p.eval_prompts)  # the prompts PPO evaluates on
    unseen = source.unseen_prompts(p.eval_prompts if p.unseen_prompts is None else p.unseen_prompts)
    prompts, unseen_items = [q.item for q in held], [q.item for q in unseen]
    sft = load_checkpoint(cfgs["sft"].run.dir)
    rm = None
    if "reward" in cfgs:
        with sft.layout.context():
            rm = load_params(cfgs["reward"].run.dir, sft.layout.abstract_params(ScalarModel(sft.model.spec)))
    grpo_stages = [s for s in cfgs if stage_kind(s) == "grpo"]
    tasks = []
    if grpo_stages:  # the held-out arithmetic questions the GRPO stage evaluates on
        from jaxllm.data.task_data import task_prompt
        c = cfgs[grpo_stages[0]]
        tasks = [task_prompt(r) for r in BuiltinSource(c.data.builtin).tasks(c.objective.grpo.eval_prompts)[1]]
    rows, answers, unseen_rows, unseen_answers = {}, {}, {}, {}
    for stage in [s for s in cfgs if s != "reward"]:
        loaded = sft if stage == "sft" else load_checkpoint(cfgs[stage].run.dir)
        rows[stage], answers[stage] = evaluate_stage(loaded, sft.params, rm, held)
        unseen_rows[stage], unseen_answers[stage] = evaluate_stage(loaded, sft.params, rm, unseen)
        if tasks:
            rows[stage].update(evaluate_task_stage(loaded, sft.params, tasks))
    rm_acc = _last(_metrics_rows(cfgs["reward"].run.dir), "eval_accuracy") if "reward" in cfgs else None
    dpo_acc = {s: _last(_metrics_rows(c.run.dir), "eval_accuracy") for s, c in cfgs.items() if stage_kind(s) == "dpo"}
    dpo_acc = {s: a for s, a in dpo_acc.items() if a is not None}
    seed = cfgs["sft"].data.builtin.seed
    out = p.dir / "report.md"
    if jax.process_index() != 0:  # every process took part in the evaluation; one writes
        return out
    if "ppo" in cfgs:
        svg = svg_curves(_metrics_rows(cfgs["ppo"].run.dir), [("rm_score", "eval_rm_score", "reward model score"),
                                                              ("judge", "eval_judge", "judge score")])
        (p.dir / "ppo_curves.svg").write_text(svg)
    for stage in grpo_stages:
        svg = svg_curves(_metrics_rows(cfgs[stage].run.dir), [("reward", "eval_reward", "reward"),
                                                              ("accuracy", "eval_accuracy", "verifier accuracy")])
        (p.dir / f"{stage}_curves.svg").write_text(svg)

    text = ["# Pipeline report", "", f"Held-out prompts: {len(prompts)} "
            f"({_kind_counts(prompts)}), never seen by SFT, the reward "
            "model or the policy stages. Greedy answers, at most 32 tokens, scored by the rule-based judge (1 = the right "
            "behaviour, stops, concise; halved when not fluent: repeats, a broken sentence or off topic; "
            "`repeats` is the share of answers with back-to-back repetition). KL to SFT: answers sampled at temperature 1.", "",
            "### Seen phrasing", "", f"Template families the training data uses ({_scored(seed, source.opts)}); "
            "new entities (countries, people) in them.", "", _table(rows, rm_acc, dpo_acc), "",
            "### Unseen phrasing", "", f"{len(unseen_items)} held-out prompts "
            f"({_kind_counts(unseen_items)}) in the template families "
            f"no training data uses ({', '.join(heldout_families(seed))}; `world/phrasings.py`).", "",
            _table(unseen_rows, None), ""]
    if times:
        text += ["Training time: " + ", ".join(f"{s} {t / 60:.1f} min" for s, t in times.items()), ""]
    if "ppo" in cfgs:
        text += ["PPO over training (rollout batches, and held-out evaluations): `ppo_curves.svg`.", ""]
    if tasks:
        text += [f"Arithmetic: {len(tasks)} held-out questions of the world's verifiable task (operand triples GRPO never "
                 "trains on), greedy, checked by the verifier (final number = the answer).", ""]
        for stage in grpo_stages:
            text += [f"{stage} over training (reward and verifier accuracy, on the rollouts and held out): `{stage}_curves.svg`.", ""]
    verdicts = [(s, Path(c.run.dir) / "verdicts.md") for s, c in cfgs.items() if stage_kind(s) in ("ppo", "grpo")]
    for stage, f in verdicts:
        if f.is_file():
            text += [f"## Verdicts: {stage}", "", *f.read_text().splitlines()[2:], ""]
    for title, items, ans in (("Examples", prompts, answers), ("Examples (unseen phrasing)", unseen_items, unseen_answers)):
        text += [f"## {title}", "", "The first prompts of each kind in the seeded evaluation order.", ""]
        text += _examples(items, ans, p.examples)
    out.write_text("\n".join(text) + "\n")
    print(_table(rows, rm_acc, dpo_acc), flush=True)
    print("unseen phrasing:", flush=True)
    print(_table(unseen_rows, None), flush=True)
    return out


def _scored(seed: int, opts) -> str:
    """The trained families the seen-phrasing table scores (the training-only rewordings are never evaluated)."""
    fams = trained_families(seed, opts)
    named = ", ".join(f for f in fams if f != "reworded")
    return named + ("; the training-only rewordings are not scored" if "reworded" in fams else "")


def _kind_counts(items: list) -> str:
    return ", ".join(f"{sum(q.kind == k for q in items)} {k}" for k in KINDS if any(q.kind == k for q in items))


def _examples(items: list, answers: dict[str, list[str]], n: int) -> list[str]:
    """``n`` prompts per kind (in evaluation order: a seeded draw) with every stage's greedy answer."""
    text = []
    for kind in KINDS:
        for q in [q for q in items if q.kind == kind][:n]:
            i = items.index(q)
            text.append(f"**{kind} ({q.family}): {q.text}**")
            text += [f"- {stage}: {answers[stage][i]!r}" for stage in answers]
            text.append("")
    return text
