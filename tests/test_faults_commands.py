"""User mistakes and damaged inputs outside the train state: each gets one line that names the thing and
the fix (exit 2), or is handled (docs/RELIABILITY.md)."""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, SHARED_DATA, tiny_config
from jaxllm.cli import main
from jaxllm.errors import UserError

TINY = str(ROOT / "configs" / "model" / "tiny.yaml")


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny pre-trained run (tied GPT-2), shared by the command tests."""
    from jaxllm.train.loop import train

    run = tmp_path_factory.mktemp("cmd") / "run"
    train(tiny_config(run, "train.steps=2", "checkpoint.every=2"))
    return run


# -- convert -----------------------------------------------------------------------------------------------------

def test_to_hf_refuses_a_non_empty_dir_and_overwrite_clears_stale_shards(trained, tmp_path, capsys):
    out = tmp_path / "export"
    out.mkdir()
    (out / "model-00001-of-00002.safetensors").write_bytes(b"stale")
    (out / "model.safetensors.index.json").write_text('{"weight_map": {"x": "model-00001-of-00002.safetensors"}}')
    (out / "README.md").write_text("mine")
    assert main(["convert", "to-hf", str(trained), str(out)]) == 2
    line = _one_error_line(capsys)
    assert str(out) in line and "--overwrite" in line
    assert (out / "model.safetensors.index.json").exists()  # refused: nothing touched
    assert main(["convert", "to-hf", str(trained), str(out), "--overwrite"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
                     "tokenizer.json", "tokenizer.model", "tokenizer_config.json"], names
    from jaxllm.interop.tensor_files import TensorFiles
    assert "transformer.wte.weight" in TensorFiles(out)  # the new export, not the stale index, is what is read


def test_to_hf_onto_a_file_and_from_hf_into_a_non_empty_dir(trained, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["convert", "to-hf", str(trained), str(f)]) == 2
    assert "is a file" in _one_error_line(capsys)
    assert main(["convert", "to-hf", str(trained), str(tmp_path / "hf")]) == 0
    capsys.readouterr()
    assert main(["convert", "from-hf", str(tmp_path / "hf"), str(trained)]) == 2
    assert "not empty" in _one_error_line(capsys)


def test_truncated_safetensors_is_one_line(trained, tmp_path, capsys):
    hf = tmp_path / "hf"
    assert main(["convert", "to-hf", str(trained), str(hf)]) == 0
    capsys.readouterr()
    st = hf / "model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    assert main(["convert", "from-hf", str(hf), str(tmp_path / "back")]) == 2
    line = _one_error_line(capsys)
    assert "model.safetensors: truncated" in line and "copy it again" in line
    assert not (tmp_path / "back").exists()


# -- launcher ----------------------------------------------------------------------------------------------------

class _FakeProc:
    """A child whose exit code appears after ``polls`` polls (None = runs until killed)."""

    def __init__(self, rc, polls):
        self.rc, self.polls, self.returncode, self.stdout = rc, polls, None, iter(())

    def poll(self):
        if self.returncode is None and self.polls is not None:
            self.polls -= 1
            if self.polls <= 0:
                self.returncode = self.rc
        return self.returncode

    def kill(self):
        self.returncode = -9

    def send_signal(self, s):
        pass


@pytest.mark.parametrize("victim", [1, 2])
def test_launcher_names_the_process_that_died(monkeypatch, victim):
    """Process ``victim`` is SIGKILLed while process 0 still runs; the others stop after it."""
    import io

    from jaxllm.parallel import local_launch

    plan = {i: (_FakeProc(-9, 3) if i == victim else _FakeProc(1, 30)) for i in range(3)}
    made = iter(range(3))
    monkeypatch.setattr(local_launch.subprocess, "Popen", lambda *a, **k: plan[next(made)])
    monkeypatch.setattr(local_launch.time, "sleep", lambda s: None)
    out = io.StringIO()
    rc = local_launch.run_local(3, ["train"], 1, grace_s=60, out=out)
    assert f"launch: process {victim} failed first (killed by SIGKILL)" in out.getvalue(), out.getvalue()
    assert rc == 128 + 9


def test_launcher_folds_a_cpp_stack_trace_into_one_line():
    import io

    from jaxllm.parallel.local_launch import _pump

    lines = ["F1202 client.h:80] Terminating process because ...\n", "*** Check failure stack trace: ***\n",
             *[f"    @     0x7f00{i:08x}  frame{i}()\n" for i in range(11)], "after\n"]
    out = io.StringIO()
    _pump(1, iter(lines), out)
    assert out.getvalue().splitlines() == ["[1] F1202 client.h:80] Terminating process because ...",
                                           "[1] (11 frames of C++ stack trace omitted)", "[1] after"]


# -- generate / chat flags ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, named", [
    (["--max-new-tokens", "0"], "--max-new-tokens 0"), (["--max-new-tokens", "-5"], "--max-new-tokens -5"),
    (["--top-k", "-3"], "--top-k -3"), (["--top-k", "100000"], "--top-k 100000"),
    (["--temperature", "-1"], "--temperature -1.0"), (["--top-p", "2"], "--top-p 2.0"), (["--top-p", "0"], "--top-p 0.0"),
])
def test_bad_sampling_flags_are_one_line(trained, capsys, flags, named):
    assert main(["generate", str(trained), "--prompt", "The capital of", *flags]) == 2
    assert _one_error_line(capsys).startswith(f"error: {named}:")


def test_greedy_is_fine_and_generate_keeps_the_space_after_the_prompt(trained, capsys):
    from jaxllm.infer.load import load_checkpoint
    import jax
    from jaxllm.model.decode import Sampling

    loaded = load_checkpoint(trained)
    tok = loaded.tokenizer
    prompt = "The capital of"
    cont = loaded.complete([prompt], Sampling(temperature=0.0, max_new_tokens=12), jax.random.PRNGKey(0))[0]
    new = loaded.generate_tokens([[tok.bos_id] + tok.encode(prompt)], Sampling(temperature=0.0, max_new_tokens=12),
                                 jax.random.PRNGKey(0))[0]["tokens"]
    new = [i for i in new if i != tok.eos_id]
    assert prompt + cont == tok.decode(tok.encode(prompt) + new)  # what the tokenizer decodes them to together
    assert main(["generate", str(trained), "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "12"]) == 0
    assert capsys.readouterr().out.strip() == (prompt + cont).strip()


# -- config files ------------------------------------------------------------------------------------------------

def test_yaml_mistakes_are_one_line_with_file_and_line(tmp_path, capsys):
    from jaxllm.config import load_config

    p = tmp_path / "a.yaml"
    p.write_text("train:\n  steps: 300\n  progress: off\n")  # YAML 1.1 reads off as false
    assert load_config(p).train.progress == "off"
    p.write_text("train:\n  steps: 3\n  log_every: 2\n  steps: 4\n")
    with pytest.raises(UserError, match=r"a.yaml:4: key 'steps' appears twice in one mapping \(first on line 2\)"):
        load_config(p)
    p.write_bytes(b"train:\n  sample_prompt: caf\xe9\n")
    with pytest.raises(UserError, match=r"a.yaml:2: not UTF-8 text \(byte 0xe9\)"):
        load_config(p)
    p.write_text("train:\n  sample_prompt: no\n")
    with pytest.raises(UserError, match=r"quote it"):
        load_config(p)
    assert main(["config", "show", str(p)]) == 2
    _one_error_line(capsys)


def test_a_failed_init_from_check_leaves_no_run_dir(trained, tmp_path):
    from jaxllm.train.loop import train

    run = tmp_path / "new"
    with pytest.raises(UserError, match="shape"):
        train(tiny_config(run, "train.steps=2", f"init_from={trained}", "model.d_model=32", "model.n_heads=2"))
    assert not run.exists()


# -- data --------------------------------------------------------------------------------------------------------

def test_truncated_jsonl_gz_is_one_line_or_counted(tmp_path):
    from jaxllm.data.readers import BadRecords, read_jsonl

    path = tmp_path / "d.jsonl.gz"
    with gzip.open(path, "wt") as f:
        for i in range(3000):
            f.write(json.dumps({"text": f"record {i} " * 8}) + "\n")
    path.write_bytes(path.read_bytes()[:-4000])
    with pytest.raises(UserError, match=r"d.jsonl.gz:\d+: the gzip stream breaks off here .* lines were read before"):
        read_jsonl(path, "text")
    bad = BadRecords("skip")
    docs = read_jsonl(path, "text", bad)
    assert bad.count == 1 and 0 < len(docs) < 3000
    assert f"{len(docs)} lines were read before the break" in bad.examples[0]


def test_long_single_line_documents_train_the_tokenizer(tmp_path):
    """200 one-line documents of 20 KB each: SentencePiece would skip every sentence over 16 KiB."""
    from jaxllm.data.report import data_lines
    from jaxllm.data.tokenizer import SENTENCE_CHARS, train_tokenizer, training_sentences
    from jaxllm.world.corpus import generate_documents

    words = " ".join(generate_documents(200_000, 0)).split()
    docs = [" ".join(np.random.default_rng(i).choice(words, 4000))[:20_000] for i in range(200)]
    assert all(len(d.encode()) > 16_384 and "\n" not in d for d in docs)
    pieces = list(training_sentences(docs[0]))
    assert "".join(pieces) == docs[0] and max(map(len, pieces)) <= SENTENCE_CHARS
    tok = train_tokenizer(docs, 1000, max_chars=5_000_000)
    assert tok.vocab_size >= 900
    assert tok.trained_on["documents_left_out"] == 0
    small = train_tokenizer(docs, 500, max_chars=1_000_000)
    left = small.trained_on
    assert left["documents"] == 50 and left["documents_left_out"] == 150
    assert left["characters_left_out"] == sum(map(len, docs[50:]))
    line = data_lines({"tokenizer_training": left})[0]
    assert f"{left['characters_left_out']:,} characters in 150 documents left out" in line


def test_markup_step_leaves_plain_text_alone():
    from jaxllm.data.clean_steps import MarkupToText

    m = MarkupToText()
    play = "KING. Good night, &c.\n\nQUEEN. If a < b, then so be it &C\n\nEXIT"
    assert m.format(play) == play
    assert m.format("Fish &amp; chips &#8212; &eacute;t&eacute;") == "Fish & chips \u2014 \u00e9t\u00e9"
    assert m.format("<p>Hello &amp; bye</p><script>x()</script>\n<div>two</div>") == "Hello & bye\ntwo"


def test_eval_on_training_rows_is_said_and_labelled(tmp_path, capsys):
    from jaxllm.train.loop import train

    res = train(tiny_config(tmp_path / "run", "data.eval_fraction=0", "train.steps=2"))
    out = capsys.readouterr().out
    assert "nothing is held out (data.eval_fraction = 0): evaluation runs on training rows" in out
    assert "eval (on train rows) loss" in out and res.eval["evaluated_on"] == "train"
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["evaluated_on"] == "train" and "eval_loss" in rows[-1]


def test_cleaning_thresholds_are_keys_and_one_huge_document_is_cut():
    from jaxllm.config.schema import CleanConfig
    from jaxllm.data.clean import filter_steps
    from jaxllm.data.prepare import cut_long_documents

    steps, labels = filter_steps(CleanConfig(quality_max_words=123))
    quality = steps[2 * labels.index("quality")]
    assert quality.max_doc_words == 123
    text = "".join(f"SPEAKER {i}:\nSome words here, said well.\n\n" for i in range(20_000))
    pieces, cut = cut_long_documents([text, "short"], 100_000)
    assert cut == {"documents": 1, "pieces": len(pieces) - 1, "limit": 100_000}
    assert "".join(pieces[:-1]) == text and pieces[-1] == "short"
    assert all(len(p) <= 100_000 and p.endswith("\n\n") for p in pieces[:-2])  # cut at blank lines


@pytest.mark.slow
def test_the_tiny_shakespeare_recipe_in_data_md_works_as_written(tmp_path):
    """docs/DATA.md's two commands, with only the run shortened (steps, model size, run dir)."""
    doc = (ROOT / "docs" / "DATA.md").read_text()
    build = "jaxllm data tfds-build tiny_shakespeare --paths ../shared/data/pretrain/tinyshakespeare.txt --data-dir ~/tfds"
    run = "jaxllm train pretrain/demo data.source=tfds:tiny_shakespeare data.data_dir=~/tfds data.eval_fraction=0"
    assert build in doc and run in doc
    tfds_dir = tmp_path / "tfds"
    args = build.replace("~/tfds", str(tfds_dir)).replace("../shared/data", str(SHARED_DATA)).split()[1:]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")  # as on a laptop
    subprocess.run([sys.executable, "-m", "jaxllm", *args], cwd=ROOT, check=True, capture_output=True, env=env)
    short = ["train.steps=2", "optimizer.warmup_steps=1", "train.batch_size=4", "train.seq_len=64",
             "train.sample_tokens=0", "train.progress=off", "model.n_layers=1", f"run.dir={tmp_path / 'run'}"]
    p = subprocess.run([sys.executable, "-m", "jaxllm", *run.replace("~/tfds", str(tfds_dir)).split()[1:], *short],
                       cwd=ROOT, capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "cut 1 documents longer than 100,000 characters into" in p.stdout
    assert "eval (on train rows) loss" in p.stdout


# -- untied GPT-2 exports ----------------------------------------------------------------------------------------

def test_a_trained_untied_gpt2_run_exports_and_transformers_agrees(tmp_path):
    tf = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    import jax
    import jax.numpy as jnp

    from jaxllm.infer.load import load_checkpoint
    from jaxllm.train.loop import train

    run = tmp_path / "untied"
    train(tiny_config(run, "model.tie_embeddings=false", "train.steps=3", "optimizer.lr=1e-2"))
    loaded = load_checkpoint(run)
    assert "bias" not in loaded.params["lm_head"]
    assert main(["convert", "to-hf", str(run), str(tmp_path / "hf")]) == 0
    back = tf.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert not back.config.tie_word_embeddings
    tokens = np.array([[loaded.tokenizer.bos_id] + loaded.tokenizer.encode("The capital of France is")])
    ours = np.asarray(loaded.model.apply({"params": jax.device_get(loaded.params)}, jnp.asarray(tokens)))
    with torch.no_grad():
        theirs = back(torch.tensor(tokens)).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_an_old_untied_gpt2_run_dir_reads_its_head_bias_back(tmp_path):
    """config.yaml of a run saved before model.head_bias existed: its untied head had a bias."""
    from jaxllm.config import dump_yaml, load_config

    cfg = tiny_config(tmp_path / "old", "model.tie_embeddings=false")
    text = dump_yaml(cfg).replace("  head_bias: false\n", "")
    assert "\n  head_bias:" not in text  # (model.lora.train names a scalar head's head_bias: another key)
    (tmp_path / "config.yaml").write_text(text)
    assert load_config(tmp_path / "config.yaml").model.head_bias is True
    user = tmp_path / "user.yaml"  # a user's file naming a few keys is not a saved run config
    user.write_text("model:\n  family: gpt2\n  tie_embeddings: false\n")
    assert load_config(user).model.head_bias is False
