"""GRPO and kin: group advantages and the clipped loss against NumPy on hand-made groups (with masks), the
on-policy gradient, answer extraction on tricky strings, task records, reward-function errors, verdicts,
and runs: the arithmetic task learns, rollouts reuse the compiled sampler, resume, bad configs."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, SHARED_DATA
from jaxllm.errors import ConfigError, UserError
from jaxllm.rl.group import flat_groups, group_advantages, group_policy_loss
from jaxllm.rl.rewards import (answer_correct, check_scores, extract_answer, overlong_penalty, parse_weighted,
                               strict_answer)

sys.path.insert(0, str(ROOT / "tests"))


# ---------------------------------------------------------------- advantages

def _np_advantages(r, g, kind, eps, valid=None):
    """Plain loops over groups."""
    valid = np.ones_like(r) if valid is None else valid
    out = np.zeros_like(r)
    for start in range(0, len(r), g):
        idx = [i for i in range(start, start + g) if valid[i]]
        vals = np.array([r[i] for i in idx])
        for i in idx:
            if kind == "group_norm":
                out[i] = (r[i] - vals.mean()) / (vals.std(ddof=1) + eps)
            elif kind == "group_mean":
                out[i] = r[i] - vals.mean()
            else:  # leave one out
                others = [r[j] for j in idx if j != i]
                out[i] = r[i] - np.mean(others)
    return out


@pytest.mark.parametrize("kind", ["group_norm", "group_mean", "rloo"])
def test_group_advantages_match_numpy_on_hand_made_groups(kind):
    r = np.array([1, 0, 0, 1,  0, 0, 0, 0,  0.5, 2, -1, 3,  1, 1, 1, 0], np.float64)
    got = np.asarray(group_advantages(jnp.asarray(r, jnp.float32), 4, kind, eps=1e-4))
    np.testing.assert_allclose(got, _np_advantages(r, 4, kind, 1e-4), rtol=1e-5, atol=1e-6)
    assert np.all(got[4:8] == 0)  # a flat group gives no signal
    valid = np.array([1, 1, 1, 0] * 4, np.float32)  # one row per group left out of its statistics
    got = np.asarray(group_advantages(jnp.asarray(r, jnp.float32), 4, kind, 1e-4, jnp.asarray(valid)))
    np.testing.assert_allclose(got, _np_advantages(r, 4, kind, 1e-4, valid), rtol=1e-5, atol=1e-6)
    assert np.all(got[valid == 0] == 0)


def test_rloo_is_the_scaled_group_mean_and_flat_groups_are_found():
    r = jnp.asarray([3.0, 1.0, 2.0, 2.0, 5.0, 5.0])
    np.testing.assert_allclose(group_advantages(r, 3, "rloo"), 1.5 * group_advantages(r, 3, "group_mean"), rtol=1e-6)
    assert flat_groups(np.array([1, 1, 0, 1, 2, 2.0]), 2).tolist() == [True, False, True]


# ---------------------------------------------------------------- loss

def _np_loss(logp, old, ref, adv, mask, lo, hi, beta, agg):
    ratio = np.exp(logp - old)
    pg = -np.minimum(ratio * adv[:, None], np.clip(ratio, 1 - lo, 1 + hi) * adv[:, None])
    d = ref - logp
    kl = np.exp(d) - d - 1
    tok = (pg + beta * kl) * mask
    n_rows = (mask.sum(1) > 0).sum()
    if agg == "token_mean":
        return tok.sum() / mask.sum()
    if agg == "sequence_mean":
        lengths = mask.sum(1)
        return sum(tok[i].sum() / lengths[i] for i in range(len(tok)) if lengths[i]) / n_rows
    return tok.sum() / (n_rows * mask.shape[1])  # constant


@pytest.mark.parametrize("agg", ["sequence_mean", "token_mean", "constant"])
def test_group_loss_matches_numpy_with_decoupled_clip_kl_and_masks(agg):
    rng = np.random.default_rng(0)
    b, t = 5, 6
    mask = np.zeros((b, t), np.float32)
    for i, n in enumerate([6, 2, 4, 1, 5]):
        mask[i, :n] = 1
    logp = rng.normal(-2, 1, (b, t)).astype(np.float32)
    old = (logp + rng.normal(0, 0.4, (b, t))).astype(np.float32)  # ratios on both sides of both clips
    ref = (logp + rng.normal(0, 0.3, (b, t))).astype(np.float32)
    adv = np.array([1.0, -0.5, 2.0, -1.5, 0.0], np.float32)
    loss_sum, denom, m = group_policy_loss(*(jnp.asarray(x) for x in (logp, old, ref, adv, mask)), clip_low=0.2,
                                           clip_high=0.28, kl_coef=0.05, aggregation=agg)
    want = _np_loss(logp, old, ref, adv, mask, 0.2, 0.28, 0.05, agg)
    np.testing.assert_allclose(float(loss_sum / denom), want, rtol=1e-5)
    ratio = np.exp(logp - old)
    low = ((ratio < 0.8) & (adv[:, None] < 0)) * mask
    high = ((ratio > 1.28) & (adv[:, None] > 0)) * mask
    assert low.sum() > 0 and high.sum() > 0
    assert float(m["clip_low_frac"][0]) == low.sum() and float(m["clip_high_frac"][0]) == high.sum()
    d = ref - logp
    np.testing.assert_allclose(float(m["kl_k3"][0] / m["kl_k3"][1]), ((np.exp(d) - d - 1) * mask).sum() / mask.sum(),
                               rtol=1e-5)


def test_one_epoch_is_the_on_policy_policy_gradient():
    """With old log-probs equal to the current ones (the first update after sampling), the clipped loss's
    gradient is REINFORCE's with the group advantage: d/dtheta of -sum(A * logp) / denominator."""
    rng = np.random.default_rng(1)
    b, t, v = 4, 5, 7
    mask = np.ones((b, t), np.float32)
    mask[1, 3:] = 0
    theta = jnp.asarray(rng.normal(size=(b, t, v)), jnp.float32)  # logits as the parameters
    tokens = jnp.asarray(rng.integers(0, v, (b, t)))
    adv = jnp.asarray([0.7, -1.2, 0.4, 0.1])

    def logp_of(th):
        return jnp.take_along_axis(jax.nn.log_softmax(th), tokens[..., None], -1)[..., 0]

    old = jax.lax.stop_gradient(logp_of(theta))
    for agg in ("sequence_mean", "token_mean", "constant"):
        def clipped(th):
            s, d, _ = group_policy_loss(logp_of(th), old, old, adv, jnp.asarray(mask), 0.2, 0.2, 0.0, agg)
            return s / d

        def reinforce(th):
            lp = logp_of(th) * mask
            if agg == "token_mean":
                return -jnp.sum(adv[:, None] * lp) / mask.sum()
            if agg == "sequence_mean":
                return -jnp.mean(adv * lp.sum(1) / mask.sum(1))
            return -jnp.sum(adv[:, None] * lp) / (b * t)

        np.testing.assert_allclose(jax.grad(clipped)(theta), jax.grad(reinforce)(theta), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- rewards

@pytest.mark.parametrize("text, want", [
    ("23 * 4 = 92.", 92), ("The answer is 1,234.", 1234), ("It costs $1,000.50 in total", 1000.5),
    ("12 - 5 = 7", 7), ("5 - 12 = -7.", -7), ("so \u22123 degrees", -3), ("2, 3 and 10", 10),
    ("first 18 then #### 72\nlater 5", 72), ("#### $1,080", 1080), ("Natalia sold 48/2 = 24 clips", 24),
    ("no number here", None), ("version 3.5.", 3.5), ("10%", 10)])
def test_extract_answer_on_tricky_strings(text, want):
    got = extract_answer(text)
    assert (got is None) if want is None else (got == pytest.approx(want))


def test_answer_check_and_strict_format():
    assert answer_correct("48 + 24 = 72.", "Natalia ...\n#### 72") and answer_correct("= 72.0", "72")
    assert not answer_correct("72 apples and 3 pears", "72") and not answer_correct("nothing", "72")
    assert strict_answer("23 * 4 = 92.") and strict_answer("so #### 1,000") and strict_answer("The answer is -3")
    assert not strict_answer("92 is it") and not strict_answer("23 * 4 = 92. Then more words")
    np.testing.assert_allclose(overlong_penalty(np.array([4, 12, 14, 16]), 16, 4), [0, 0, -0.5, -1])
    assert parse_weighted("m:f * 0.5") == ("m:f", 0.5) and parse_weighted("m:f") == ("m:f", 1.0)


@pytest.mark.parametrize("fn, match", [
    (lambda p, r, rec: 1 / 0, "reward f: raised ZeroDivisionError"),
    (lambda p, r, rec: [float("nan")] * len(r), r"reward f: returned nan for response 0 \('a'\); 2 of 2"),
    (lambda p, r, rec: [1.0], r"returned shape \(1,\) for 2 responses"),
    (lambda p, r, rec: ["x", None], "returned non-numbers")])
def test_bad_reward_functions_get_one_line_each(fn, match):
    with pytest.raises(UserError, match=match):
        check_scores("f", fn, ["q", "q"], ["a", "b"], [{}, {}])


def test_task_records_gsm8k_and_bare_answers(tmp_path):
    from jaxllm.data.task_data import read_task_files
    recs, _ = read_task_files([str(SHARED_DATA / "rlvr" / "gsm8k-train.jsonl")], "raise")
    assert len(recs) > 7000 and all("####" in r["answer"] for r in recs[:50])
    f = tmp_path / "t.jsonl"
    f.write_text(json.dumps({"prompt": "2+2?", "answer": 4}) + "\n"
                 + json.dumps({"question": "q", "answer": "She had 3 then 5 more."}) + "\n")
    with pytest.raises(UserError, match=r"t.jsonl:2: answer 'She had 3 then 5 more.': no '#### N' final answer"):
        read_task_files([str(f)], "raise")
    recs, report = read_task_files([str(f)], "skip")
    assert [r["answer"] for r in recs] == ["4"] and report


def test_arithmetic_task_holds_out_the_same_triples_for_every_seed():
    from jaxllm.world.arithmetic import arithmetic_task
    tr0, held0 = arithmetic_task(2000, 300, seed=0)
    tr1, held1 = arithmetic_task(2000, 300, seed=1)
    q = lambda recs: {r["question"].split("?")[0].split(".")[0].split(" is ")[-1] for r in recs}  # noqa: E731
    assert len(held0) == 300 and len(tr0) == 2000
    assert all(answer_correct(f"= {r['answer']}.", r["answer"]) for r in tr0[:20])
    train_q = {(r["question"], r["answer"]) for r in tr0 + tr1}
    assert not train_q & {(r["question"], r["answer"]) for r in held0 + held1}
    assert q(tr0) and q(held0)


# ---------------------------------------------------------------- verdicts

def test_verdicts_name_flat_groups_reward_hacking_and_length_growth():
    from jaxllm.rl.verdicts import rl_verdicts
    rows = [{"step": 0, "eval_accuracy": 0.30}]
    for s in range(1, 41):
        rows.append({"step": s, "reward": 0.2 + 0.01 * s, "zero_var_groups": 0.6, "response_len": 8 + 0.5 * s})
        if s % 10 == 0:
            rows.append({"step": s, "eval_accuracy": 0.30 + (0.005 * s if s <= 20 else 0.1 - 0.1 * (s - 20) / 10)})
    v = {x.name: x for x in rl_verdicts(rows, "reward", "eval_accuracy", "held-out verifier", flat="zero_var_groups")}
    assert v["no_signal"].flagged and "no learning signal in 60% of groups" in v["no_signal"].text
    assert v["reward_hacking"].flagged and "between steps 20 and 40" in v["reward_hacking"].text
    assert v["length"].flagged and "length grew" in v["length"].text
    calm = [{"step": s, "reward": 0.5, "zero_var_groups": 0.1, "response_len": 8.0, "eval_accuracy": 0.5}
            for s in range(0, 40, 4)]
    assert not any(x.flagged for x in rl_verdicts(calm, "reward", "eval_accuracy", flat="zero_var_groups"))


# ---------------------------------------------------------------- runs

def test_bad_grpo_configs_get_one_line_each(tiny):
    base = ["objective.name=grpo", "train.seq_len=40"]
    with pytest.raises(ConfigError, match="group_size = 1: a group baseline needs at least 2"):
        tiny(*base, "objective.grpo.group_size=1")
    with pytest.raises(ConfigError, match=r"3 x 4 = 12 responses per rollout is not a multiple of train.batch_size = 8"):
        tiny(*base, "objective.grpo.prompts_per_rollout=3", "objective.grpo.group_size=4")
    with pytest.raises(ConfigError, match="reward.model is set but objective.grpo.reward.model_from is not"):
        tiny(*base, "objective.grpo.reward.model=1.0")
    with pytest.raises(ConfigError, match="every component's weight is 0"):
        tiny(*base, "objective.grpo.reward.answer=0")


def digit_reward(prompts, responses, records):
    """A learnable reward for tiny random models (``objective.grpo.reward.functions=[test_grpo:digit_reward]``):
    the share of the response's characters that are digits."""
    return [sum(ch.isdigit() for ch in r) / max(len(r), 1) for r in responses]


GRPO_TINY = ["objective.name=grpo", "train.seq_len=40", "objective.grpo.max_new_tokens=12",
             "objective.grpo.prompts_per_rollout=4", "objective.grpo.group_size=4", "data.tokenizer.vocab_size=300",
             "data.builtin.task_questions=200"]


def test_rollouts_reuse_the_compiled_sampler_and_scorer(tiny):
    """A second rollout batch (new prompts, new key, new parameters) compiles nothing: generation reuses the
    KV-cache sampler's compiled loop and the scoring pass its executable."""
    import jax.monitoring as monitoring
    from jaxllm.train.loop import _initial_state, _prepare
    cfg = tiny(*GRPO_TINY, "objective.grpo.eval_prompts=0", "checkpoint.enabled=false")
    r = _prepare(cfg, None)
    events = []
    monitoring.register_event_duration_secs_listener(
        lambda name, *a, **k: events.append(name) if "compile" in name else None)
    with r.layout.context():
        state, *_ = _initial_state(r)
        src = r.objective.train_batches
        moved = jax.tree.map(lambda x: x * 1.01, state.params)
        src.set_params(state.params)
        src._rollout()
        first = len(events)
        src.set_params(moved)
        src._rollout()
    assert first > 0 and len(events) == first, events[first:]
    assert src.rollouts == 2 and len(src.buffer) == 4  # 16 responses in minibatches of 8, twice


@pytest.mark.slow
def test_grpo_raises_a_learnable_reward_and_writes_verdicts(tiny):
    from jaxllm.train.loop import train
    cfg = tiny(*GRPO_TINY, "objective.grpo.prompts_per_rollout=8", "objective.grpo.reward.answer=0",
               "objective.grpo.reward.functions=[test_grpo:digit_reward]", "objective.grpo.kl_coef=0",
               "objective.grpo.epochs=2", "objective.grpo.eval_prompts=16", "train.eval_every=32",
               "optimizer.lr=1e-2", "train.steps=96", "train.log_every=8", "checkpoint.enabled=false")
    res = train(cfg)
    rollouts = [h for h in res.history if "reward_digit_reward" in h]
    rewards = [h["reward"] for h in rollouts]
    assert rewards[-1] > rewards[0] + 0.1, rewards
    assert all(k in rollouts[-1] for k in ("zero_var_groups", "reward_answer", "len_reward_corr", "entropy", "kl",
                                           "clip_low_frac", "clip_high_frac", "kl_k3", "rollout_sample_s",
                                           "rollout_score_s", "rollout_reward_s"))
    verdicts = json.loads((res.run_dir / "verdicts.json").read_text())
    assert [v["name"] for v in verdicts] == ["no_signal", "reward_hacking", "length"]
    assert (res.run_dir / "verdicts.md").read_text().startswith("# Verdicts")


@pytest.mark.slow
def test_dapo_dynamic_sampling_refills_and_resume_keeps_the_rollout_position(tiny):
    from jaxllm.train.loop import train
    args = [*GRPO_TINY, "objective.grpo.loss_type=dapo", "objective.grpo.max_refills=2",
            "objective.grpo.eval_prompts=0", "train.steps=4", "checkpoint.every=2", "checkpoint.async_save=false"]
    first = train(tiny(*args, "train.stop_at_step=2"))
    h = first.history[0]
    assert h["zero_var_groups"] == 1.0 and h["refills"] == 2.0 and h["flat_filled"] == 1.0  # answer reward: all 0
    second = train(tiny(*args))
    assert int(second.state.step) == 4 and [x["step"] for x in second.history] == [3, 4]
    data = sorted((second.run_dir / "checkpoints").iterdir())[-1] / "data"
    saved = json.loads(next(p for p in data.rglob("*") if p.is_file() and p.suffix in ("", ".json")).read_text())
    assert saved["rollouts"] == 2 and saved["rounds"] == 6  # 3 rounds (1 + 2 refills) per rollout batch


def test_a_reward_function_that_fails_stops_the_run_in_one_line(tiny):
    from jaxllm.train.loop import train
    cfg = tiny(*GRPO_TINY, "objective.grpo.reward.functions=[test_grpo:broken_reward]", "objective.grpo.eval_prompts=0",
               "train.steps=2", "checkpoint.enabled=false")
    with pytest.raises(UserError, match=r"reward broken_reward: returned shape \(3,\) for 16 responses"):
        train(cfg)


def broken_reward(prompts, responses, records):
    return [0.0, 1.0, 2.0]


@pytest.mark.slow
def test_gsm8k_config_runs_end_to_end_on_a_tiny_hugging_face_llama(tmp_path):
    """configs/grpo/gsm8k.yaml as its comment says: a Llama dir made by `transformers` (random weights, a
    SentencePiece tokenizer) -> convert from-hf -> GRPO on the shared GSM8K records -> verdicts."""
    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("transformers")
    import io

    import sentencepiece as spm

    from jaxllm.cli import main
    from jaxllm.data.task_data import read_task_files

    recs, _ = read_task_files([str(SHARED_DATA / "rlvr" / "gsm8k-train.jsonl")], "raise")
    sp = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(r["question"] + " " + r["answer"] for r in recs[:2000]),
                                   model_writer=sp, vocab_size=512, pad_id=-1, unk_id=0, bos_id=1, eos_id=2,
                                   byte_fallback=True, minloglevel=2)
    hf_dir = tmp_path / "hf-llama"
    torch.manual_seed(0)
    tf.LlamaForCausalLM(tf.LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                       bos_token_id=1, eos_token_id=2)).save_pretrained(hf_dir)
    (hf_dir / "tokenizer.model").write_bytes(sp.getvalue())
    conv = tmp_path / "hf-base"
    assert main(["convert", "from-hf", str(hf_dir), str(conv)]) == 0
    cfg = tmp_path / "my-gsm8k.yaml"
    cfg.write_text(f"base: [{ROOT}/configs/grpo/gsm8k.yaml, {conv}/model.yaml]\ninit_from: {conv}\n"
                   f"run:\n  dir: {tmp_path}/run\n")
    assert main(["train", str(cfg), f"data.paths=[{SHARED_DATA / 'rlvr' / 'gsm8k-train.jsonl'}]",
                 "objective.grpo.max_new_tokens=16", "objective.grpo.prompts_per_rollout=2",
                 "objective.grpo.group_size=4", "objective.grpo.eval_prompts=8", "train.batch_size=8",
                 "train.seq_len=160", "train.steps=2", "train.log_every=1", "train.eval_every=2",
                 "optimizer.warmup_steps=1", "log.tensorboard=false", "checkpoint.every=2", "train.progress=off"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_accuracy" in r for r in rows) and any("reward_format" in r for r in rows)
    assert (tmp_path / "run" / "verdicts.json").is_file()


def test_grpo_pipeline_wires_its_stages():
    from jaxllm.pipeline.run import load_pipeline, stage_config
    p = load_pipeline(str(ROOT / "configs" / "pipeline" / "grpo.yaml"), [])
    assert list(p.stages) == ["pretrain", "sft", "grpo"]
    cfg = stage_config(p, "grpo")
    assert cfg.objective.name == "grpo" and cfg.init_from == str(p.dir / "sft")
    assert stage_config(p, "sft").data.builtin.task_chats == 6000
