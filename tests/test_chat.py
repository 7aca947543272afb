"""Chat template, loss mask, packing of conversations, chat loaders and the built-in SFT world."""

import gzip
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import SHARED_DATA
from jaxllm.config.schema import ModelConfig
from jaxllm.data.chat import ChatTemplate, Message
from jaxllm.data.chat_sources import parse_hh, read_chat_files
from jaxllm.world.chats import builtin_conversations, builtin_questions, make_world, split_world
from jaxllm.world.corpus import generate_documents
from jaxllm.data.packing import pack_examples
from jaxllm.data.sft_data import encode_all
from jaxllm.data.tokenizer import BOS, train_tokenizer
from jaxllm.errors import UserError
from jaxllm.model import Transformer, resolve_spec


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(generate_documents(80_000, 0), vocab_size=500)


MULTI = [Message("system", "Be brief."), Message("user", "Hello!"), Message("assistant", "Hi! How can I help?"),
         Message("user", "What is the capital of Peru?"), Message("assistant", "The capital of Peru is Lima.")]


def _assistant_spans(tokens, tpl):
    """Token indices inside assistant turns, found from the markers: after <|assistant|> up to and with <|end|>."""
    inside, out = False, set()
    for i, t in enumerate(tokens):
        if t in tpl.role_ids.values():
            inside = t == tpl.role_ids["assistant"]
            continue
        if inside:
            out.add(i)
            if t == tpl.end_id:
                inside = False
    return out


def test_loss_mask_covers_exactly_the_assistant_tokens(tok):
    tpl = ChatTemplate(tok)
    tokens, flags = tpl.encode(MULTI)
    assert tokens[0] == BOS and len(tokens) == len(flags)
    assert {i for i, f in enumerate(flags) if f} == _assistant_spans(tokens, tpl)
    # token by token: the flagged tokens are the two replies, each closed by <|end|>; nothing of the user or system
    flagged = [t for t, f in zip(tokens, flags) if f]
    first_end = flagged.index(tpl.end_id)
    assert tok.decode(flagged[:first_end]) == "Hi! How can I help?"
    assert tok.decode(flagged[first_end + 1:-1]) == "The capital of Peru is Lima."
    assert flagged[-1] == tpl.end_id and flagged.count(tpl.end_id) == 2
    unflagged = tok.decode([t for t, f in zip(tokens, flags) if not f and t not in tpl.role_ids.values()
                            and t not in (BOS, tpl.end_id)])
    assert "Be brief." in unflagged and "Hello!" in unflagged and "Peru?" in unflagged and "Lima" not in unflagged
    # the generation prompt ends with the assistant marker
    assert tpl.prompt(MULTI[:2]) == tpl.encode(MULTI[:2])[0] + [tpl.role_ids["assistant"]]
    # last_assistant keeps only the final reply
    (_, last), = encode_all(tpl, [MULTI], "last_assistant")
    assert tok.decode([t for t, f in zip(tokens, last) if f and t != tpl.end_id]) == "The capital of Peru is Lima."


def test_packed_rows_keep_targets_and_conversations_apart(tok):
    tpl = ChatTemplate(tok)
    convs = [MULTI, [Message("user", "Hi"), Message("assistant", "Hello.")], MULTI[1:3]] * 3
    examples = [tpl.encode(c) for c in convs]
    rows, stats = pack_examples(examples, 64)
    assert stats["examples"] == 9 and stats["truncated"] == 0
    assert rows["inputs"].shape[1] == 64 and stats["rows"] < 9  # several conversations share a row
    # every example appears whole, once: its inputs/targets/mask are the shifted tokens/flags within one segment
    seen = []
    for r in range(stats["rows"]):
        for seg in range(1, rows["segment_ids"][r].max() + 1):
            at = np.flatnonzero(rows["segment_ids"][r] == seg)
            assert (np.diff(at) == 1).all() and (rows["positions"][r, at] == np.arange(len(at))).all()
            seen.append((rows["inputs"][r, at].tolist() + [int(rows["targets"][r, at[-1]])],
                         [0] + rows["loss_mask"][r, at].astype(int).tolist()))
        pad = rows["segment_ids"][r] == 0
        assert (rows["loss_mask"][r, pad] == 0).all()
    assert sorted(map(str, seen)) == sorted(str((t, [0] + f[1:])) for t, f in examples)

    # attention: a packed conversation's logits equal the conversation run alone
    spec = resolve_spec(ModelConfig(family="llama", vocab_size=512, n_layers=2, d_model=32, n_heads=4, max_seq_len=64),
                        backend="cpu")
    model = Transformer(spec)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"])
    packed = jax.jit(model.apply)({"params": params}, jnp.asarray(rows["inputs"][:1]), jnp.asarray(rows["positions"][:1]),
                                  jnp.asarray(rows["segment_ids"][:1]))[0]
    for seg in (1, 2):
        at = np.flatnonzero(rows["segment_ids"][0] == seg)
        alone = jax.jit(model.apply)({"params": params}, jnp.asarray(rows["inputs"][0, at][None]))[0]
        np.testing.assert_allclose(np.asarray(packed)[at], np.asarray(alone), atol=1e-5)


def test_long_conversations_are_cut_and_counted(tok):
    tpl = ChatTemplate(tok)
    long = [Message("user", "word " * 200), Message("assistant", "ok")]
    rows, stats = pack_examples([tpl.encode(long)], 32)
    assert stats["truncated"] == 1 and rows["inputs"].shape == (1, 32)


def test_tokenizer_without_chat_pieces_uses_text_markers_and_eos():
    """A pretrained model's tokenizer (Llama's ids: unk 0, bos 1, eos 2, no pad piece) has no reserved chat pieces:
    role markers become text, EOS ends a turn, and the loss mask still covers exactly the assistant replies."""
    import io

    import sentencepiece as spm

    from jaxllm.data.tokenizer import Tokenizer
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(generate_documents(20_000, 0)), model_writer=model,
                                   vocab_size=400, pad_id=-1, unk_id=0, bos_id=1, eos_id=2, minloglevel=2,
                                   byte_fallback=True)  # as Llama's
    tok = Tokenizer(model.getvalue())
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (1, 2, 0)
    tpl = ChatTemplate(tok)
    assert not tpl.reserved and tpl.end_id == 2 and tpl.stop_ids == (2,)
    tokens, flags = tpl.encode(MULTI)
    assert tokens[0] == 1
    flagged = [t for t, f in zip(tokens, flags) if f]
    first = flagged.index(2)
    assert tok.decode(flagged[:first]) == "Hi! How can I help?"
    assert tok.decode(flagged[first + 1:-1]) == "The capital of Peru is Lima." and flagged[-1] == 2
    text = tok.decode([t for t, f in zip(tokens, flags) if not f])
    assert "<|system|>" in text and "<|user|>" in text and "Be brief." in text and "Lima" not in text
    prompt = tpl.prompt(MULTI[:2])
    assert tok.decode(prompt[len(tpl.encode(MULTI[:2])[0]):]).strip() == "<|assistant|>"
    (_, last), = encode_all(tpl, [MULTI], "last_assistant")
    assert tok.decode([t for t, f in zip(tokens, last) if f and t != 2]) == "The capital of Peru is Lima."


def test_alpaca_seed_tasks_load_one_conversation_per_instance():
    path = SHARED_DATA / "sft" / "alpaca-seed-tasks.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    convs, report = read_chat_files([str(path)], "auto", "text", "raise")
    assert len(convs) == sum(len(r["instances"]) for r in records) and report["skipped_records"] == 0
    first, inst = records[0], records[0]["instances"][0]
    want = first["instruction"] + (f"\n\n{inst['input']}" if inst["input"].strip() else "")
    assert convs[0][0] == Message("user", want.strip()) and convs[0][1] == Message("assistant", inst["output"].strip())


def test_hh_rlhf_dialogues_parse_into_turns():
    path = SHARED_DATA / "preference" / "hh-rlhf-harmless-2000.jsonl.gz"
    convs, _ = read_chat_files([str(path)], "hh", "chosen", "skip")
    assert len(convs) >= 1990
    with gzip.open(path, "rt") as f:
        rec = json.loads(f.readline())
    expect_turns = rec["chosen"].count("\n\nHuman:") + rec["chosen"].count("\n\nAssistant:")
    assert len(convs[0]) == expect_turns
    assert [m.role for m in convs[0][:2]] == ["user", "assistant"]
    assert convs[0][0].content == rec["chosen"].split("\n\nHuman: ")[1].split("\n\nAssistant:")[0].strip()
    assert parse_hh("\n\nHuman: hi\n\nAssistant: hello") == [Message("user", "hi"), Message("assistant", "hello")]


def test_messages_and_sharegpt_formats_and_bad_records(tmp_path):
    f = tmp_path / "chats.jsonl"
    f.write_text("\n".join([
        json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                                 {"role": "assistant", "content": "a"}]}),
        json.dumps({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "r"}]}),
        json.dumps({"messages": [{"role": "robot", "content": "x"}]}),
        "{not json",
        json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),
    ]) + "\n")
    with pytest.raises(UserError, match=r"chats.jsonl:3: messages\[0\].role = 'robot'"):
        read_chat_files([str(f)], "auto", "text", "raise")
    convs, report = read_chat_files([str(f)], "auto", "text", "skip")
    assert convs == [[Message("system", "s"), Message("user", "u"), Message("assistant", "a")],
                     [Message("user", "q"), Message("assistant", "r")]]
    assert report["skipped_records"] == 3
    assert "chats.jsonl:5: no assistant message" in report["skipped_examples"][2]


def test_builtin_sft_chats_never_mention_held_out_facts():
    world = make_world(0)
    split = split_world(world, 0.25, 0)
    assert len(split.heldout_countries) == 16 and len(split.heldout_people) == 100
    convs = builtin_conversations(2000, 0, 0.25, world)
    text = "\n".join(m.content for c in convs for m in c)
    for c in split.heldout_countries:
        assert c.name not in text
    for p in split.heldout_people:
        assert p.name not in text
    assert sum(len(c) > 3 for c in convs) > 300  # multi-turn chats
    assert all(c[-1].role == "assistant" for c in convs)
    qs = builtin_questions("heldout", 0, 0.25, world)
    assert len(qs) == 16 * 4 + 100 * 4 and all(q.short in q.answer for q in qs)
    assert {q.question.split(" of ")[-1].rstrip("?") for q in qs if q.kind == "country.capital"} == \
        {c.name for c in split.heldout_countries}
