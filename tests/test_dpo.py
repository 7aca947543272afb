"""DPO family: each loss against a NumPy reference on hand-made log-probs (masks and padding included),
listwise K=2 = DPO, sequence log-probs against a full forward, live = precomputed reference, a short run."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxllm.objectives.preference_losses import implicit_rewards, ranking_loss


def _logsig(x):
    return -np.logaddexp(0.0, -x)


def _np_pair(loss_type, d, beta, eps, gamma):
    if loss_type == "ipo":
        return (d - 1 / (2 * beta)) ** 2
    d = d - (gamma if loss_type == "simpo" else 0.0)
    return -(1 - eps) * _logsig(d) - eps * _logsig(-d)


def _np_rewards(loss_type, logp, ref, length, beta):
    return {"sigmoid": beta * (logp - ref), "ipo": (logp - ref) / length, "simpo": beta * logp / length}[loss_type]


def _np_loss(loss_type, ranking, logp, ref, length, n, beta, eps=0.0, gamma=0.0):
    """Per-prompt losses, written out loop by loop."""
    out = []
    for b in range(len(n)):
        r = _np_rewards(loss_type, logp[b, :n[b]], ref[b, :n[b]], length[b, :n[b]], beta)
        if ranking == "all_pairs":
            out.append(np.mean([_np_pair(loss_type, r[i] - r[j], beta, eps, gamma)
                                for i, j in itertools.combinations(range(n[b]), 2)]))
        elif ranking == "best_worst":
            out.append(_np_pair(loss_type, r[0] - r[-1], beta, eps, gamma))
        else:  # Plackett-Luce: -log prod_k exp(r_k) / sum_{j >= k} exp(r_j)
            out.append(-sum(r[k] - np.log(np.sum(np.exp(r[k:]))) for k in range(n[b] - 1)))
    return np.array(out)


RNG = np.random.default_rng(0)
B, K = 5, 4
LOGP = RNG.normal(-30, 8, (B, K)).astype(np.float32)
REF = (LOGP + RNG.normal(0, 3, (B, K))).astype(np.float32)
LENGTH = RNG.integers(3, 20, (B, K)).astype(np.float32)
N = np.array([4, 2, 3, 4, 2], np.int32)  # rankings shorter than K: the rest is padding


@pytest.mark.parametrize("loss_type, ranking, eps, gamma", [
    ("sigmoid", "all_pairs", 0.0, 0.0), ("sigmoid", "all_pairs", 0.2, 0.0), ("sigmoid", "best_worst", 0.1, 0.0),
    ("sigmoid", "plackett_luce", 0.0, 0.0), ("ipo", "all_pairs", 0.0, 0.0), ("ipo", "best_worst", 0.0, 0.0),
    ("simpo", "all_pairs", 0.0, 0.7), ("simpo", "best_worst", 0.1, 0.7), ("simpo", "plackett_luce", 0.0, 0.0),
])
def test_losses_match_numpy(loss_type, ranking, eps, gamma):
    beta = 0.3 if loss_type != "simpo" else 2.0
    padded = np.where(np.arange(K)[None] < N[:, None], LOGP, 1e4)  # padding values must not matter
    r = implicit_rewards(loss_type, jnp.asarray(padded), jnp.asarray(REF), jnp.asarray(LENGTH), beta)
    got, (correct, pairs, margin) = ranking_loss(r, jnp.asarray(N), loss_type, ranking, beta, eps, gamma)
    want = _np_loss(loss_type, ranking, LOGP, REF, LENGTH, N, beta, eps, gamma)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    rr = [_np_rewards(loss_type, LOGP[b, :N[b]], REF[b, :N[b]], LENGTH[b, :N[b]], beta) for b in range(B)]
    diffs = [x[i] - x[j] for x in rr for i, j in itertools.combinations(range(len(x)), 2)]
    assert float(pairs) == len(diffs) and float(correct) == sum(d > 0 for d in diffs)
    np.testing.assert_allclose(float(margin), sum(diffs), rtol=1e-4)


def test_plackett_luce_with_two_responses_is_dpo():
    n2 = np.full(B, 2, np.int32)
    r = implicit_rewards("sigmoid", jnp.asarray(LOGP), jnp.asarray(REF), jnp.asarray(LENGTH), 0.1)
    pl, _ = ranking_loss(r, jnp.asarray(n2), "sigmoid", "plackett_luce", 0.1)
    dpo, _ = ranking_loss(r, jnp.asarray(n2), "sigmoid", "all_pairs", 0.1)
    np.testing.assert_allclose(np.asarray(pl), np.asarray(dpo), rtol=1e-6)
    d = 0.1 * ((LOGP[:, 0] - REF[:, 0]) - (LOGP[:, 1] - REF[:, 1]))
    np.testing.assert_allclose(np.asarray(dpo), -_logsig(d), rtol=1e-5)
    # gradients agree too
    g_pl = jax.grad(lambda x: jnp.sum(ranking_loss(x, jnp.asarray(n2), "sigmoid", "plackett_luce", 0.1)[0]))(r)
    g_dpo = jax.grad(lambda x: jnp.sum(ranking_loss(x, jnp.asarray(n2), "sigmoid", "all_pairs", 0.1)[0]))(r)
    np.testing.assert_allclose(np.asarray(g_pl), np.asarray(g_dpo), rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(np.asarray(g_pl)))


def test_sequence_logps_score_only_response_tokens_against_a_full_forward():
    from jaxllm.config.schema import ModelConfig
    from jaxllm.model import Transformer, resolve_spec
    from jaxllm.objectives.dpo import sequence_logps

    spec = resolve_spec(ModelConfig(family="gpt2", vocab_size=64, n_layers=2, d_model=32, n_heads=2, max_seq_len=32),
                        backend="cpu")
    model = Transformer(spec)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"])
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 64, (3, 12)).astype(np.int32)
    mask = np.zeros((3, 12), np.float32)
    resp = np.zeros((3, 12), np.float32)
    for i, (n, p) in enumerate([(12, 5), (9, 4), (7, 2)]):  # real length, prompt length: right padding
        mask[i, :n], resp[i, p:n] = 1, 1
    got, count = sequence_logps(model, params, jnp.asarray(tokens), jnp.asarray(mask), jnp.asarray(resp))
    for i in range(3):
        n = int(mask[i].sum())
        logits = np.asarray(jax.jit(model.apply)({"params": params}, jnp.asarray(tokens[i:i + 1, :n])))[0]
        lsm = logits - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1, keepdims=True)) - logits.max(-1, keepdims=True)
        want = sum(lsm[j - 1, tokens[i, j]] for j in range(1, n) if resp[i, j])
        np.testing.assert_allclose(float(got[i]), want, rtol=1e-5)
        assert float(count[i]) == resp[i, 1:].sum()


def _dpo_cfg(tiny, *extra):
    return tiny("objective.name=dpo", "data.builtin.rankings=120", "train.seq_len=64", "train.steps=6",
                "train.log_every=1", "checkpoint.enabled=false", "optimizer.lr=1e-3", *extra)


def test_live_and_precomputed_reference_give_the_same_losses(tiny):
    from jaxllm.train.loop import train

    live = train(_dpo_cfg(tiny, "objective.dpo.reference=live", "train.steps=3"))
    pre = train(_dpo_cfg(tiny, "objective.dpo.reference=precomputed", "train.steps=3"))
    for a, b in zip(live.history, pre.history):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=2e-5)
        np.testing.assert_allclose(a["accuracy"], b["accuracy"])
    np.testing.assert_allclose(live.eval["eval_loss"], pre.eval["eval_loss"], rtol=2e-5)
    assert live.history[0]["loss"] == pytest.approx(np.log(2), rel=1e-4)  # policy = reference at step 1


@pytest.mark.parametrize("extra", [(), ("objective.dpo.ranking=plackett_luce",), ("objective.dpo.loss_type=simpo",
                                                                                  "objective.dpo.beta=2.0")])
def test_a_short_dpo_run_learns_the_built_in_rankings(tiny, extra):
    from jaxllm.train.loop import train

    res = train(_dpo_cfg(tiny, "train.steps=12", *extra))
    assert res.eval["eval_accuracy"] > 0.6, res.eval
    assert res.history[-1]["loss"] < res.history[0]["loss"]


PAIRS = [
    {"prompt": "What is the capital of France?", "chosen": "Paris.", "rejected": "I am not sure, it could be Lyon or Nice."},
    {"prompt": "Is the moon made of cheese?", "chosen": "No. The moon is rock.", "rejected": "Yes."},
    {"prompt": "How do I pick a lock to rob a house?", "chosen": "I can't help with that.",
     "rejected": "Take a tension wrench and a pick, then rake the pins until the lock opens."},
    {"prompt": "Name a prime number.", "responses": ["Seven.", "Seven is one.", "Nine."]},
    {"prompt": "broken", "chosen": "same", "rejected": "same"},  # skipped: identical
]


@pytest.fixture(scope="module")
def pair_runs(tmp_path_factory):
    """A tiny pre-trained run, a reward model and a DPO policy from it, and a pairs file."""
    import json

    from conftest import tiny_config
    from jaxllm.train.loop import train

    d = tmp_path_factory.mktemp("pairs")
    pre = d / "pre"
    train(tiny_config(pre, "train.steps=2", "checkpoint.every=2"))
    common = ["data.builtin.rankings=120", "train.seq_len=64", "train.steps=3", "checkpoint.every=3", f"init_from={pre}"]
    train(tiny_config(d / "rm", "objective.name=reward", "optimizer.lr=1e-2", *common))
    train(tiny_config(d / "dpo", "objective.name=dpo", "optimizer.lr=1e-2", *common))
    f = d / "pairs.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in PAIRS))
    return d, f


def _np_logp(loaded_model, params, tokens, response):
    logits = np.asarray(jax.jit(loaded_model.apply)({"params": params}, jnp.asarray([tokens])))[0].astype(np.float64)
    lsm = logits - logits.max(-1, keepdims=True)
    lsm = lsm - np.log(np.exp(lsm).sum(-1, keepdims=True))
    return sum(lsm[j - 1, tokens[j]] for j in range(1, len(tokens)) if response[j])


@pytest.mark.slow  # with the next: three tiny trainings (pair_runs) and CLI evaluations
def test_eval_pairs_scores_dpo_and_reward_runs_against_a_full_forward(pair_runs, capsys):
    from jaxllm.cli import main
    from jaxllm.data.chat import ChatTemplate
    from jaxllm.data.pref_data import encode_response, read_ranking_files
    from jaxllm.infer.load import load_checkpoint
    from jaxllm.infer.preference import preference_accuracy
    from jaxllm.model.scalar import ScalarModel
    from jaxllm.pretrained import load_params

    d, f = pair_runs
    rankings, rep = read_ranking_files([str(f)], "skip")
    assert rep["skipped_records"] == 1
    pol, ref = load_checkpoint(d / "dpo"), load_checkpoint(d / "pre")
    tpl = ChatTemplate(pol.tokenizer)
    beta = pol.cfg.objective.dpo.beta
    right = pairs = 0
    short = 0.0
    for r in rankings:
        enc = [encode_response(tpl, r.prompt, c) for c in r.responses]
        rew = [beta * (_np_logp(pol.model, pol.params, t, m) - _np_logp(ref.model, ref.params, t, m)) for t, m in enc]
        for i, j in itertools.combinations(range(len(rew)), 2):
            pairs, right = pairs + 1, right + (rew[i] > rew[j])
            li, lj = len(r.responses[i].text), len(r.responses[j].text)
            short += 1.0 if li < lj else 0.5 if li == lj else 0.0
    res = preference_accuracy(d / "dpo", [str(f)])
    assert res["pairs"] == pairs == 6 and res["skipped_records"] == 1
    assert res["accuracy"] == pytest.approx(right / pairs) and res["length_baseline"] == pytest.approx(short / pairs)

    # the reward model: its scalar at each response's last token, from an unpadded forward
    rm = ScalarModel(ref.model.spec)
    with ref.layout.context():
        rm_params = load_params(str(d / "rm"), ref.layout.abstract_params(rm))
    right = 0
    for r in rankings:
        s = [float(np.asarray(jax.jit(rm.apply)({"params": rm_params}, jnp.asarray([t])))[0, -1])
             for t, _ in (encode_response(tpl, r.prompt, c) for c in r.responses)]
        gaps = [s[i] - s[j] for i, j in itertools.combinations(range(len(s)), 2)]
        assert min(abs(g) for g in gaps) > 1e-4  # no near-ties that float rounding could flip
        right += sum(g > 0 for g in gaps)
    assert preference_accuracy(d / "rm", [str(f)])["accuracy"] == pytest.approx(right / 6)

    assert main(["eval", str(d / "dpo"), "--pairs", str(f)]) == 0
    out = capsys.readouterr().out
    assert "5 rankings" not in out and "4 rankings, 6 ordered pairs, 1 bad records skipped" in out
    assert "implicit reward ranks the better one higher in" in out and "(the shorter response: 50.0%)" in out
    assert main(["eval", str(d / "pre"), "--pairs", str(f)]) == 2
    assert "is a pretrain run" in capsys.readouterr().err


def test_data_eval_paths_is_the_held_out_split_of_every_objective(pair_runs, tmp_path):
    """A dataset's own test file: rankings (DPO, reward), chats (SFT), documents (pre-training)."""
    import json

    from conftest import tiny_config
    from jaxllm.data.pref_data import load_pref_data
    from jaxllm.data.prepare import load_corpus
    from jaxllm.data.sft_data import load_sft_data

    d, pairs = pair_runs
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps({"prompt": f"Question {i}?", "chosen": f"Answer {i}.",
                                              "rejected": f"No idea about {i}, sorry."}) + "\n" for i in range(40)))
    cfg = tiny_config(tmp_path / "r", "objective.name=dpo", "data.source=jsonl", f"data.paths=[{train_file}]",
                      f"data.eval_paths=[{pairs}]", "data.on_error=skip", "train.seq_len=64", f"init_from={d / 'pre'}")
    data = load_pref_data(cfg, None, 4, response_mask=True)
    assert data.stats["rankings"]["train"] == 40 and data.stats["rankings"]["eval"] == 4  # all trains; the file's 4 held out
    assert data.eval["tokens"].shape[:2] == (4, 3)

    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Hi {i}"},
                                                      {"role": "assistant", "content": f"Hello {i}."}]}) + "\n"
                             for i in range(3)))
    cfg = tiny_config(tmp_path / "s", "objective.name=sft", f"data.eval_paths=[{chats}]", "train.seq_len=64",
                      f"init_from={d / 'pre'}")
    assert load_sft_data(cfg, None).stats["conversations"]["eval"] == 3

    text = tmp_path / "test.txt"
    text.write_text("First held-out document.\n\nSecond held-out document.\n")
    corpus = load_corpus(tiny_config(tmp_path / "p", f"data.eval_paths=[{text}]"))
    assert corpus.eval_docs == ["First held-out document.", "Second held-out document."]
    assert len(corpus.train_docs) > 100  # every built-in document trains


def test_bad_preference_records_are_named_by_file_and_line(tmp_path):
    import json

    from jaxllm.data.pref_data import read_ranking_files
    from jaxllm.errors import UserError

    for i, (rec, msg) in enumerate([({"prompt": "q", "responses": ["only one"]}, "at least 2 strings"),
                                    ({"prompt": "q", "chosen": "same", "rejected": "same"}, "identical"),
                                    ({"prompt": "q", "chosen": "fine", "rejected": "  "}, "response 2 of 2 is empty")]):
        f = tmp_path / f"bad{i}.jsonl"
        f.write_text(json.dumps({"prompt": "ok", "chosen": "a", "rejected": "b"}) + "\n" + json.dumps(rec) + "\n")
        with pytest.raises(UserError, match=rf"bad{i}.jsonl:2: .*{msg}"):
            read_ranking_files([str(f)], "raise")


def test_a_reference_tokenizer_other_than_the_policys_is_refused(pair_runs, tmp_path):
    from conftest import tiny_config
    from jaxllm.data.tokenizer import train_tokenizer
    from jaxllm.errors import UserError
    from jaxllm.objectives.dpo import load
    from jaxllm.world.corpus import generate_documents

    d, _ = pair_runs
    other = tmp_path / "other.model"
    train_tokenizer(generate_documents(30_000, 5), 400).save(other)
    cfg = tiny_config(tmp_path / "r", "objective.name=dpo", f"init_from={d / 'pre'}", f"data.tokenizer.path={other}",
                      "data.builtin.rankings=50")
    with pytest.raises(UserError, match="differs from the tokenizer of init_from"):
        load(cfg, None)


@pytest.mark.slow
def test_eval_pairs_rebuilds_the_reference_of_a_dpo_run_without_init_from(pair_runs, tmp_path):
    """lr = 0: the policy is its reference, so a rebuilt reference that is exact gives every reward 0 (ties: 0 right)."""
    from conftest import tiny_config
    from jaxllm.infer.preference import preference_accuracy
    from jaxllm.train.loop import train

    _, pairs = pair_runs
    train(tiny_config(tmp_path / "d", "objective.name=dpo", "data.builtin.rankings=60", "train.seq_len=64",
                      "train.steps=2", "optimizer.lr=0", "seed=3"))
    res = preference_accuracy(tmp_path / "d", [str(pairs)])
    assert res["pairs"] == 6 and res["accuracy"] == 0.0
