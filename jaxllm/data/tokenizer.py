"""Tokenizers: SentencePiece (here) or Hugging Face ``tokenizer.json`` (`hf_tokenizer.py`), one interface.

`Tokenizer.load` takes either file and `tokenizer_file` finds either in a directory; `train_tokenizer`
trains the kind ``data.tokenizer.kind`` names.

SentencePiece: trained on the corpus, with reserved special tokens, or a pretrained model's.

A tokenizer jaxllm trains has ids 0-3 fixed (pad, unk, bos, eos), the chat roles
and end-of-turn marker as reserved pieces (so later stages build chat templates
without retraining) and byte fallback (every string round-trips exactly). Any
other SentencePiece model (a Llama or Mistral ``tokenizer.model``) works too: its
own BOS/EOS ids are used, padding uses its pad piece or else ``<unk>``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import sentencepiece as spm

from jaxllm.errors import UserError

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIAL_PIECES = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json")  # SentencePiece, Hugging Face


def tokenizer_file(directory: str | os.PathLike) -> Path | None:
    """The tokenizer a run dir (or prepared-data dir) holds: ``tokenizer.model`` or ``tokenizer.json``."""
    for name in TOKENIZER_FILES:
        if (Path(directory) / name).is_file():
            return Path(directory) / name
    return None


class Tokenizer:
    """Thin wrapper over a SentencePiece model with the ids the trainer needs."""

    kind = "sentencepiece"
    filename = "tokenizer.model"
    chat_template = None  # a model's own template comes with Hugging Face tokenizers only

    def __init__(self, model_proto: bytes, name: str = "<memory>"):
        self.name = name
        self.model_proto = model_proto
        self.trained_on: dict | None = None  # set by `train_tokenizer`
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except Exception as e:  # sentencepiece raises RuntimeError/OSError with C++ text
            raise UserError(f"{name}: not a SentencePiece model ({e}).") from None
        self.bos_id, self.eos_id = self.sp.bos_id(), self.sp.eos_id()
        if self.bos_id < 0 or self.eos_id < 0:
            raise UserError(f"{name}: the SentencePiece model has no {'BOS' if self.bos_id < 0 else 'EOS'} piece; jaxllm "
                            "needs both (documents are BOS ... EOS).")
        # a model without a pad piece (Llama's) pads with <unk>: padded positions are always masked
        self.pad_id = self.sp.pad_id() if self.sp.pad_id() >= 0 else max(self.sp.unk_id(), 0)
        self.unk_id = self.sp.unk_id()

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        """A SentencePiece ``.model``, or a Hugging Face ``tokenizer.json`` (or a directory holding one)."""
        path = Path(path)
        if path.suffix == ".json" or (path.is_dir() and (path / "tokenizer.json").is_file()):
            from jaxllm.data.hf_tokenizer import HFTokenizer
            return HFTokenizer.load(path)
        if path.is_dir() and (path / "tokenizer.model").is_file():
            path = path / "tokenizer.model"
        if not path.is_file():
            raise UserError(f"tokenizer file not found: {path}. Train one with `jaxllm tokenizer train` "
                            "or set data.tokenizer.path to an existing SentencePiece .model or tokenizer.json.")
        return cls(path.read_bytes(), str(path))

    def save(self, path: str | os.PathLike) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(self.model_proto)
        tmp.replace(path)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str | list[str]):
        return self.sp.encode(text)

    def decode(self, ids) -> str:
        return self.sp.decode([int(i) for i in ids])

    def piece_id(self, piece: str) -> int:
        return self.sp.piece_to_id(piece)


SENTENCE_CHARS = 4000  # SentencePiece skips input sentences over max_sentence_length (16 KiB) bytes: 4000 chars of UTF-8 fit


def training_sentences(text: str, limit: int = SENTENCE_CHARS):
    """The lines of ``text``, each cut at spaces into pieces of at most ``limit`` characters (tokenizer
    training only: SentencePiece would drop a longer line whole, and a one-line document with it)."""
    for line in text.split("\n"):
        while len(line) > limit:
            cut = line.rfind(" ", limit // 2, limit)
            cut = limit if cut < 0 else cut
            yield line[:cut]
            line = line[cut:]
        if line.strip():
            yield line


def training_sample(texts: list[str], max_chars: int) -> tuple[list[str], dict]:
    """The first documents of ``texts`` up to ``max_chars`` characters, and the `trained_on` record of them."""
    sample, total = [], 0
    for t in texts:
        if total >= max_chars:
            break
        sample.append(t)
        total += len(t)
    return sample, {"documents": len(sample), "characters": total, "documents_left_out": len(texts) - len(sample),
                    "characters_left_out": sum(len(t) for t in texts[len(sample):]), "max_chars": max_chars}


def train_tokenizer(texts: list[str], vocab_size: int = 4096, model_type: str = "bpe",
                    max_chars: int = 3_000_000, kind: str = "sentencepiece") -> Tokenizer:
    """Train on ``texts`` (up to ``max_chars``), in memory; deterministic for the same input. ``kind``:
    sentencepiece (``model_type`` bpe or unigram) or bpe (Hugging Face byte-level BPE, `hf_tokenizer.train_bpe`).

    ``tokenizer.trained_on`` says how much was used: documents and characters, and what was left out.
    """
    if kind == "bpe":
        from jaxllm.data.hf_tokenizer import train_bpe
        return train_bpe(texts, vocab_size, max_chars)
    sample, trained_on = training_sample(texts, max_chars)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(line for t in sample for line in training_sentences(t)),
            model_writer=model, vocab_size=vocab_size, model_type=model_type,
            pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, user_defined_symbols=SPECIAL_PIECES,
            byte_fallback=True, character_coverage=1.0, hard_vocab_limit=False, split_digits=True, num_threads=1,
            max_sentence_length=1 << 14, minloglevel=2, remove_extra_whitespaces=False,
            normalization_rule_name="identity",
        )
    except RuntimeError as e:
        raise UserError(f"SentencePiece training failed: {e}. With little text, lower data.tokenizer.vocab_size.") from None
    tok = Tokenizer(model.getvalue(), "<trained>")
    tok.trained_on = trained_on
    return tok
