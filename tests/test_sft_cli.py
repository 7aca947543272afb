"""SFT through the trainer loop, and the generate / chat / eval commands on its checkpoint."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, tiny_config
from jaxllm.errors import UserError
from jaxllm.infer.evaluate import normalize, perplexity, qa_accuracy
from jaxllm.infer.load import load_checkpoint
from jaxllm.train.loop import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("sft")
    train(tiny_config(base / "pre", "train.steps=30", "optimizer.lr=3e-3"))
    sft = train(tiny_config(base / "sft", "objective.name=sft", f"init_from={base / 'pre'}", "train.steps=12",
                            "data.builtin.conversations=400", "data.builtin.behaviour_chats=100", "train.seq_len=64", "mesh.fsdp=2", "mesh.tensor=2",
                            "train.sample_tokens=8", "train.sample_prompt=Hello!"))
    return base, sft


def _cli(args, stdin=None, devices=1):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "jaxllm.cli", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_sft_run_trains_on_chats_from_the_pretrained_checkpoint(runs):
    base, sft = runs
    assert sft.sample.startswith("user: Hello!\nassistant:")
    losses = [h["loss"] for h in sft.history]
    assert np.isfinite(losses).all() and np.mean(losses[-3:]) < np.mean(losses[:3])
    assert "eval_loss" in sft.eval
    # the run dir is self-contained: the pre-training tokenizer was carried over
    assert (base / "sft" / "tokenizer.model").read_bytes() == (base / "pre" / "tokenizer.model").read_bytes()


@pytest.mark.slow
def test_generate_chat_and_eval_commands(runs, tmp_path):
    base, _ = runs
    out = _cli(["generate", str(base / "sft"), "--prompt", "What is the capital of Peru?", "--prompt", "Hi",
                "--max-new-tokens", "6", "--temperature", "0.7", "--top-k", "20", "--logprobs"], devices=4)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("[0] ") and "[1] " in out.stdout and "sum log p" in out.stdout

    raw = _cli(["generate", str(base / "pre" / "checkpoints"), "--prompt", "The capital of", "--max-new-tokens", "4"])
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.startswith("The capital of")

    # 30 exchanges overflow the model's 256 positions: the oldest turns are dropped, the chat goes on
    lines = "".join(f"What is the capital of country number {i}?\n" for i in range(30))
    chat = _cli(["chat", str(base / "sft"), "--max-new-tokens", "5", "--system", "Be brief."],
                stdin=lines + "/reset\nHi\n/quit\n")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.count("assistant> ") == 31 and "error" not in chat.stdout

    text = tmp_path / "t.txt"
    text.write_text("The capital of Peru is Lima.\n\nSofia Rossi was born in 1950.\n")
    report = tmp_path / "r.json"
    ev = _cli(["eval", str(base / "sft"), "--questions", "builtin", "--limit", "6", "--text", str(text),
               "--seq-len", "16", "--json", str(report)])
    assert ev.returncode == 0, ev.stderr
    assert "builtin (chat prompts): 6 questions, exact match" in ev.stdout and "perplexity on" in ev.stdout
    r = json.loads(report.read_text())
    assert len(r["qa"]["rows"]) == 6 and r["perplexity"]["perplexity"] > 1

    noq = tmp_path / "q.jsonl"
    noq.write_text(json.dumps({"prompt": "x", "answer": "y"}) + "\n")
    for args, msg in [(["generate", str(tmp_path / "nope"), "--prompt", "x"], "no such checkpoint"),
                      (["eval", str(base / "sft")], "nothing to evaluate"),
                      (["eval", str(base / "sft"), "--questions", str(noq)], "q.jsonl:1: a question record needs \"question\""),
                      (["eval", str(base / "sft"), "--questions", str(text)], "t.txt:1: not valid JSON")]:
        bad = _cli(args)
        assert bad.returncode == 2 and msg in bad.stderr, bad.stderr


def test_perplexity_matches_per_document_forward_passes(runs, tmp_path):
    """One row holds every document, so the packed NLL equals the sum of per-document NLLs (NumPy log-softmax)."""
    base, _ = runs
    loaded = load_checkpoint(base / "pre")
    docs = ["The capital of Peru is Lima.", "Sofia Rossi was born in 1950.", "12 + 5 = 17"]
    path = tmp_path / "docs.txt"
    path.write_text("\n\n".join(docs))
    tok = loaded.tokenizer
    seqs = [[tok.bos_id, *tok.encode(d), tok.eos_id] for d in docs]
    total_len = sum(map(len, seqs))
    got = perplexity(loaded, [str(path)], seq_len=total_len - 1)
    nll, count = 0.0, 0
    for s in seqs:
        logits = np.asarray(jax.jit(loaded.model.apply)({"params": loaded.params}, jnp.asarray([s[:-1]])))[0].astype(np.float64)
        logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
        nll -= logp[np.arange(len(s) - 1), s[1:]].sum()
        count += len(s) - 1
    assert got["tokens"] == count
    np.testing.assert_allclose(got["nll"], nll / count, rtol=1e-5)


def test_qa_scoring_exact_match_and_contains(runs):
    base, _ = runs
    loaded = load_checkpoint(base / "sft")
    assert normalize("The capital of Peru is Lima!") == "capital of peru is lima"

    class Fixed:  # replies chosen by the test, to check the scoring alone
        cfg, tokenizer = loaded.cfg, loaded.tokenizer

        @staticmethod
        def reply(convs, sampling, key):
            return [{"text": t, "stopped": True} for t in ["The capital of Peru is Lima.", "It is Lima, I think", "Paris"]]

    qs = [{"question": "q", "answers": ["The capital of Peru is Lima."], "contains": ["Lima"], "kind": "a"}] * 3
    res = qa_accuracy(Fixed, qs, "chat")
    assert res["exact_match"] == pytest.approx(1 / 3) and res["contains_answer"] == pytest.approx(2 / 3)
    with pytest.raises(UserError, match="use chat or qa"):
        qa_accuracy(Fixed, qs, "xml")


def test_sft_on_a_users_alpaca_file(runs, tmp_path):
    """SFT on real instruction data (the self-instruct seed tasks), from the user's own pre-trained run."""
    from conftest import SHARED_DATA
    base, _ = runs
    res = train(tiny_config(tmp_path / "alpaca", "objective.name=sft", f"init_from={base / 'pre'}", "train.steps=4",
                            "data.source=jsonl", f"data.paths=[{SHARED_DATA / 'sft' / 'alpaca-seed-tasks.jsonl'}]",
                            "train.seq_len=128", "objective.sft.train_on=last_assistant", "train.sample_tokens=0"))
    assert all(np.isfinite(h["loss"]) for h in res.history) and len(res.history) == 4
    assert (tmp_path / "alpaca" / "checkpoints" / "4").is_dir()
