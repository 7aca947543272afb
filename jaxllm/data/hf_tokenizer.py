"""Hugging Face ``tokenizers`` tokenizers (``tokenizer.json``: byte-level BPE as Llama 3, Qwen and GPT-2 ship
them), with the interface of the SentencePiece `Tokenizer`, so every stage takes either.

Special tokens come from ``tokenizer_config.json`` beside ``tokenizer.json`` (else ``special_tokens_map.json``),
as ``transformers`` reads them. A model without a BOS token (Qwen) starts documents with its pad token
(``<|endoftext|>``, Qwen's document separator), else with EOS; without a pad token, padding uses EOS (padded
positions are always masked). Text is encoded without the tokenizer's own
added specials (``add_special_tokens=False``): jaxllm places BOS/EOS itself, and a chat template writes its own.

A run dir holds the pair as ``tokenizer.json`` + ``tokenizer_config.json``; a tokenizer jaxllm trains
(`train_bpe`) has ids 0-3 = pad, unk, bos, eos and the chat pieces reserved, as a SentencePiece one does.
"""

from __future__ import annotations

import json
from pathlib import Path

from jaxllm.errors import UserError

CONFIG = "tokenizer_config.json"


def _token_text(value) -> str | None:
    """A special token as ``tokenizer_config.json`` writes it: a string, ``{"content": ...}`` or null."""
    if isinstance(value, dict):
        return value.get("content")
    return value


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` with the ids the trainer needs (``bos_id``, ``eos_id``, ``pad_id``, ``unk_id``)."""

    kind = "bpe"
    filename = "tokenizer.json"

    def __init__(self, tokenizer_json: bytes, config: dict | None = None, name: str = "<memory>"):
        from tokenizers import Tokenizer as _Tokenizer

        self.name = name
        self.trained_on: dict | None = None
        self.config = dict(config or {})
        self.tokenizer_json = tokenizer_json
        try:
            self.tk = _Tokenizer.from_str(tokenizer_json.decode("utf-8"))
        except Exception as e:  # tokenizers raises its own Exception type with Rust text
            raise UserError(f"{name}: not a Hugging Face tokenizer.json ({str(e)[:200]}).") from None
        ids = {k: self._id(_token_text(self.config.get(f"{k}_token")), k) for k in ("bos", "eos", "pad", "unk")}
        if ids["eos"] is None:
            raise UserError(f"{name}: no eos_token in {CONFIG} (or it is not in the vocabulary); jaxllm needs one to end "
                            f"documents and replies. Add \"eos_token\" to {CONFIG}.")
        self.eos_id = ids["eos"]
        # no BOS (Qwen): documents start with the pad token, Qwen's <|endoftext|>, else with EOS
        self.bos_id = next(i for i in (ids["bos"], ids["pad"], self.eos_id) if i is not None)
        self.pad_id = ids["pad"] if ids["pad"] is not None else self.eos_id
        self.unk_id = ids["unk"] if ids["unk"] is not None else -1
        self.chat_template = self.config.get("chat_template")

    def _id(self, token: str | None, what: str) -> int | None:
        if token is None:
            return None
        i = self.tk.token_to_id(token)
        if i is None:
            raise UserError(f"{self.name}: {what}_token {token!r} from {CONFIG} is not in the vocabulary of tokenizer.json.")
        return i

    @classmethod
    def load(cls, path: str | Path) -> "HFTokenizer":
        """``path``: a ``tokenizer.json``, or a directory holding one (and its ``tokenizer_config.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise UserError(f"tokenizer file not found: {path}. Give a Hugging Face tokenizer.json (with its "
                            f"{CONFIG} beside it) or a SentencePiece .model.")
        config = {}
        for extra in (path.parent / CONFIG, path.parent / "special_tokens_map.json"):
            if extra.is_file():
                try:
                    loaded = json.loads(extra.read_text())
                except ValueError as e:
                    raise UserError(f"{extra}: not valid JSON ({e}).") from None
                config = {**loaded, **config}  # tokenizer_config.json wins over special_tokens_map.json
        return cls(path.read_bytes(), config, str(path))

    def save(self, path: str | Path) -> None:
        """``tokenizer.json`` at ``path`` and ``tokenizer_config.json`` beside it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for target, data in ((path, self.tokenizer_json), (path.parent / CONFIG, _dump(self.config))):
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(target)

    @property
    def model_proto(self) -> bytes:
        """The bytes that identify this tokenizer (compared across processes, runs and prepared data)."""
        return self.tokenizer_json + _dump(self.config)

    @property
    def vocab_size(self) -> int:
        return self.tk.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str | list[str]):
        if isinstance(text, str):
            return self.tk.encode(text, add_special_tokens=False).ids
        return [e.ids for e in self.tk.encode_batch(list(text), add_special_tokens=False)]

    def encode_with_offsets(self, text: str):
        """The encoding (``ids``, ``offsets``, ``char_to_token``) of ``text``, specials in it recognised."""
        return self.tk.encode(text, add_special_tokens=False)

    def decode(self, ids) -> str:
        return self.tk.decode([int(i) for i in ids], skip_special_tokens=True)

    def piece_id(self, piece: str) -> int:
        i = self.tk.token_to_id(piece)
        return self.unk_id if i is None else i

    def token_text(self, i: int) -> str | None:
        return self.tk.id_to_token(int(i))

    def special_ids(self) -> set[int]:
        return {i for i, t in self.tk.get_added_tokens_decoder().items() if t.special}


def _dump(config: dict) -> bytes:
    return (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def train_bpe(texts: list[str], vocab_size: int, max_chars: int) -> HFTokenizer:
    """A byte-level BPE (GPT-2/Llama 3 style) trained on ``texts`` (up to ``max_chars``); ids 0-3 are pad, unk,
    bos, eos as in jaxllm's SentencePiece tokenizers, then the chat pieces. Deterministic for the same input."""
    from tokenizers import Tokenizer as _Tokenizer, decoders, models, pre_tokenizers, trainers

    from jaxllm.data.tokenizer import SPECIAL_PIECES, training_sample, training_sentences

    sample, trained_on = training_sample(texts, max_chars)
    specials = ["<pad>", "<unk>", "<s>", "</s>", *SPECIAL_PIECES]
    tk = _Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator((line for t in sample for line in training_sentences(t)), trainer=trainer)
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
              "pad_token": "<pad>", "unk_token": "<unk>", "add_bos_token": False, "add_eos_token": False,
              "clean_up_tokenization_spaces": False, "model_max_length": 1 << 30}
    tok = HFTokenizer(tk.to_str().encode("utf-8"), config, "<trained>")
    tok.trained_on = trained_on
    return tok


def sentencepiece_to_hf(sp_tok) -> HFTokenizer:
    """A jaxllm SentencePiece BPE tokenizer as an equivalent ``tokenizer.json`` (for exports that
    ``AutoTokenizer`` reads with exactly jaxllm's ids): the pieces as a BPE vocabulary, merges ranked by the
    merged piece's id (SentencePiece's BPE merges by piece score, which its ids follow), byte fallback,
    ``▁`` for spaces and a leading ``▁`` (SentencePiece's dummy prefix). The reserved chat pieces split the text
    first and each part gets its own prefix, which is how jaxllm's chat template encodes a turn (pieces by id,
    contents encoded one by one); plain text encodes exactly as SentencePiece encodes it. Unigram models have
    no merges: refused.
    """
    from sentencepiece import sentencepiece_model_pb2 as pb
    from tokenizers import AddedToken, Tokenizer as _Tokenizer, decoders, models, normalizers, pre_tokenizers

    proto = pb.ModelProto()
    proto.ParseFromString(sp_tok.model_proto)
    if proto.trainer_spec.model_type != pb.TrainerSpec.BPE:
        raise UserError(f"{sp_tok.name}: a SentencePiece unigram model has no BPE equivalent for tokenizer.json; "
                        "the export keeps tokenizer.model only.")
    norm = proto.normalizer_spec
    if norm.name not in ("identity", "") or norm.remove_extra_whitespaces:
        raise UserError(f"{sp_tok.name}: SentencePiece normalisation {norm.name!r} (remove_extra_whitespaces="
                        f"{norm.remove_extra_whitespaces}) has no exact tokenizer.json equivalent here; the export keeps "
                        "tokenizer.model only (jaxllm-trained and Llama tokenizers use identity).")
    n = sp_tok.sp.get_piece_size()
    pieces = [sp_tok.sp.id_to_piece(i) for i in range(n)]
    vocab = {p: i for i, p in enumerate(pieces)}
    types = [p.type for p in proto.pieces]
    special = [i for i in range(n) if types[i] in (pb.ModelProto.SentencePiece.CONTROL, pb.ModelProto.SentencePiece.UNKNOWN)]
    user = [i for i in range(n) if types[i] == pb.ModelProto.SentencePiece.USER_DEFINED]
    skip = set(special) | set(user) | {i for i in range(n) if types[i] == pb.ModelProto.SentencePiece.BYTE}
    merges = []
    for i, piece in enumerate(pieces):
        if i in skip or len(piece) < 2:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if vocab.get(left, n) not in skip and vocab.get(right, n) not in skip and left in vocab and right in vocab:
                merges.append((max(vocab[left], vocab[right], i), i, left, right))
    merges.sort(key=lambda m: (m[1], m[0]))
    tk = _Tokenizer(models.BPE(vocab=vocab, merges=[(m[2], m[3]) for m in merges], unk_token=pieces[sp_tok.unk_id],
                               fuse_unk=True, byte_fallback=True))
    prefix = proto.normalizer_spec.add_dummy_prefix
    tk.normalizer = normalizers.Sequence([*([normalizers.Prepend("▁")] if prefix else []), normalizers.Replace(" ", "▁")])
    tk.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")  # SentencePiece never merges across words
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    *([decoders.Strip(" ", 1, 0)] if prefix else [])])
    tk.add_tokens([AddedToken(pieces[i], normalized=False, special=False) for i in user])
    tk.add_special_tokens([AddedToken(pieces[i], normalized=False, special=True) for i in special])
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False, "add_eos_token": False,
              "clean_up_tokenization_spaces": False, "model_max_length": 1 << 30,
              "bos_token": pieces[sp_tok.bos_id], "eos_token": pieces[sp_tok.eos_id], "pad_token": pieces[sp_tok.pad_id],
              **({"unk_token": pieces[sp_tok.unk_id]} if sp_tok.unk_id >= 0 else {})}
    return HFTokenizer(tk.to_str().encode("utf-8"), config, sp_tok.name)
