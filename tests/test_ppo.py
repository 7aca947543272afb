"""PPO: rollout layout, scoring and advantages against NumPy, the loss against a full forward pass and NumPy
clipped losses, and a smoke run that raises a trivially learnable reward."""

import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT
from jaxllm.model import resolve_spec
from jaxllm.model.scalar import ActorCritic
from jaxllm.objectives.ppo import ppo_loss
from jaxllm.rl.advantages import gae_advantages as advantages
from jaxllm.rl.rollout import Settings, rollout_arrays

STOP = (3,)


def vowel_reward(prompts, responses):
    """The smoke test's reward function (``objective.ppo.reward_fn=test_ppo:vowel_reward``)."""
    return [sum(ch in "aeiou" for ch in r) / max(len(r), 1) for r in responses]


def test_rollout_layout_left_pads_prompts_and_right_pads_responses():
    arr = rollout_arrays([[1, 5, 6], [1, 7]], [[8, 9, 3], [10, 11, 12, 13]], p=4, t=4, stop_ids=STOP)
    assert arr["inputs"].tolist() == [[0, 1, 5, 6, 8, 9, 3, 0], [0, 0, 1, 7, 10, 11, 12, 13]]
    assert arr["mask"].tolist() == [[0, 1, 1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1, 1, 1]]
    assert arr["resp_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert arr["has_eos"].tolist() == [True, False]


def _np_advantages(raw, has_eos, logp, ref_logp, values, mask, beta, mean, std, s):
    """Plain loops: normalise, clip, penalise missing EOS, KL-shape, GAE, whiten."""
    n, t = mask.shape
    score = np.clip((raw - mean) / std, -s.score_clip, s.score_clip)
    score = np.where(has_eos, score, score - s.missing_eos_penalty)
    rewards = -beta * (logp - ref_logp) * mask
    for i in range(n):
        last = int(np.nonzero(mask[i])[0].max())
        rewards[i, last] += score[i]
    adv = np.zeros_like(rewards)
    for i in range(n):
        nxt_adv, nxt_v = 0.0, 0.0
        for j in reversed(range(t)):
            if not mask[i, j]:
                continue
            delta = rewards[i, j] + s.gamma * nxt_v - values[i, j]
            adv[i, j] = delta + s.gamma * s.lam * nxt_adv
            nxt_adv, nxt_v = adv[i, j], values[i, j]
    returns = (adv + values) * mask
    sel = adv[mask > 0]
    white = (adv - sel.mean()) / np.sqrt(sel.var() + 1e-8) * mask
    return white, returns, score


def test_advantages_match_a_numpy_reference_with_penalty_for_missing_eos():
    rng = np.random.default_rng(0)
    n, t = 4, 6
    mask = np.zeros((n, t), np.float32)
    for i, length in enumerate([6, 3, 1, 5]):
        mask[i, :length] = 1
    has_eos = np.array([False, True, True, True])  # the first never stopped: it loses the penalty
    raw = rng.normal(size=n).astype(np.float32) * 3
    logp, ref_logp, values = (rng.normal(size=(n, t)).astype(np.float32) for _ in range(3))
    s = Settings(1.0, 100, gamma=0.99, lam=0.9, kl_estimator="k1", missing_eos_penalty=2.0, score_clip=1.5, whiten=True)
    got = advantages(jnp.asarray(raw), jnp.asarray(has_eos), jnp.asarray(logp), jnp.asarray(ref_logp),
                     jnp.asarray(values), jnp.asarray(mask), 0.1, 0.5, 2.0, s)
    adv, returns, score = _np_advantages(raw, has_eos, logp, ref_logp, values, mask, 0.1, 0.5, 2.0, s)
    np.testing.assert_allclose(np.asarray(got["score"]), score, rtol=1e-5)
    assert float(got["score"][0]) == pytest.approx(float(np.clip((raw[0] - 0.5) / 2.0, -1.5, 1.5)) - 2.0, rel=1e-5)
    np.testing.assert_allclose(np.asarray(got["returns"]), returns, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(got["advantages"]), adv, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(got["kl"]), ((logp - ref_logp) * mask).sum(1), rtol=1e-5)


@pytest.fixture(scope="module")
def actor_critic():
    from jaxllm.config import load_config
    spec = resolve_spec(load_config(ROOT / "configs/model/tiny.yaml").model, 200)
    model = ActorCritic(spec)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"])
    return model, params


def test_ppo_loss_matches_full_forward_and_numpy_clipped_losses(actor_critic):
    model, params = actor_critic
    rng = np.random.default_rng(1)
    p, t, temp = 5, 4, 0.7
    prompts = [rng.integers(4, 200, size=k).tolist() for k in (5, 3)]
    responses = [rng.integers(4, 200, size=4).tolist(), [9, 3]]
    arr = rollout_arrays(prompts, responses, p, t, STOP)
    m = arr["resp_mask"]
    old_logp = rng.normal(-3, 0.3, size=(2, t)).astype(np.float32)
    old_values = rng.normal(size=(2, t)).astype(np.float32)
    adv = rng.normal(size=(2, t)).astype(np.float32)
    returns = rng.normal(size=(2, t)).astype(np.float32)
    batch = {"inputs": arr["inputs"], "mask": arr["mask"], "resp_mask": m, "old_logp": old_logp,
             "old_values": old_values, "advantages": adv, "returns": returns}
    s = Settings(temp, 200, 1.0, 0.95, "k1", 0.0, 0.0, True)
    loss_sum, n, metrics = ppo_loss(model, t, s, clip=0.2, value_clip=0.3, vf_coef=0.5)(
        params, {k: jnp.asarray(v) for k, v in batch.items()})

    # reference: each sequence alone, unpadded, through the policy and the critic
    logp, values = np.zeros((2, t)), np.zeros((2, t))
    for i, (q, r) in enumerate(zip(prompts, responses)):
        seq = jnp.asarray([q + r], jnp.int32)
        logits, vals = model.apply({"params": params}, seq)
        logits = np.asarray(logits[0], np.float64)[:, :200] / temp
        lsm = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
        for j, tok in enumerate(r):
            logp[i, j] = lsm[len(q) - 1 + j, tok]
            values[i, j] = float(vals[0, len(q) - 1 + j])
    ratio = np.exp(logp - old_logp)
    pg = np.maximum(-adv * ratio, -adv * np.clip(ratio, 0.8, 1.2))
    v_clipped = old_values + np.clip(values - old_values, -0.3, 0.3)
    vf = 0.5 * np.maximum((values - returns) ** 2, (v_clipped - returns) ** 2)
    want = ((pg + 0.5 * vf) * m).sum() / m.sum()
    np.testing.assert_allclose(float(loss_sum / n), want, rtol=2e-4)
    assert float(n) == m.sum()
    clipped = ((adv > 0) & (ratio > 1.2)) | ((adv < 0) & (ratio < 0.8))
    np.testing.assert_allclose(float(metrics["clip_frac"][0]), (clipped * m).sum(), atol=1e-6)


def test_scored_logprobs_are_the_samplers(tmp_path, tiny):
    """The log-probs the trainer recomputes equal those of the sampled tokens at the sampling temperature."""
    from jaxllm.model import Transformer
    from jaxllm.model.decode import generate
    from jaxllm.train.loop import _initial_state, _prepare
    sys.path.insert(0, str(ROOT / "tests"))
    cfg = tiny("objective.name=ppo", "train.seq_len=40", "objective.ppo.reward_fn=test_ppo:vowel_reward",
               "objective.ppo.rollout_prompts=16", "objective.ppo.max_new_tokens=16", "objective.ppo.temperature=0.7",
               "checkpoint.enabled=false")
    r = _prepare(cfg, None)
    with r.layout.context():
        state, *_ = _initial_state(r)
        engine = r.objective.train_batches.engine
        src = r.objective.train_batches
        prompts = [src.prompt_tokens[i] for i in src.fits[:16]]
        assert src.skipped_prompts > 0 and all(len(q) <= engine.p for q in prompts)  # long prompts are skipped, not cut
        stops = engine.template.stop_ids
        gen = generate(Transformer(engine.spec), state.params["policy"], prompts, jax.random.PRNGKey(0), engine.sampling,
                       stop_ids=stops, pad_id=r.tokenizer.pad_id, batch_multiple=8, vocab_size=r.tokenizer.vocab_size)
        resp = [g["tokens"] for g in gen]
        arr = rollout_arrays(prompts, resp, engine.p, engine.t, stops, r.tokenizer.pad_id)
        scored = jax.device_get(engine.scorer(state.params, engine.ref, engine.rm, arr["inputs"], arr["mask"]))
    for i, g in enumerate(gen):
        np.testing.assert_allclose(scored["old_logp"][i, :len(g["tokens"])], g["logprobs"], atol=2e-5)
    np.testing.assert_allclose(scored["ref_logp"] * arr["resp_mask"], scored["old_logp"] * arr["resp_mask"], atol=1e-6)


@pytest.mark.slow
def test_ppo_smoke_run_raises_a_learnable_reward(tiny):
    from jaxllm.train.loop import train
    sys.path.insert(0, str(ROOT / "tests"))
    cfg = tiny("objective.name=ppo", "train.seq_len=48", "objective.ppo.reward_fn=test_ppo:vowel_reward",
               "objective.ppo.rollout_prompts=32", "objective.ppo.max_new_tokens=16", "objective.ppo.eval_prompts=0",
               "objective.ppo.ppo_epochs=4", "objective.ppo.kl_coef=0", "objective.ppo.missing_eos_penalty=0",
               "optimizer.lr=1e-2", "train.steps=128", "train.log_every=16", "checkpoint.enabled=false")
    hist = train(cfg).history
    rewards = [h["rm_score"] for h in hist]  # the mean reward of each rollout batch (one per 16 steps)
    assert len(rewards) == 8
    assert rewards[-1] > rewards[0] + 0.08 and max(rewards[-2:]) > 1.5 * rewards[0], rewards
    assert all(k in hist[-1] for k in ("clip_frac", "approx_kl", "ratio", "value_error", "kl", "entropy",
                                       "response_len", "eos_frac", "generate_s", "train_s"))


def test_ptx_adds_the_pretraining_loss(actor_critic):
    """PPO-ptx: loss / tokens = PPO loss / tokens + ptx_coef * mean NLL of the ptx rows (full-forward reference)."""
    model, params = actor_critic
    rng = np.random.default_rng(2)
    t = 3
    arr = rollout_arrays([[1, 5, 6]], [[8, 9, 3]], p=3, t=t, stop_ids=STOP)
    batch = {"inputs": arr["inputs"], "mask": arr["mask"], "resp_mask": arr["resp_mask"],
             **{k: rng.normal(size=(1, t)).astype(np.float32) for k in ("old_logp", "old_values", "advantages", "returns")}}
    tokens = rng.integers(4, 200, size=(2, 7))
    ptx = {"ptx_inputs": tokens[:, :-1], "ptx_targets": tokens[:, 1:], "ptx_positions": np.tile(np.arange(6), (2, 1)),
           "ptx_segment_ids": np.ones((2, 6), np.int32), "ptx_loss_mask": np.ones((2, 6), np.float32)}
    ptx["ptx_loss_mask"][1, 4:] = 0
    s = Settings(1.0, 200, 1.0, 0.95, "k1", 0.0, 0.0, True)
    as_jnp = lambda d: {k: jnp.asarray(v) for k, v in d.items()}  # noqa: E731
    base, n, _ = ppo_loss(model, t, s, 0.2, 0.2, 0.1)(params, as_jnp(batch))
    with_ptx, n2, metrics = ppo_loss(model, t, s, 0.2, 0.2, 0.1, ptx_coef=0.5)(params, as_jnp({**batch, **ptx}))
    logits, _ = model.apply({"params": params}, jnp.asarray(ptx["ptx_inputs"]))
    logits = np.asarray(logits, np.float64)
    logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    nll = logz - np.take_along_axis(logits, ptx["ptx_targets"][..., None], -1)[..., 0]
    mean_nll = (nll * ptx["ptx_loss_mask"]).sum() / ptx["ptx_loss_mask"].sum()
    np.testing.assert_allclose(float(with_ptx / n2), float(base / n) + 0.5 * mean_nll, rtol=1e-4)
    np.testing.assert_allclose(float(metrics["ptx_loss"][0] / metrics["ptx_loss"][1]), mean_nll, rtol=1e-4)


@pytest.mark.slow
def test_ptx_run_draws_pretraining_batches(tiny):
    from jaxllm.train.loop import train
    sys.path.insert(0, str(ROOT / "tests"))
    cfg = tiny("objective.name=ppo", "train.seq_len=48", "objective.ppo.reward_fn=test_ppo:vowel_reward",
               "objective.ppo.rollout_prompts=8", "objective.ppo.max_new_tokens=8", "objective.ppo.eval_prompts=0",
               "objective.ppo.ptx_coef=0.5", "train.steps=2", "checkpoint.enabled=false")
    hist = train(cfg).history
    assert all(np.isfinite(h["ptx_loss"]) and h["ptx_loss"] > 0 for h in hist)


def test_ptx_reads_its_own_data_section(tmp_path, tiny):
    """PPO-ptx rows come from objective.ppo.ptx (here a text file), not from data.* (the prompts' source)."""
    from jaxllm.data.tokenizer import train_tokenizer
    from jaxllm.errors import ConfigError
    from jaxllm.objectives.ppo import _ptx_batches

    docs = [f"Zebras number {i} graze in the quiet valley while the river runs past the old mill." for i in range(40)]
    f = tmp_path / "ptx.txt"
    f.write_text("\n\n".join(docs) + "\n")
    args = ["objective.name=ppo", "objective.ppo.reward_fn=test_ppo:vowel_reward", "train.seq_len=24",
            "objective.ppo.max_new_tokens=8", "objective.ppo.rollout_prompts=8",
            "objective.ppo.ptx_coef=0.5", "objective.ppo.ptx.source=text"]
    with pytest.raises(ConfigError, match="objective.ppo.ptx.source = 'text' needs objective.ppo.ptx.paths"):
        tiny(*args)
    cfg = tiny(*args, f"objective.ppo.ptx.paths=[{f}]")
    tok = train_tokenizer(docs, vocab_size=300)
    batch = next(_ptx_batches(cfg, tok, 0, 1))
    assert batch["inputs"].shape == (8, 24)
    text = tok.decode([int(i) for i in batch["inputs"].reshape(-1) if i > 3])
    assert "Zebras" in text and "capital" not in text  # the file's text, not the built-in corpus


def test_prompt_files_take_prompts_and_hh_histories(tmp_path):
    from jaxllm.errors import UserError
    from jaxllm.data.prompt_data import read_prompt_files
    import json
    f = tmp_path / "prompts.jsonl"
    f.write_text(json.dumps({"prompt": "Hi?"}) + "\n"
                 + json.dumps({"chosen": "\n\nHuman: hello\n\nAssistant: hi\n\nHuman: bye\n\nAssistant: ok"}) + "\n")
    prompts, _ = read_prompt_files([str(f)], "raise")
    assert [m.content for m in prompts[0].conversation] == ["Hi?"]
    assert [(m.role, m.content) for m in prompts[1].conversation] == [("user", "hello"), ("assistant", "hi"),
                                                                      ("user", "bye")]
    f.write_text(json.dumps({"question": "x"}) + "\n")
    with pytest.raises(UserError, match=r"prompts.jsonl:1: keys \['question'\]"):
        read_prompt_files([str(f)], "raise")


@pytest.mark.slow
def test_ppo_resumes_with_its_rollout_position_and_kl_coefficient(tiny):
    from jaxllm.train.loop import train
    sys.path.insert(0, str(ROOT / "tests"))
    args = ["objective.name=ppo", "train.seq_len=40", "objective.ppo.reward_fn=test_ppo:vowel_reward",
            "objective.ppo.rollout_prompts=8", "objective.ppo.max_new_tokens=8", "objective.ppo.eval_prompts=0",
            "objective.ppo.kl_target=0.5", "objective.ppo.kl_horizon=20", "train.steps=6", "checkpoint.every=2",
            "checkpoint.async_save=false"]
    first = train(tiny(*args, "train.stop_at_step=4"))  # pre-empted after 4 steps = 2 rollouts (2 epochs of 1 batch)
    import json
    data = sorted((first.run_dir / "checkpoints").iterdir())[-1] / "data"
    saved = json.loads(next(p for p in data.rglob("*") if p.is_file() and p.suffix in ("", ".json")).read_text())
    assert saved["rollouts"] == 2 and saved["beta"] != 0.05  # the adaptive controller moved beta
    second = train(tiny(*args))
    assert int(second.state.step) == 6 and [h["step"] for h in second.history] == [5, 6]
    assert second.history[0]["beta"] == pytest.approx(saved["beta"])  # the restored coefficient was used
