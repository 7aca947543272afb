"""Prepared datasets, bad input, TFDS sources and multi-process data sharding."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, SHARED_DATA, tiny_overrides
from jaxllm.config import load_config
from jaxllm.config.schema import DataConfig
from jaxllm.data.packing import BatchIterator, pack_rows
from jaxllm.data.prepare import load_pretrain_data, prepare_dataset
from jaxllm.data.prepared import read_prepared
from jaxllm.data.sources import load_documents
from jaxllm.errors import ConfigError, UserError

SHAKESPEARE = SHARED_DATA / "pretrain" / "tinyshakespeare.txt"
needs_shared = pytest.mark.skipif(not SHAKESPEARE.exists(), reason="../shared/data not present")


def _cfg(tmp_path, *extra):
    return load_config(ROOT / "configs/model/tiny.yaml", tiny_overrides(tmp_path / "run", f"data.prepared_dir={tmp_path / 'prep'}", *extra))


def test_prepare_writes_what_in_memory_tokenization_gives(tmp_path):
    cfg = _cfg(tmp_path)
    stats = prepare_dataset(cfg)
    streams, tok, saved = read_prepared(tmp_path / "prep")
    assert saved == stats and stats["splits"]["train"]["tokens"] == len(streams["train"].tokens)
    assert streams["train"].tokens.dtype == np.uint16 and isinstance(streams["train"].tokens, np.memmap)
    direct = load_pretrain_data(load_config(ROOT / "configs/model/tiny.yaml",
                                            tiny_overrides(tmp_path / "r2", f"data.tokenizer.path={tmp_path / 'prep/tokenizer.model'}")), None)
    for split in ("train", "eval"):
        np.testing.assert_array_equal(streams[split].tokens, direct.streams[split].tokens)
        np.testing.assert_array_equal(streams[split].doc_starts, direct.streams[split].doc_starts)
    assert stats["splits"]["train"]["documents"] + stats["splits"]["eval"]["documents"] == len(load_documents(cfg.data)[0])


def test_an_epoch_of_prepared_rows_loses_and_repeats_no_token(tmp_path):
    prepare_dataset(_cfg(tmp_path))
    stream = read_prepared(tmp_path / "prep")[0]["train"]
    seq, batch = 32, 8
    it = BatchIterator(stream, seq, batch, seed=3)
    seen = {}
    for _ in range(it.n_rows // batch):
        rows = it.next_rows()
        b = pack_rows(stream, rows, seq)
        for r, inp, tgt in zip(rows, b["inputs"], b["targets"]):
            assert r not in seen
            seen[int(r)] = (inp, tgt)
    usable = (it.n_rows // batch) * batch
    assert len(seen) == usable
    # rows read in order rebuild the stream: every input token once, targets shifted by one
    ordered = sorted(seen)
    if ordered == list(range(len(ordered))):
        rebuilt = np.concatenate([seen[r][0] for r in ordered])
        np.testing.assert_array_equal(rebuilt, np.asarray(stream.tokens[: len(rebuilt)]))
    for r, (inp, tgt) in seen.items():
        np.testing.assert_array_equal(inp, stream.tokens[r * seq: r * seq + seq])
        np.testing.assert_array_equal(tgt, stream.tokens[r * seq + 1: r * seq + seq + 1])


def test_training_reads_prepared_data(tmp_path):
    from jaxllm.train.loop import train
    prepare_dataset(_cfg(tmp_path))
    res = train(_cfg(tmp_path, "data.source=prepared", "train.steps=3", "checkpoint.enabled=false", "mesh.data=1", "mesh.tensor=-1"))
    assert len(res.history) == 3 and np.isfinite(res.history[-1]["loss"])
    # a model too small for the prepared tokenizer's vocab: named, with the fix
    with pytest.raises(ConfigError, match=r"model.vocab_size = 64 is smaller than the tokenizer's \d+ pieces"):
        train(_cfg(tmp_path, "data.source=prepared", "model.vocab_size=64", "train.steps=2"))


def test_prepared_dir_errors(tmp_path):
    with pytest.raises(UserError, match="holds no prepared dataset .* run `jaxllm data prepare CONFIG` first"):
        load_pretrain_data(_cfg(tmp_path, "data.source=prepared"), None)
    with pytest.raises(ConfigError, match="needs data.prepared_dir"):
        load_config(ROOT / "configs/model/tiny.yaml", ["data.source=prepared"])


def _bad_files(tmp_path):
    (tmp_path / "good.jsonl").write_text('{"text": "a fine document"}\n{"text": "another"}\n')
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "ok"}\n{oops\n{"body": "x"}\n{"text": "bad \xff byte"}\n{"text": 5}\n')
    (tmp_path / "empty.jsonl").write_text("")
    return [str(tmp_path / n) for n in ("good.jsonl", "bad.jsonl", "empty.jsonl")]


@pytest.mark.parametrize("path, message", [
    ("bad.jsonl", r"bad.jsonl:2: not valid JSON"),
    ("empty.jsonl", r"empty.jsonl: empty file"),
])
def test_bad_input_raises_with_file_and_line(tmp_path, path, message):
    _bad_files(tmp_path)
    with pytest.raises(UserError, match=message + r".*data.on_error=skip"):
        load_documents(DataConfig(source="jsonl", paths=[str(tmp_path / path)]))


def test_bad_input_skipped_and_counted(tmp_path):
    docs, report = load_documents(DataConfig(source="jsonl", paths=_bad_files(tmp_path), on_error="skip"))
    assert docs == ["a fine document", "another", "ok"]
    assert report["skipped_records"] == 5
    assert any(":4: invalid UTF-8" in e for e in report["skipped_examples"])
    assert any(":3: no field 'text'" in e for e in report["skipped_examples"])
    (tmp_path / "latin1.txt").write_bytes(b"line one\n\ncaf\xe9 au lait\n")
    with pytest.raises(UserError, match=r"latin1.txt:3: invalid UTF-8"):
        load_documents(DataConfig(source="text", paths=[str(tmp_path / "latin1.txt")]))
    docs, report = load_documents(DataConfig(source="text", paths=[str(tmp_path / "latin1.txt")], on_error="skip"))
    assert report["skipped_records"] == 1 and docs == ["line one"]  # the undecodable block is dropped, not mangled


@needs_shared
def test_real_corpora_prepare_and_round_trip(tmp_path):
    cfg = load_config(ROOT / "configs/model/tiny.yaml", [
        "data.source=text", f"data.paths=[{SHARED_DATA / 'pretrain'}/*.txt]", f"data.prepared_dir={tmp_path / 'p'}",
        "data.tokenizer.vocab_size=2000", "data.eval_fraction=0.05"])
    stats = prepare_dataset(cfg)
    assert stats["splits"]["train"]["documents"] > 1000 and stats["splits"]["train"]["tokens"] > 300_000
    assert stats["characters"]["train"] + stats["characters"]["eval"] > 2_000_000
    _, tok, _ = read_prepared(tmp_path / "p")
    docs, _ = load_documents(cfg.data)
    assert all(tok.decode(tok.encode(d)) == d for d in docs)  # byte fallback: exact, even WikiText's odd characters


@needs_shared
def test_tiny_shakespeare_catalog_offline_equals_own_builder(tmp_path):
    import tensorflow_datasets as tfds
    from jaxllm.data.readers import BadRecords
    from jaxllm.data.tfds_source import build_local_dataset, build_tiny_shakespeare, read_tfds
    data_dir = tmp_path / "tfds"
    build_tiny_shakespeare(str(data_dir), str(SHAKESPEARE))
    catalog = "".join(tfds.data_source("tiny_shakespeare", data_dir=str(data_dir), split=s)[0]["text"].decode()
                      for s in ("train", "validation", "test"))
    assert catalog == SHAKESPEARE.read_text()
    build_local_dataset("my_shakespeare", [str(SHAKESPEARE)], str(data_dir), document="file")
    own = read_tfds("my_shakespeare:1.0.0", str(data_dir), "train", "text", BadRecords("raise"))
    assert own == [catalog]
    # as a configured source, with split slicing
    docs, _ = load_documents(DataConfig(source="tfds:tiny_shakespeare", data_dir=str(data_dir), tfds_split="validation"))
    assert len(docs) == 1 and docs[0] in catalog
    with pytest.raises(UserError, match="'nope' is not prepared"):
        load_documents(DataConfig(source="tfds:nope", data_dir=str(data_dir)))


def test_own_tfds_builder_from_jsonl_blocks(tmp_path):
    from jaxllm.data.readers import BadRecords
    from jaxllm.data.tfds_source import build_local_dataset, read_tfds
    (tmp_path / "a.jsonl").write_text('{"body": "first"}\n{"body": "second"}\n')
    build_local_dataset("notes", [str(tmp_path / "a.jsonl")], str(tmp_path / "tfds"), version="2.1.0", fmt="jsonl", field="body")
    assert read_tfds("notes:2.1.0", str(tmp_path / "tfds"), "train", "text", BadRecords("raise")) == ["first", "second"]
    assert read_tfds("notes", str(tmp_path / "tfds"), "train[1:]", "text", BadRecords("raise")) == ["second"]


@pytest.mark.parametrize("n_proc", [2, 4])
def test_processes_read_disjoint_rows_covering_the_epoch(tmp_path, n_proc):
    """Real processes (jax.distributed on 127.0.0.1): each reads only its rows; together, the whole epoch."""
    prepare_dataset(_cfg(tmp_path))
    batch, seq = 8, 32
    n_rows = BatchIterator(read_prepared(tmp_path / "prep")[0]["train"], seq, batch, seed=7).n_rows
    steps = n_rows // batch
    from jaxllm.parallel.local_launch import free_port

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tests/mp_data_worker.py"), str(port), str(i), str(n_proc),
                               str(tmp_path / "prep"), str(tmp_path / f"out{i}.json"), str(batch), str(seq), str(steps)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(n_proc)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]
    results = [json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(n_proc)]
    assert all(r["devices"] == 2 * n_proc for r in results)
    assert all(shape == [batch, seq] for r in results for shape in r["shapes"])
    per_proc = [set(x for step in r["rows"] for x in step) for r in results]
    for i in range(n_proc):
        for j in range(i + 1, n_proc):
            assert per_proc[i].isdisjoint(per_proc[j])
    union = set().union(*per_proc)
    assert len(union) == steps * batch == sum(len(p) for p in per_proc)
    # the same rows, in the same global order, as one process would read
    single = BatchIterator(read_prepared(tmp_path / "prep")[0]["train"], seq, batch, seed=7)
    for s in range(steps):
        assert single.next_rows().tolist() == [x for r in results for x in r["rows"][s]]


def test_tfrecord_datasets_read_through_tensorflow(tmp_path):
    pytest.importorskip("tensorflow")
    from jaxllm.data.readers import BadRecords
    from jaxllm.data.tfds_source import build_local_dataset, read_tfds
    (tmp_path / "a.txt").write_text("first block\n\nsecond block\n")
    build_local_dataset("tfr", [str(tmp_path / "a.txt")], str(tmp_path / "tfds"), file_format="tfrecord")
    assert list((tmp_path / "tfds" / "tfr" / "1.0.0").glob("*.tfrecord*"))
    assert read_tfds("tfr", str(tmp_path / "tfds"), "train", "text", BadRecords("raise")) == ["first block", "second block"]


@needs_shared
def test_tfds_paths_need_no_tensorflow(tmp_path):
    """With `import tensorflow` blocked: the catalog's tiny_shakespeare offline, the own builder, reading both."""
    code = f"""
import importlib.abc, importlib.util, sys


class NoTensorFlow(importlib.abc.MetaPathFinder):  # as if TensorFlow were not installed
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")


sys.meta_path.insert(0, NoTensorFlow())
_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] == "tensorflow" else _find_spec(name, *a)
from jaxllm.data.readers import BadRecords
from jaxllm.data.tfds_source import build_local_dataset, build_tiny_shakespeare, read_tfds
build_tiny_shakespeare({str(tmp_path / 'tfds')!r}, {str(SHAKESPEARE)!r})
build_local_dataset("mine", [{str(SHAKESPEARE)!r}], {str(tmp_path / 'tfds')!r}, document="file")
a = "".join(read_tfds("tiny_shakespeare", {str(tmp_path / 'tfds')!r}, s, "text", BadRecords("raise"))[0]
            for s in ("train", "validation", "test"))
b = read_tfds("mine", {str(tmp_path / 'tfds')!r}, "train", "text", BadRecords("raise"))[0]
assert a == b == open({str(SHAKESPEARE)!r}).read()
assert "tensorflow" not in sys.modules
print("ok without tensorflow")
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0 and "ok without tensorflow" in proc.stdout, proc.stderr[-3000:]
