"""Typed configuration: one dataclass per section, every field documented.

Each field's ``metadata`` may carry ``min``/``max`` (inclusive bounds) and
``choices``; `jaxllm.config.load` checks them, so the rest of the code can trust
a `Config` it is handed. Defaults live here and nowhere else.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Optional


def _f(default: Any = None, *, doc: str = "", factory=None, **meta) -> Any:
    """A dataclass field with a docstring and validation metadata."""
    meta["doc"] = doc
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


option = _f  # for objectives' own config classes (documented, range-checked like every other field)


@dataclass
class RunConfig:
    dir: str = _f("runs/demo", doc="Run directory: config.yaml, metrics.jsonl, checkpoints/, tb/, tokenizer.")


LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "proj", "fc", "lm_head", "embed")


@dataclass
class LoraConfig:
    rank: int = _f(0, min=0, doc="LoRA rank r; 0 = off (every parameter trains). With r > 0 only the adapters (and "
                   "model.lora.train) train, the base stays frozen, checkpoints hold only those, and DPO/PPO/GRPO's "
                   "reference is the base with the adapters off (no second copy). Needs init_from.")
    alpha: float = _f(16.0, min=0.0, doc="The update is (alpha / rank) * x A B.")
    dropout: float = _f(0.0, min=0.0, max=1.0, doc="Dropout on the adapters' input (training only).")
    targets: list = _f(factory=lambda: ["q", "k", "v", "o", "gate", "up", "proj", "fc"],
                       doc="Modules that get adapters, by name: q, k, v, o (attention), gate, up, proj (gated MLP; proj is "
                           "the MLP's output), fc (GELU MLP input), lm_head, embed (the input embedding, and the head of "
                           "a tied model).")
    train: list = _f(factory=lambda: ["head_kernel", "head_bias"],
                     doc="Parameters trained in full beside the adapters, by name (PEFT's modules_to_save): by default the "
                         "reward model's and critic's scalar head, which starts new.")
    base_dtype: str = _f("param", choices=("param", "bfloat16", "float32"),
                         doc="Storage dtype of the frozen base weights: param = model.param_dtype.")
    quantize: str = _f("none", choices=("none", "int8", "nf4"),
                       doc="QLoRA: store the frozen base's kernels quantized (qwix; int8 or 4-bit NormalFloat, one scale "
                           "per quantize_block inputs of each output), dequantized in the matmul.")
    quantize_block: int = _f(64, min=1, doc="Inputs sharing one scale in the quantized base (a kernel whose input size "
                             "it does not divide gets one scale per output).")


@dataclass
class ModelConfig:
    family: str = _f("gpt2", choices=("gpt2", "llama", "qwen2", "qwen3", "gemma2"),  # = model.families.FAMILIES (a test checks)
                     doc="gpt2: LayerNorm, learned positions, GELU MLP, tied head; llama: RMSNorm, RoPE, SwiGLU, GQA "
                         "(also Mistral); qwen2: llama with q/k/v biases; qwen3: llama with per-head q/k RMSNorm; "
                         "gemma2: (1+w) RMSNorm, pre- and post-norms, GeGLU, embeddings times sqrt(d_model), tied head.")
    vocab_size: Optional[int] = _f(None, min=8, doc="Embedding rows; null = tokenizer size rounded up to vocab_multiple.")
    vocab_multiple: int = _f(128, min=1, doc="Round a tokenizer-derived vocab up to this multiple (faster matmuls).")
    n_layers: int = _f(4, min=1, doc="Transformer blocks.")
    d_model: int = _f(256, min=8, doc="Residual stream width.")
    n_heads: int = _f(4, min=1, doc="Query heads.")
    n_kv_heads: Optional[int] = _f(None, min=1, doc="Key/value heads (GQA); null = n_heads.")
    head_dim: Optional[int] = _f(None, min=1, doc="Per-head width; null = d_model // n_heads.")
    d_ff: Optional[int] = _f(None, min=1, doc="MLP hidden width; null = 4*d_model (gpt2) or 8/3*d_model rounded to 64 (llama).")
    max_seq_len: int = _f(1024, min=1, doc="Longest sequence (learned position table size for gpt2).")
    norm_eps: float = _f(1e-5, min=0.0, doc="LayerNorm/RMSNorm epsilon.")
    rope_theta: float = _f(10000.0, min=1.0, doc="RoPE base frequency (llama).")
    rope_scaling: str = _f("none", choices=("none", "linear", "llama3"),
                           doc="RoPE frequency scaling (llama), as Hugging Face's rope_type: none, linear (positions / factor), "
                               "llama3 (Llama 3.1's wavelength bands).")
    rope_scaling_factor: float = _f(1.0, min=1.0, doc="RoPE scaling factor (linear, llama3).")
    rope_low_freq_factor: float = _f(1.0, min=0.0, doc="llama3 RoPE scaling: low_freq_factor.")
    rope_high_freq_factor: float = _f(4.0, min=0.0, doc="llama3 RoPE scaling: high_freq_factor.")
    rope_original_max_len: int = _f(8192, min=1, doc="llama3 RoPE scaling: original_max_position_embeddings.")
    tie_embeddings: Optional[bool] = _f(None, doc="Share input embedding and output head; null = family default (gpt2 yes, llama no).")
    use_bias: Optional[bool] = _f(None, doc="Biases in dense layers and norms; null = family default (gpt2 yes, llama no).")
    qkv_bias: Optional[bool] = _f(None, doc="Biases on the q, k, v projections; null = family default (qwen2 yes), else model.use_bias.")
    out_bias: Optional[bool] = _f(None, doc="A bias on the attention output projection; null = model.use_bias.")
    mlp_bias: Optional[bool] = _f(None, doc="Biases in the MLP's projections; null = model.use_bias.")
    sliding_window: Optional[int] = _f(None, min=1, doc="Sliding-window attention: a query sees the last this-many keys "
                                       "(itself included); null = the whole causal prefix.")
    global_every: int = _f(0, min=0, doc="With a sliding window: every this-many-th layer (layers n-1, 2n-1, ...) attends "
                                         "globally, the rest locally (Gemma 2: 2, Gemma 3: 6); 0 = every layer is local.")
    attn_softcap: float = _f(0.0, min=0.0, doc="Soft-cap attention scores at c*tanh(s/c) (Gemma 2: 50); 0 = off.")
    final_softcap: float = _f(0.0, min=0.0, doc="Soft-cap output logits at c*tanh(z/c) (Gemma 2: 30); 0 = off.")
    query_pre_attn_scalar: Optional[float] = _f(None, min=1e-6, doc="Attention scores are scaled by this**-0.5 "
                                                "(Gemma's query_pre_attn_scalar); null = head_dim.")
    head_bias: bool = _f(False, doc="A bias on an untied output head. Hugging Face's GPT-2 and Llama heads have none, so "
                         "such a run cannot be exported; run dirs written before this key read it as true where they had one.")
    dropout: float = _f(0.0, min=0.0, max=1.0, doc="Dropout on embeddings and residual branches (training only).")
    init_std: float = _f(0.02, min=0.0, doc="Std of normal init; residual output projections get init_std/sqrt(2*n_layers).")
    param_dtype: str = _f("float32", choices=("float32", "bfloat16"), doc="Storage dtype of parameters.")
    dtype: str = _f("auto", choices=("auto", "float32", "bfloat16"),
                    doc="Compute dtype; auto = bfloat16 on GPU/TPU, float32 on CPU.")
    attention: str = _f("auto", choices=("auto", "xla", "cudnn"),
                        doc="Attention kernel: xla (einsum + softmax, any backend), cudnn (fused, GPU only); auto = cudnn on GPU in bfloat16/float16, else xla.")
    attention_blocks: int = _f(1, min=1,
                               doc="xla attention in training: split the queries into this many runs, each attending only to the keys "
                                   "before its end, so the masked upper blocks are skipped ((n+1)/2n of the work); lengths it does not divide run whole.")
    remat: str = _f("none", choices=("none", "full", "save_dots"),
                    doc="Rematerialisation per block: none, full (recompute everything), save_dots (keep matmul outputs).")
    scan_layers: bool = _f(True, doc="Stack blocks with nn.scan (one compiled block; params get a leading 'layers' axis).")
    scan_unroll: int = _f(1, min=1, doc="Blocks per iteration of the layer scan; n_layers unrolls it fully (same parameter layout; "
                                        "faster for small models on CPU, where the scan's per-layer slicing shows; longer compile).")
    lora: LoraConfig = _f(factory=LoraConfig)


@dataclass
class TokenizerConfig:
    path: Optional[str] = _f(None, doc="A tokenizer to use: a SentencePiece .model or a Hugging Face tokenizer.json (with its "
                             "tokenizer_config.json beside it); null = train one on the corpus, cached in the run dir.")
    kind: str = _f("sentencepiece", choices=("sentencepiece", "bpe"),
                   doc="Tokenizer to train: sentencepiece (model_type bpe or unigram, byte fallback) or bpe (Hugging Face "
                       "tokenizers byte-level BPE, saved as tokenizer.json).")
    vocab_size: int = _f(4096, min=300, doc="Vocabulary size when training a tokenizer (an upper bound: small corpora may give fewer pieces).")
    model_type: str = _f("bpe", choices=("bpe", "unigram"), doc="SentencePiece algorithm when training (kind sentencepiece).")
    train_chars: int = _f(3_000_000, min=1000, doc="At most this many characters of training text are used to train it.")


DEFAULT_BOILERPLATE = [
    r"\bsubscribe\b", r"\bcookies?\b", r"all rights reserved", r"^\s*click here", r"^\s*share this",
    r"privacy policy", r"terms of (use|service)", r"^\s*(home|menu|login|next page)\s*(\|.*)?$",
]


@dataclass
class CleanConfig:
    enabled: bool = _f(False, doc="Clean documents (datatrove) before tokenizing: in `jaxllm data prepare` and in training.")
    ftfy: bool = _f(True, doc="Repair mis-encoded Unicode (mojibake) and normalise to NFC.")
    markup: bool = _f(True, doc="HTML/XML to text: drop tags, scripts and styles, decode entities.")
    boilerplate: bool = _f(True, doc="Drop boilerplate lines (boilerplate_patterns) and C4's javascript/lorem-ipsum/curly-bracket/policy lines.")
    boilerplate_patterns: list = _f(factory=lambda: list(DEFAULT_BOILERPLATE), doc="Regexes; a line matching any is removed.")
    length: bool = _f(True, doc="Drop documents shorter than min_chars or longer than max_chars.")
    min_chars: int = _f(50, min=0, doc="Shortest document kept, in characters.")
    max_chars: int = _f(1_000_000, min=1, doc="Longest document kept, in characters.")
    language_id: bool = _f(False, doc="Keep only documents in `languages` (fastText language ID; needs language_model).")
    language_model: Optional[str] = _f(None, doc="Local fastText language-ID model (.bin, e.g. lid.176.bin); nothing is downloaded.")
    languages: list = _f(factory=lambda: ["en"], doc="Language labels to keep (as the model names them, e.g. en).")
    language_threshold: float = _f(0.65, min=0.0, max=1.0, doc="Least model score for a kept language.")
    repetition: bool = _f(True, doc="Gopher repetition rules (duplicate lines/paragraphs, top and duplicated n-grams).")
    repetition_scale: float = _f(1.0, min=0.1, doc="Multiplies every Gopher repetition threshold; 1.0 = published values.")
    quality: bool = _f(True, doc="Gopher quality rules.")
    quality_min_words: int = _f(50, min=0, doc="Gopher: fewest words per document (published: 50).")
    quality_max_words: int = _f(100_000, min=1, doc="Gopher: most words per document (published: 100,000).")
    quality_min_avg_word_length: float = _f(3.0, min=0.0, doc="Gopher: shortest mean word length (published: 3; 0 = off).")
    quality_max_symbol_ratio: float = _f(0.1, min=0.0, doc="Gopher: most '#' and '...' per word (published: 0.1).")
    quality_min_alpha_words: float = _f(0.8, min=0.0, max=1.0, doc="Gopher: least share of words with a letter (published: 0.8).")
    quality_min_stop_words: int = _f(2, min=0, doc="Gopher: fewest English stop words (published: 2).")
    quality_max_bullet_lines: float = _f(0.9, min=0.0, max=1.0, doc="Gopher: most share of lines starting with a bullet (published: 0.9; 1.0 = off).")
    fineweb: bool = _f(True, doc="FineWeb quality rules (line punctuation, short lines, duplicated characters).")
    exact_dedup: bool = _f(True, doc="Drop exact duplicates (after whitespace normalisation).")
    minhash: bool = _f(True, doc="Drop near-duplicates with MinHash LSH.")
    minhash_ngrams: int = _f(5, min=1, doc="Word n-gram size of the MinHash shingles.")
    minhash_buckets: int = _f(14, min=1, doc="LSH bands; Jaccard threshold ~ (1/buckets)^(1/hashes_per_bucket) (~0.72 by default).")
    minhash_hashes_per_bucket: int = _f(8, min=1, doc="Hashes per LSH band.")


@dataclass
class BuiltinConfig:
    """The generated world (`jaxllm.world`): what `data.source: builtin` gives each objective."""

    seed: int = _f(0, doc="Seed of the built-in world (facts, documents, chats, prompts).")
    chars: int = _f(3_000_000, min=10_000, doc="Pre-training: size of the generated corpus in characters.")
    noise: float = _f(0.1, min=0.0, max=1.0, doc="Pre-training: extra noisy documents (markup, boilerplate, mojibake, junk, "
                                                 "spam, fragments, duplicates) mixed in, as a share of the corpus.")
    conversations: int = _f(4000, min=10, doc="SFT: chats generated about the world.")
    behaviour_chats: int = _f(1000, min=0, doc="SFT: extra chats on unknowable, myth and harmful prompts, answered well "
                                               "only about half the time.")
    heldout: float = _f(0.25, min=0.0, max=0.9, doc="Share of countries and people no SFT chat mentions; "
                                                    "`jaxllm eval --questions builtin` asks about them.")
    rankings: int = _f(2400, min=10, doc="Reward model / preference objectives: train prompts of the preference world, "
                                         "K = 4 ranked answers each.")
    task_questions: int = _f(4000, min=1, doc="RL with verifiable rewards: arithmetic questions to train on (their answers "
                                             "checked by the verifier).")
    task_heldout: float = _f(0.2, min=0.0, max=0.9, doc="Share of the arithmetic operand triples held out of training "
                                                        "(chosen by hash, the same for every seed).")
    task_max_operand: int = _f(15, min=2, doc="Arithmetic task: operands from 2 to this.")
    task_chats: int = _f(0, min=0, doc="SFT: extra chats answering the arithmetic task's training questions in its "
                                       "format ('23 * 4 = 92.'), its training questions cycled; no held-out question is among them.")
    kinds: list = _f(factory=lambda: ["factual", "unknowable", "myth", "harmful"],
                     doc="Prompt kinds of the preference world (SFT behaviour chats, rankings, RL and evaluation "
                         "prompts): factual, unknowable, myth, harmful, helpful, benign (the last two: everyday and "
                         "harmless-but-alarming requests whose refusal is over-refusal; they add advice to the corpus).")
    phrasings: str = _f("plain", choices=("plain", "families", "reworded"),
                        doc="Wordings in training data: plain (the original templates), families (plus the seed's "
                            "seen template families, world/phrasings.py) or reworded (plus training-only rewordings "
                            "of every request, world/rewordings.py). Two families per seed are never trained on; "
                            "the pipeline report scores them as 'unseen phrasing' either way.")
    corrections: str = _f("classic", choices=("classic", "composed"),
                          doc="False-premise corrections: classic ('X is not the capital of N; the capital of N is Y.') "
                              "or composed ('No, the capital of N is Y, not X.', and the corpus corrects every attribute).")


@dataclass
class DataConfig:
    source: str = _f("builtin", choices=("builtin", "text", "jsonl", "prepared"), prefixes=("tfds:",),
                     doc="builtin: the generated world corpus; text: plain-text files (documents separated by blank lines); "
                         "jsonl: one document per line; prepared: the output of `jaxllm data prepare` (data.prepared_dir); "
                         "tfds:NAME[/CONFIG][:VERSION]: a TensorFlow Datasets dataset in data.data_dir.")
    paths: list = _f(factory=list, doc="Files or globs for text/jsonl sources.")
    eval_paths: list = _f(factory=list, doc="Files or globs held out for evaluation (a dataset's own test split; *.txt "
                          "read as text, others as JSONL in the objective's record format); when set, every record of "
                          "the source trains and data.eval_fraction is not used.")
    field: str = _f("text", doc="Text field of JSONL records and TFDS examples.")
    chat_format: str = _f("auto", choices=("auto", "alpaca", "messages", "sharegpt", "hh"),
                          doc="SFT records in data.paths: alpaca {instruction,input,output|instances}, messages "
                              "{messages:[{role,content}]}, sharegpt {conversations:[{from,value}]}, hh (HH-RLHF "
                              "dialogue in data.field, default chosen); auto = by each record's keys.")
    data_dir: Optional[str] = _f(None, doc="TFDS data directory (null = TFDS's default, ~/tensorflow_datasets).")
    tfds_split: str = _f("train", doc="TFDS split to read (slicing allowed: train[:90%]).")
    prepared_dir: Optional[str] = _f(None, doc="Where `jaxllm data prepare` writes, and what source=prepared reads.")
    on_error: str = _f("raise", choices=("raise", "skip"),
                       doc="Bad records (malformed JSON, missing field, invalid UTF-8): raise names file and line; skip counts them.")
    eval_fraction: float = _f(0.02, min=0.0, max=0.5, doc="Share of documents held out for evaluation; 0 = none "
                              "(evaluation then runs on training rows, and says so).")
    max_document_chars: int = _f(100_000, min=0, doc="Pre-training documents longer than this are cut (at blank lines, else "
                                 "line ends, else spaces) into pieces of at most this size before cleaning and the "
                                 "train/eval split, so a source that stores a whole book or split as one document "
                                 "(tfds:tiny_shakespeare) passes the per-document rules; 0 = never cut.")
    split_seed: int = _f(0, doc="Seed of the train / held-out split of documents, chats and rankings.")
    shuffle: bool = _f(True, doc="Shuffle packed sequences each epoch (seeded by `seed`).")
    builtin: BuiltinConfig = _f(factory=BuiltinConfig)
    tokenizer: TokenizerConfig = _f(factory=TokenizerConfig)
    clean: CleanConfig = _f(factory=CleanConfig)


@dataclass
class ObjectiveConfig:
    """``objective.name`` plus one section per objective, ``objective.<name>``, made from the objectives'
    own config classes at load time (`objective_class`): no objective is named here."""

    name: str = _f("pretrain", doc="Which loss and batch source the trainer loop uses: a built-in objective "
                                   "(each has its section below) or your own, "
                                   "'package.module:SPEC' or 'path/to/file.py:SPEC' (an ObjectiveSpec).")


@functools.cache
def _objective_class(sections: tuple) -> type:
    fields = [(name, cls, field(default_factory=cls)) for name, cls in sections]
    return make_dataclass("ObjectiveConfig", fields, bases=(ObjectiveConfig,))


def objective_class(name: str | None = None) -> type:
    """The ``objective`` section's dataclass: ``name`` plus the options of every built-in objective and of
    the plugin ``name`` (when it is one)."""
    from jaxllm.objectives.registry import known_specs  # the specs import this module: asked at load time

    return _objective_class(tuple((s.name, s.config) for s in known_specs(name).values() if s.config is not None))


@dataclass
class OptimizerConfig:
    lr: float = _f(3e-4, min=0.0, doc="Peak learning rate.")
    warmup_steps: int = _f(100, min=0, doc="Linear warm-up from 0 to lr.")
    schedule: str = _f("cosine", choices=("cosine", "linear", "constant"), doc="Decay after warm-up, to lr*min_lr_ratio at train.steps.")
    min_lr_ratio: float = _f(0.1, min=0.0, max=1.0, doc="Final lr as a fraction of lr.")
    b1: float = _f(0.9, min=0.0, max=1.0, doc="AdamW beta1.")
    b2: float = _f(0.95, min=0.0, max=1.0, doc="AdamW beta2.")
    eps: float = _f(1e-8, min=0.0, doc="AdamW epsilon.")
    weight_decay: float = _f(0.1, min=0.0, doc="Decoupled weight decay.")
    decay_embeddings: bool = _f(False, doc="Apply weight decay to embeddings (default off).")
    decay_norms_and_biases: bool = _f(False, doc="Apply weight decay to norm scales and biases (default off).")
    grad_clip: float = _f(1.0, min=0.0, doc="Global-norm clipping threshold; 0 = off.")


# Logical axis -> mesh axis. Weights use plain names, activations `act_*`, as in
# MaxText, so FSDP can shard weights' `embed` without sharding activations' embed.
DEFAULT_RULES = [
    # weights
    ["vocab", "tensor"],
    ["embed", "fsdp"],
    ["heads", "tensor"],
    ["kv_heads", "tensor"],
    ["mlp", "tensor"],
    ["positions", None],
    ["norm", None],
    ["layers", None],
    ["lora", "fsdp"],  # a LoRA adapter's rank: B [r, out] shards over fsdp (A [in, r] already does, by its input)
    # activations
    ["act_batch", ["data", "fsdp"]],
    ["act_length", None],
    ["act_embed", None],
    ["act_heads", "tensor"],
    ["act_kv", None],
    ["act_mlp", "tensor"],
    ["act_vocab", "tensor"],
]


@dataclass
class MeshConfig:
    data: int = _f(-1, doc="Data-parallel size; -1 = all devices left over.")
    fsdp: int = _f(1, doc="Fully-sharded data-parallel size (shards weights and optimizer state); -1 = fill.")
    tensor: int = _f(1, doc="Tensor-parallel size (heads, MLP, vocab); -1 = fill.")
    dcn_data: int = _f(1, min=1, doc="How many of mesh.data's ways run across slices (TPU) or processes (GPU/CPU) over the "
                                     "data-centre network; mesh.data / dcn_data ways stay inside one (ICI/NVLink).")
    dcn_fsdp: int = _f(1, min=1, doc="As dcn_data, for mesh.fsdp.")
    dcn_tensor: int = _f(1, min=1, doc="As dcn_data, for mesh.tensor (rarely wise: tensor parallelism wants the fast links).")
    rules: list = _f(factory=lambda: [list(r) for r in DEFAULT_RULES],
                     doc="Logical-axis rules: [[logical_name, mesh_axis | [mesh_axes] | null], ...].")


@dataclass
class DistributedConfig:
    initialize: str = _f("auto", choices=("auto", "always", "never"),
                         doc="jax.distributed start-up: auto = when num_processes > 1 (here or in the environment) or a "
                             "multi-process SLURM / Open MPI / GKE TPU job is detected; always = also elsewhere "
                             "(Cloud TPU VM pods, found by JAX from the metadata server); never = single process.")
    coordinator_address: Optional[str] = _f(None, doc="host:port of process 0's coordinator; null = $JAX_COORDINATOR_ADDRESS "
                                                      "or the cluster's (SLURM, TPU, ...).")
    num_processes: Optional[int] = _f(None, min=1, doc="Processes in the job; null = $JAX_NUM_PROCESSES or the cluster's.")
    process_id: Optional[int] = _f(None, min=0, doc="This process's index 0..num_processes-1; null = $JAX_PROCESS_ID or the cluster's.")
    initialization_timeout_s: int = _f(300, min=1, doc="Seconds to wait for every process to reach the coordinator.")
    heartbeat_timeout_s: int = _f(100, min=2, doc="Seconds without a heartbeat after which a process counts as dead "
                                                  "and every other process exits (no silent hang).")
    shutdown_timeout_s: int = _f(300, min=1, doc="Seconds a finishing process waits at the exit barrier for the others.")


@dataclass
class TrainConfig:
    steps: int = _f(1000, min=1, doc="Optimizer steps in the whole run (the lr schedule spans these).")
    batch_size: int = _f(16, min=1, doc="Global batch in sequences per optimizer step.")
    seq_len: int = _f(256, min=2, doc="Tokens per sequence.")
    grad_accum: int = _f(1, min=1, doc="Micro-batches per step (batch_size must divide by it).")
    loss_chunk: int = _f(0, min=0, doc="Positions per chunk of output head + cross-entropy (pretrain, SFT); 0 = whole "
                                      "sequence. Bounds the float32 logits held at once to [batch, chunk, vocab]; "
                                      "must divide train.seq_len.")
    log_every: int = _f(10, min=1, doc="Steps between metric logs.")
    eval_every: int = _f(200, min=0, doc="Steps between evaluations on the held-out split; 0 = only at the end.")
    eval_batches: int = _f(4, min=1, doc="Batches per evaluation.")
    stop_at_step: Optional[int] = _f(None, min=1, doc="Stop (after saving) at this step as if pre-empted; the schedule still spans train.steps.")
    peak_flops_per_device: Optional[float] = _f(None, min=0.0, doc="Peak FLOP/s per device for MFU; null = table by device kind (CPU: measured).")
    sample_prompt: str = _f("The capital of", doc="Prompt for the text sample printed at the end.")
    sample_tokens: int = _f(48, min=0, doc="Tokens to sample at the end; 0 = none.")
    sample_temperature: float = _f(0.8, min=0.0, doc="Sampling temperature for that sample (0 = greedy).")
    progress: str = _f("auto", choices=("auto", "on", "off"), doc="Progress bar: auto = only on a terminal.")
    nonfinite: str = _f("stop", choices=("stop", "skip"),
                        doc="A step with a NaN/Inf loss or gradient norm never updates the state; stop = end the run "
                        "(exit 2, naming the step and the last good checkpoint), skip = go on and count it.")
    max_skipped: int = _f(10, min=1, doc="train.nonfinite=skip: stop after this many non-finite steps in a row.")


@dataclass
class CheckpointConfig:
    enabled: bool = _f(True, doc="Save checkpoints.")
    every: int = _f(200, min=1, doc="Steps between saves (plus one at the end and on SIGTERM).")
    keep: int = _f(3, min=1, doc="Keep the last N checkpoints.")
    keep_every: Optional[int] = _f(None, min=1, doc="Also keep every checkpoint whose step is a multiple of this.")
    async_save: bool = _f(True, doc="Write in the background while training goes on.")
    checksums: bool = _f(True, doc="Write <step>/SHA256SUMS of every file once a step is final (background thread) and "
                         "check it on resume: a damaged step is moved aside and the one before restored.")
    allow_config_change: bool = _f(False, doc="On resume, accept changes to keys that break an exact resume (seed, "
                                   "batch, optimizer, data...); `jaxllm train --allow-config-change` sets it.")


@dataclass
class LogConfig:
    tensorboard: bool = _f(True, doc="Write TensorBoard event files to <run_dir>/tb/.")


@dataclass
class Config:
    seed: int = _f(0, doc="Seed for init, dropout and data order.")
    init_from: Optional[str] = _f(None, doc="Checkpoint dir (a run dir or its checkpoints/<step>) to take parameters from; "
                                            "its tokenizer.model is used unless data.tokenizer.path is set.")
    run: RunConfig = _f(factory=RunConfig)
    model: ModelConfig = _f(factory=ModelConfig)
    data: DataConfig = _f(factory=DataConfig)
    objective: ObjectiveConfig = _f(factory=lambda: objective_class()())
    optimizer: OptimizerConfig = _f(factory=OptimizerConfig)
    mesh: MeshConfig = _f(factory=MeshConfig)
    distributed: DistributedConfig = _f(factory=DistributedConfig)
    train: TrainConfig = _f(factory=TrainConfig)
    checkpoint: CheckpointConfig = _f(factory=CheckpointConfig)
    log: LogConfig = _f(factory=LogConfig)
