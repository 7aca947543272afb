"""Cleaning (datatrove): each step on crafted input, what it removes and what it keeps."""

import random

import pytest

pytest.importorskip("datatrove")

from jaxllm.config.schema import CleanConfig  # noqa: E402
from jaxllm.data.clean import clean_documents  # noqa: E402

ALL_OFF = dict(ftfy=False, markup=False, boilerplate=False, length=False, repetition=False, quality=False,
               fineweb=False, exact_dedup=False, minhash=False)
PROSE = ("The old library stands at the corner of the market square. Every morning the librarian opens the heavy "
         "doors and waits for the first readers of the day. Students come to study history and science, and "
         "travellers ask for maps of the region and the roads that lead to the coast.")


def clean(docs, **on):
    return clean_documents(docs, CleanConfig(enabled=True, **{**ALL_OFF, **on}))


def test_ftfy_repairs_mojibake():
    kept, report = clean(["We met at a small cafÃ© in ZÃ¼rich."], ftfy=True)
    assert kept == ["We met at a small café in Zürich."]
    assert report[1]["step"] == "ftfy" and report[1]["characters_removed"] == 2


def test_markup_to_text():
    doc = "<html><head><script>var x=1;</script></head><body><p>Tea &amp; cake</p><div>at five</div></body></html>"
    kept, _ = clean([doc, "plain text stays as it is"], markup=True)
    assert kept == ["Tea & cake\nat five", "plain text stays as it is"]


def test_boilerplate_lines_removed_rest_kept():
    doc = "Subscribe to our newsletter!\n" + PROSE + "\nCopyright 2024. All rights reserved.\nClick here to read more."
    kept, report = clean([doc], boilerplate=True)
    assert kept == [PROSE]
    assert report[1]["characters_removed"] > 80


def test_c4_rules_drop_lorem_ipsum_and_javascript_lines():
    kept, report = clean(["Lorem ipsum dolor sit amet, consectetur adipiscing elit.", PROSE + "\nPlease enable javascript."],
                         boilerplate=True)
    assert kept == [PROSE]
    assert sum(r["documents_removed"] for r in report) == 1


def test_length_filter():
    kept, report = clean(["Home", PROSE, "x" * 600], length=True, min_chars=50, max_chars=500)
    assert kept == [PROSE] and report[-1]["documents_removed"] == 2


def test_gopher_repetition_drops_spam_keeps_prose():
    spam = " ".join(["Buy now and save big!"] * 20)
    kept, _ = clean([spam, PROSE], repetition=True)
    assert kept == [PROSE]


def test_gopher_quality_drops_symbol_junk_keeps_prose():
    junk = " ".join(["#### @@@@ $$$$ ...."] * 20)
    kept, _ = clean([junk, PROSE], quality=True, quality_min_words=10)
    assert kept == [PROSE]


def test_exact_dedup_keeps_first_copy():
    kept, report = clean([PROSE, "another document here", PROSE, "  " + PROSE.replace(" ", "  ")], exact_dedup=True)
    assert kept == [PROSE, "another document here"] and report[-1]["documents_removed"] == 2


def _words_doc(rng, vocab, n=200):
    return " ".join(rng.choice(vocab) for _ in range(n))


def _mutate(rng, doc, frac, vocab):
    words = doc.split()
    for i in rng.sample(range(len(words)), int(len(words) * frac)):
        words[i] = rng.choice(vocab)
    return " ".join(words)


def test_minhash_finds_planted_near_duplicates_at_the_threshold():
    rng = random.Random(0)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(3000)]  # letters only:
    # datatrove normalises digits away before shingling
    originals = [_words_doc(rng, vocab) for _ in range(20)]
    near = [_mutate(rng, d, 0.02, vocab) for d in originals[:10]]     # 2% of words changed: Jaccard of 5-grams ~0.8-0.9
    far = [_mutate(rng, d, 0.5, vocab) for d in originals[10:]]        # 50% changed: Jaccard ~0.03
    kept, report = clean(originals + near + far, minhash=True)         # default 14 x 8: threshold ~0.72
    kept = set(kept)
    for o, n in zip(originals[:10], near):  # one survivor per near-duplicate pair (either may be the one kept)
        assert (o in kept) != (n in kept)
    assert set(originals[10:]) | set(far) <= kept  # far from everything: all kept
    assert report[-1]["documents_removed"] == 10
    strict = CleanConfig(enabled=True, **{**ALL_OFF, "minhash": True, "minhash_buckets": 2, "minhash_hashes_per_bucket": 40})
    kept_strict, _ = clean_documents(originals + near, strict)  # threshold ~0.98: these near copies survive
    assert len(kept_strict) == 30


def test_builtin_noise_is_removed_and_reported():
    """The built-in corpus's planted noise: every kind is removed by its step; the demo profile keeps clean text."""
    from jaxllm.config import load_config
    from conftest import ROOT
    from jaxllm.data.sources import load_documents
    cfg = load_config(ROOT / "configs/pretrain/demo.yaml", ["data.builtin.chars=300000"])
    docs, _ = load_documents(cfg.data)
    kept, report = clean_documents(docs, cfg.data.clean)
    by_step = {r["step"]: r for r in report}
    assert by_step["ftfy"]["characters_removed"] > 0          # mojibake repaired (Ã© -> é)
    assert by_step["markup"]["characters_removed"] > 1000     # tags, scripts, entities
    assert by_step["boilerplate"]["characters_removed"] > 500
    assert by_step["length"]["documents_removed"] > 0        # "Home", "404"...
    assert by_step["repetition"]["documents_removed"] > 0    # spam
    assert by_step["exact_dedup"]["documents_removed"] > 0
    text = "\n".join(kept)
    for noise in ("<p", "&amp;", "Subscribe to our newsletter", "All rights reserved", "Ã©", "Buy now and save big! Buy now"):
        assert noise not in text, noise
    assert report[0]["documents"] == len(docs) and report[-1]["documents"] == len(kept)


def _tiny_language_model(path):
    """A small fastText en/fr classifier trained here (no download), saved to ``path``."""
    fasttext = pytest.importorskip("fasttext")
    rng = random.Random(0)
    en = "the a cat dog sat ran on and with house garden river city morning evening people went to".split()
    fr = "le la chat chien est sur et avec maison jardin riviere ville matin soir gens sont alles".split()
    lines = [f"__label__{lab} " + " ".join(rng.choice(words) for _ in range(10))
             for lab, words in (("en", en), ("fr", fr)) for _ in range(200)]
    rng.shuffle(lines)
    train = path.with_suffix(".txt")
    train.write_text("\n".join(lines) + "\n")
    fasttext.train_supervised(str(train), epoch=10, lr=0.5, dim=16, verbose=0).save_model(str(path))
    return path


def test_language_id_with_a_local_model(tmp_path):
    model = _tiny_language_model(tmp_path / "lid.bin")
    english = "the dog and the cat went to the garden in the morning with people"
    french = "le chien et le chat sont alles au jardin le matin avec les gens"
    kept, report = clean([english, french], language_id=True, language_model=str(model))
    assert kept == [english] and report[-1] == {**report[-1], "step": "language", "documents_removed": 1}
    kept, _ = clean([english, french], language_id=True, language_model=str(model), languages=["fr"])
    assert kept == [french]


def test_language_id_needs_a_local_model():
    from conftest import ROOT
    from jaxllm.config import load_config
    from jaxllm.errors import ConfigError, UserError
    with pytest.raises(ConfigError, match="needs data.clean.language_model"):
        load_config(ROOT / "configs/pretrain/demo.yaml", ["data.clean.language_id=true"])
    with pytest.raises(UserError, match="file not found"):
        clean(["some text"], language_id=True, language_model="/nonexistent/lid.bin")
