"""Data: the built-in corpus, tokenizer, packing with segments, and the resumable iterator."""

import json

import numpy as np
import pytest

from jaxllm.config.schema import DataConfig
from jaxllm.world.corpus import generate_documents
from jaxllm.data.packing import BatchIterator, build_stream, eval_batches, pack_rows
from jaxllm.data.sources import load_documents, split_documents
from jaxllm.data.tokenizer import BOS, EOS, SPECIAL_PIECES, Tokenizer, train_tokenizer
from jaxllm.world.facts import make_world
from jaxllm.errors import UserError


def test_packing_matches_hand_worked_example():
    # docs [10, 11] and [20, 21, 22] -> stream B 10 11 E B 20 21 22 E
    stream = build_stream([[10, 11], [20, 21, 22]])
    assert stream.tokens.tolist() == [BOS, 10, 11, EOS, BOS, 20, 21, 22, EOS]
    b = pack_rows(stream, np.array([0, 1]), 4)
    assert b["inputs"].tolist() == [[BOS, 10, 11, EOS], [BOS, 20, 21, 22]]
    assert b["targets"].tolist() == [[10, 11, EOS, BOS], [20, 21, 22, EOS]]
    assert b["segment_ids"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 1]]
    assert b["loss_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]  # EOS -> next BOS crosses documents
    b = pack_rows(stream, np.array([0]), 6)  # B 10 11 E B 20 | 21
    assert b["segment_ids"].tolist() == [[1, 1, 1, 1, 2, 2]]
    assert b["positions"].tolist() == [[0, 1, 2, 3, 0, 1]]
    assert b["loss_mask"].tolist() == [[1, 1, 1, 0, 1, 1]]


def _stream(n_docs=50, seed=0):
    rng = np.random.default_rng(seed)
    return build_stream([rng.integers(10, 100, rng.integers(3, 20)).tolist() for _ in range(n_docs)])


def test_iterator_is_deterministic_and_resumes_exactly():
    it = BatchIterator(_stream(), 8, 4, seed=3)
    batches = [next(it) for _ in range(30)]  # crosses several epochs
    it2 = BatchIterator(_stream(), 8, 4, seed=3)
    for _ in range(11):
        next(it2)
    state = json.loads(json.dumps(it2.state()))
    it3 = BatchIterator(_stream(), 8, 4, seed=3)
    it3.restore(state)
    for i in range(11, 30):
        np.testing.assert_array_equal(next(it3)["inputs"], batches[i]["inputs"])


def test_each_epoch_visits_every_row_once():
    it = BatchIterator(_stream(), 8, 4, seed=0)
    per_epoch = it.n_rows // 4
    rows = np.concatenate([it.next_rows() for _ in range(per_epoch)])
    assert sorted(rows.tolist()) == sorted(set(rows.tolist())) and len(rows) == per_epoch * 4
    second = np.concatenate([it.next_rows() for _ in range(per_epoch)])
    assert not np.array_equal(rows, second)  # reshuffled


def test_processes_split_the_global_batch():
    single = BatchIterator(_stream(), 8, 4, seed=1)
    parts = [BatchIterator(_stream(), 8, 4, seed=1, process_index=i, process_count=2) for i in range(2)]
    for _ in range(5):
        whole = next(single)["inputs"]
        joined = np.concatenate([next(p)["inputs"] for p in parts])
        np.testing.assert_array_equal(whole, joined)


def test_restore_rejects_changed_data():
    it = BatchIterator(_stream(), 8, 4, seed=1)
    with pytest.raises(UserError, match="the data or train.seq_len changed"):
        BatchIterator(_stream(80), 8, 4, seed=1).restore(it.state())


def test_too_little_data_is_a_clear_error():
    with pytest.raises(UserError, match="fewer than train.batch_size"):
        BatchIterator(_stream(2), 8, 64, seed=0)
    with pytest.raises(UserError, match="evaluation split is shorter"):
        eval_batches(build_stream([[5]]), 64, 4, 1)


def test_builtin_corpus_is_deterministic_and_states_facts_many_ways():
    docs = generate_documents(200_000, seed=0)
    assert docs == generate_documents(200_000, seed=0)
    assert docs != generate_documents(200_000, seed=1)
    text = "\n".join(docs)
    assert 200_000 <= len(text) < 210_000
    w = make_world(0)
    france = next(c for c in w.countries if c.name == "France")
    phrasings = [f"The capital of France is {france.capital}.", f"{france.capital} is the capital of France.",
                 f"France's capital city is {france.capital}.", f"- France: {france.capital}"]
    assert sum(p in text for p in phrasings) >= 3
    # over the default corpus size, every person's birth city is stated at least 3 times, and for nearly every
    # person in at least two phrasings (chance decides which; since the "sayings" genre took 9% of the documents,
    # 1 of the 400 people gets a single phrasing, stated 5 times)
    full = "\n".join(generate_documents(3_000_000, seed=0))
    single = 0
    for p in w.people:
        forms = [f"{p.name} was born in {p.city}.", f"{p.city} is where {p.name} was born.", f"{p.name} comes from {p.city}",
                 f"{p.name}'s birthplace is {p.city}.", f"{p.name} was born in the city of {p.city}."]
        assert sum(full.count(f) for f in forms) >= 3, p.name
        single += sum(f in full for f in forms) < 2
    assert single <= len(w.people) // 100


def test_tokenizer_round_trip_and_special_tokens(tmp_path):
    docs = generate_documents(100_000, seed=0)
    tok = train_tokenizer(docs, vocab_size=600)
    assert tok.pad_id == 0 and tok.bos_id == BOS and tok.eos_id == EOS
    for piece in SPECIAL_PIECES:
        assert tok.piece_id(piece) > EOS
    for s in ["The capital of France is Paris.", "Ünïcödé ✓ 12345 <tag>", "  two  spaces\nnewline"]:
        assert tok.decode(tok.encode(s)) == s
    tok.save(tmp_path / "t.model")
    again = Tokenizer.load(tmp_path / "t.model")
    assert again.encode("Paris and Rome") == tok.encode("Paris and Rome")
    assert train_tokenizer(docs, vocab_size=600).model_proto == tok.model_proto  # deterministic


def test_text_and_jsonl_sources(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\nline two\n\nsecond doc\n")
    (tmp_path / "b.jsonl").write_text('{"text": "one"}\n\n{"text": "two", "id": 3}\n')
    assert load_documents(DataConfig(source="text", paths=[str(tmp_path / "*.txt")]))[0] == ["first doc\nline two", "second doc"]
    assert load_documents(DataConfig(source="jsonl", paths=[str(tmp_path / "b.jsonl")]))[0] == ["one", "two"]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"body": "x"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: no field 'text' \(found: body\)"):
        load_documents(DataConfig(source="jsonl", paths=[str(tmp_path / "bad.jsonl")]))
    (tmp_path / "broken.jsonl").write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(UserError, match="broken.jsonl:2: not valid JSON"):
        load_documents(DataConfig(source="jsonl", paths=[str(tmp_path / "broken.jsonl")]))
    with pytest.raises(UserError, match="matches no file"):
        load_documents(DataConfig(source="text", paths=[str(tmp_path / "*.md")]))


def test_real_text_file_source(tmp_path):
    """WikiText-2 validation text from ../shared/data as a plain-text source."""
    from conftest import SHARED_DATA
    path = SHARED_DATA / "pretrain" / "wikitext-2-valid.txt"
    if not path.exists():
        pytest.skip("../shared/data not present")
    docs, report = load_documents(DataConfig(source="text", paths=[str(path)]))
    assert report["skipped_records"] == 0
    train, held = split_documents(docs, 0.1, 0)
    assert len(docs) > 100 and len(held) == round(len(docs) * 0.1)
    assert set(train).isdisjoint(held) or len(set(docs)) < len(docs)


def test_cli_tokenizer_train(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT
    out = tmp_path / "tok.model"
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "jaxllm.cli", "tokenizer", "train", "pretrain/demo",
                           "data.builtin.chars=50000", "data.tokenizer.vocab_size=500", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    tok = Tokenizer.load(out)
    assert 300 < tok.vocab_size <= 500 and tok.decode(tok.encode("Paris is nice.")) == "Paris is nice."
