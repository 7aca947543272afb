"""Hugging Face tokenizers beside SentencePiece: the trained byte-level BPE kind, models' own chat templates
(against `transformers`' ``apply_chat_template``), exported tokenizers (against ``AutoTokenizer``) and the
errors a user gets for a bad tokenizer or template."""

import json

import pytest

from jaxllm.data.chat import ChatTemplate, Message, chat_template, jinja_template
from jaxllm.data.hf_tokenizer import HFTokenizer, sentencepiece_to_hf, train_bpe
from jaxllm.data.model_template import ModelChatTemplate
from jaxllm.data.tokenizer import Tokenizer, train_tokenizer
from jaxllm.errors import UserError
from jaxllm.world.corpus import generate_documents

tf = pytest.importorskip("transformers")

TEXTS = ["Hello world", "  two spaces  and\nnewline\n\nend", " leading space", "The year 2024 has 365 days.",
         "naïve café — 東京 🙂", "a\tb", "", "   ", "ends with space ", "<not a special> token"]
CONV = [Message("system", "Be brief."), Message("user", "What is the capital of France?"),
        Message("assistant", "Paris."), Message("user", "And of Peru?"), Message("assistant", " Lima, I think.\n")]

# Qwen-style (ChatML) and Llama-3-style templates, with transformers' {% generation %} markers
QWEN = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' }}{% if m['role'] == 'assistant' %}"
        "{% generation %}{{ m['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
        "{% else %}{{ m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' }}"
          "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
          "{% else %}{{ m['content'] | trim + '<|eot_id|>' }}{% endif %}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
STYLES = {
    "qwen": (QWEN, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
             {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None}),
    "llama3": (LLAMA3, ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
               {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<|end_of_text|>"}),
}


@pytest.fixture(scope="module")
def docs():
    return list(generate_documents(40_000, 0))


def _bpe_dir(tmp, docs, specials, config):
    """A byte-level BPE ``tokenizer.json`` with ``specials``, as a model's tokenizer, written with its config."""
    from tokenizers import Tokenizer as T, decoders, models, pre_tokenizers, trainers

    tk = T(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(docs, trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                                     initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tmp.mkdir(parents=True, exist_ok=True)
    tk.save(str(tmp / "tokenizer.json"))
    (tmp / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", **config}))
    return tmp


def test_trained_bpe_kind_has_jaxllm_ids_and_round_trips_text(docs):
    tok = train_tokenizer(docs, 500, max_chars=200_000, kind="bpe")
    assert isinstance(tok, HFTokenizer) and (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.vocab_size == 500 and tok.trained_on["documents"] > 0
    for s in TEXTS:
        assert tok.decode(tok.encode(s)) == s
    assert ChatTemplate(tok).reserved  # the chat pieces are single tokens, as with SentencePiece
    assert train_bpe(docs, 500, 200_000).tokenizer_json == tok.tokenizer_json  # deterministic


@pytest.mark.parametrize("style", list(STYLES))
def test_model_chat_template_equals_transformers_apply_chat_template(style, tmp_path, docs):
    """Tokens and assistant mask of a multi-turn chat, and the generation prompt, as transformers gives them."""
    source, specials, config = STYLES[style]
    d = _bpe_dir(tmp_path / style, docs, specials, {**config, "chat_template": source})
    tok = Tokenizer.load(d / "tokenizer.json")
    template = chat_template(tok)
    assert isinstance(template, ModelChatTemplate) and template.marked
    ref = tf.AutoTokenizer.from_pretrained(d)
    messages = [{"role": m.role, "content": m.content} for m in CONV]
    want = ref.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    tokens, targets = template.encode(CONV)
    assert tokens == list(want["input_ids"]) and targets == list(want["assistant_masks"])
    assert sum(targets) > 0
    prompt = ref.apply_chat_template(messages[:2], tokenize=True, add_generation_prompt=True, return_dict=True)
    assert template.prompt(CONV[:2]) == list(prompt["input_ids"])
    end = tok.piece_id(config["eos_token"])
    assert end in template.stop_ids
    assert template.reply_text(tok.encode("Lima.") + [end] + tok.encode("junk")) == "Lima."


def test_without_markers_the_mask_comes_from_prefix_renders(tmp_path, docs):
    """The Llama-3 template with its markers removed gives the same mask by rendering prefix by prefix; the
    ChatML one also marks the newline after <|im_end|> (what the assistant's turn adds to the text)."""
    for style in STYLES:
        source, specials, config = STYLES[style]
        d = _bpe_dir(tmp_path / style, docs, specials, config)
        tok = HFTokenizer.load(d)
        marked = ModelChatTemplate(tok, source)
        plain = ModelChatTemplate(tok, source.replace("{% generation %}", "").replace("{% endgeneration %}", ""))
        assert not plain.marked and plain.how == "rendering prefix by prefix"
        (t1, m1), (t2, m2) = marked.encode(CONV), plain.encode(CONV)
        assert t1 == t2
        extra = [i for i, (a, b) in enumerate(zip(m1, m2)) if a != b]
        if style == "llama3":
            assert m1 == m2
        else:
            assert all(m2[i] and tok.token_text(t1[i - 1]) == "<|im_end|>" for i in extra) and len(extra) == 2


def test_bad_templates_and_tokenizers_get_messages(tmp_path, docs):
    source, specials, config = STYLES["qwen"]
    d = _bpe_dir(tmp_path / "q", docs, specials, config)
    tok = HFTokenizer.load(d)
    with pytest.raises(UserError, match=r"tokenizer.json: the chat_template does not parse: .*template line 1"):
        ModelChatTemplate(tok, "{% for m in messages %}{{ m['content'] }")
    with pytest.raises(UserError, match="the chat_template failed to render: no system messages"):
        ModelChatTemplate(tok, "{{ raise_exception('no system messages') }}")
    with pytest.raises(UserError, match=r"marks no assistant tokens \(found by its \{% generation %\} markers\)"):
        ModelChatTemplate(tok, "{% for m in messages %}{% if m['role'] == 'system' %}{% generation %}{{ m['content'] }}"
                               "{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}{% endfor %}")
    with pytest.raises(UserError, match="rendering prefix by prefix does not work for it \\(the render up to message 1"):
        ModelChatTemplate(tok, "{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m['content'] }}{% endfor %}")
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|nope|>"}))
    with pytest.raises(UserError, match=r"eos_token '<\|nope\|>' from tokenizer_config.json is not in the vocabulary"):
        HFTokenizer.load(d)
    (d / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="not a Hugging Face tokenizer.json"):
        HFTokenizer.load(d)


def _export(tok, tmp_path):
    from jaxllm.interop.convert import export_tokenizer

    run, out = tmp_path / "run", tmp_path / "export"
    run.mkdir()
    out.mkdir()
    tok.save(run / tok.filename)
    notes = export_tokenizer(tok, run, out)
    return out, notes


@pytest.mark.parametrize("kind", ["sentencepiece", "bpe"])
def test_exported_tokenizer_gives_jaxllm_ids_in_autotokenizer(kind, tmp_path, docs):
    """A run's tokenizer, exported: AutoTokenizer's ids equal jaxllm's on plain text, its chat template (jaxllm's,
    in Jinja) equals ChatTemplate.encode with the same assistant mask, and generate's eos ids are jaxllm's stops."""
    tok = train_tokenizer(docs, 500, max_chars=200_000, kind=kind)
    out, notes = _export(tok, tmp_path)
    assert "generation_config.json" in notes[-1]
    ref = tf.AutoTokenizer.from_pretrained(out)
    texts = TEXTS + docs[:200]
    assert [ref(s, add_special_tokens=False)["input_ids"] for s in texts] == [tok.encode(s) for s in texts]
    ours = ChatTemplate(tok)
    messages = [{"role": m.role, "content": m.content} for m in CONV]
    want = ref.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    tokens, targets = ours.encode(CONV)
    assert tokens == list(want["input_ids"]) and targets == list(want["assistant_masks"])
    generation = json.loads((out / "generation_config.json").read_text())
    assert set(generation["eos_token_id"]) == set(ours.stop_ids) == {tok.piece_id("<|end|>"), tok.eos_id}
    assert (ref.bos_token_id, ref.eos_token_id, ref.pad_token_id) == (tok.bos_id, tok.eos_id, tok.pad_id)


def test_sentencepiece_unigram_and_normalising_models_keep_tokenizer_model_only(tmp_path, docs):
    tok = train_tokenizer(docs, 500, model_type="unigram", max_chars=200_000)
    with pytest.raises(UserError, match="unigram model has no BPE equivalent"):
        sentencepiece_to_hf(tok)
    out, notes = _export(tok, tmp_path)
    assert (out / "tokenizer.model").is_file() and not (out / "tokenizer.json").exists()
    assert "unigram" in notes[0]


def test_jaxllm_template_in_jinja_renders_what_chat_template_encodes(docs):
    """The exported Jinja template, rendered by jaxllm's own renderer over the run's tokenizer, gives the same
    tokens and targets as `ChatTemplate` (the reference the export is checked against above)."""
    tok = train_tokenizer(docs, 500, max_chars=200_000, kind="bpe")
    model = ModelChatTemplate(tok, jinja_template())
    assert model.encode(CONV) == ChatTemplate(tok).encode(CONV)
    assert model.prompt(CONV[:2]) == ChatTemplate(tok).prompt(CONV[:2])


def test_the_bpe_kind_trains_from_the_command_and_prepares_data(tmp_path, capsys):
    """``data.tokenizer.kind=bpe``: `jaxllm tokenizer train` writes tokenizer.json and `data prepare` writes the
    same tokenizer beside the tokens, which `read_prepared` loads back. (Training, chat and export with a
    tokenizer.json: the slow Qwen3/Gemma end-to-end test in test_hf_interop.py.)"""
    from conftest import ROOT, tiny_overrides

    from jaxllm.cli import main
    from jaxllm.data.prepared import read_prepared

    over = tiny_overrides(tmp_path / "run", "data.tokenizer.kind=bpe", f"data.prepared_dir={tmp_path / 'prep'}")
    cfg = str(ROOT / "configs/model/tiny.yaml")
    assert main(["tokenizer", "train", cfg, *over, "--out", str(tmp_path / "tok" / "tokenizer.json")]) == 0
    assert "byte-level BPE, tokenizer.json" in capsys.readouterr().out
    assert main(["data", "prepare", cfg, *over]) == 0
    streams, tok, _ = read_prepared(tmp_path / "prep")
    assert isinstance(tok, HFTokenizer) and (tmp_path / "prep" / "tokenizer_config.json").is_file()
    assert tok.tokenizer_json == HFTokenizer.load(tmp_path / "tok").tokenizer_json  # same corpus, same tokenizer
    assert streams["train"].tokens.max() < tok.vocab_size and streams["train"].tokens[0] == tok.bos_id


def test_a_tokenizer_larger_than_the_embedding_is_refused_at_conversion(tmp_path, docs):
    from jaxllm.interop.convert import _import_tokenizer

    source, specials, config = STYLES["qwen"]
    d = _bpe_dir(tmp_path / "hf", docs, specials, {**config, "chat_template": source})
    n = HFTokenizer.load(d).vocab_size
    (tmp_path / "run").mkdir()
    with pytest.raises(UserError, match=rf"tokenizer.json: the tokenizer has {n} tokens but the model's embedding has "
                                        rf"{n - 10} rows \(config.json vocab_size\)"):
        _import_tokenizer(d, tmp_path / "run", n - 10)
    lines = _import_tokenizer(d, tmp_path / "run", n + 4)  # fewer tokens than rows is normal (Qwen pads)
    assert "its chat template is used (assistant turns found by its {% generation %} markers)" in lines[0]


def test_a_response_cut_at_a_length_limit_ends_before_the_turns_closing_tokens(tmp_path, docs):
    """Preference data: a candidate that does not stop loses its turn's end (<|im_end|> and the newline after
    it in ChatML; jaxllm's <|end|>), so the policy is never credited with stopping there."""
    from jaxllm.data.pref_data import Candidate, encode_response

    source, specials, config = STYLES["qwen"]
    tok = HFTokenizer.load(_bpe_dir(tmp_path / "q", docs, specials, {**config, "chat_template": source}))
    for template in (ModelChatTemplate(tok), ChatTemplate(train_tokenizer(docs, 500, max_chars=100_000))):
        full, full_mask = encode_response(template, CONV[:2], Candidate("Paris is", True))
        cut, cut_mask = encode_response(template, CONV[:2], Candidate("Paris is", False))
        end = [i for i, t in enumerate(full) if t in template.stop_ids and full_mask[i]][-1]
        assert cut == full[:end] and cut_mask == full_mask[:end] and sum(cut_mask) == sum(full_mask) - 1
