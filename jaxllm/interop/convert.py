"""``jaxllm convert from-hf`` and ``to-hf``: whole-directory conversions between HF models and jaxllm runs.

``from_hf(HF_DIR, OUT)`` writes a jaxllm run dir: ``checkpoints/0`` (parameters, sharded FSDP over the
local devices while converting), ``config.yaml`` (so generate/chat/eval/to-hf take the dir), ``model.yaml``
(the model section that reproduces the HF model, to list under ``base:``) and the model's tokenizer
(``tokenizer.json`` with its config files and chat template, else ``tokenizer.model``), which training, chat
and eval then use. ``to_hf(CHECKPOINT, OUT)`` writes ``config.json`` + safetensors from a jaxllm run: a language
model (pre-training, SFT, the policy of a PPO run) as ``*ForCausalLM``/``GPT2LMHeadModel``, a reward
model (or a PPO run's critic, ``part="critic"``) as ``*ForSequenceClassification`` with one label, plus the
tokenizer files ``AutoTokenizer`` reads with jaxllm's ids and ``generation_config.json`` with jaxllm's stops.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import yaml

from jaxllm.config.schema import Config, MeshConfig
from jaxllm.errors import UserError
from jaxllm.interop.hf import load_hf_params, model_config_from_hf, read_hf_config, write_hf
from jaxllm.interop.tensor_files import INDEX


def from_hf(hf_dir: str | Path, out: str | Path) -> list[str]:
    """Convert; returns lines to print."""
    import orbax.checkpoint as ocp

    from jaxllm.model import Transformer, param_count, resolve_spec
    from jaxllm.model.scalar import ScalarModel
    from jaxllm.parallel.layout import Layout
    from jaxllm.parallel.mesh import make_mesh

    from jaxllm.interop.peft import is_peft_dir, merge_peft, peft_base_dir

    hf_dir, out = Path(hf_dir), Path(out)
    adapter = None
    if is_peft_dir(hf_dir):  # a LoRA adapter: its base converted, the adapter merged in
        adapter, hf_dir = hf_dir, peft_base_dir(hf_dir)
    hf = read_hf_config(hf_dir)
    scalar = any(a.endswith("ForSequenceClassification") for a in hf.get("architectures") or [])
    if scalar and hf.get("num_labels", len(hf.get("id2label") or {0: 0})) != 1:
        raise UserError(f"{hf_dir}/config.json: a sequence classifier with {hf.get('num_labels')} labels; a reward model has one.")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; give a new directory for the converted run.")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"{out} is not empty; give a new output directory for the converted run.")
    model_cfg = model_config_from_hf(hf, str(hf_dir / "config.json"))
    section = {k: v for k, v in dataclasses.asdict(model_cfg).items() if v is not None}
    spec = resolve_spec(model_cfg)
    mesh_cfg = MeshConfig(data=1, fsdp=-1)
    layout = Layout(make_mesh(mesh_cfg), mesh_cfg.rules)
    model = ScalarModel(spec) if scalar else Transformer(spec)
    with layout.context():
        params = load_hf_params(hf_dir, spec, layout.abstract_params(model), scalar=scalar)
        if adapter is not None:
            params = merge_peft(adapter, params, spec)
        manager = ocp.CheckpointManager((out / "checkpoints").absolute(), options=ocp.CheckpointManagerOptions(create=True),
                                        item_handlers={"params": ocp.StandardCheckpointHandler(),
                                                       "config": ocp.JsonCheckpointHandler()})
        manager.save(0, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                                config=ocp.args.JsonSave({"model": section, "source": str(hf_dir)})))
        manager.wait_until_finished()
        manager.close()
    objective = "reward" if scalar else "pretrain"
    config = {"model": section, "objective": {"name": objective}, "train": {"seq_len": min(256, spec.max_seq_len)},
              "run": {"dir": str(out)}}
    (out / "config.yaml").write_text(f"# converted from the Hugging Face model in {hf_dir}\n"
                                     + yaml.safe_dump(config, sort_keys=False))
    (out / "model.yaml").write_text(f"# the model of {hf_dir}: list this file last under `base:` in a training config\n"
                                    + yaml.safe_dump({"model": section}, sort_keys=False))
    lines = [f"{adapter}: a PEFT LoRA adapter, merged into its base"] if adapter is not None else []
    lines += [f"{hf_dir}: {hf.get('model_type')} ({'sequence classifier' if scalar else 'causal LM'}), "
             f"{param_count(params) / 1e6:.2f}M parameters, {spec.n_layers} layers x {spec.d_model}, vocab {spec.vocab_size}",
             f"wrote {out}/checkpoints/0, {out}/config.yaml and {out}/model.yaml (put it last under `base:` in a training "
             f"config, with init_from: {out})"]
    lines += _import_tokenizer(hf_dir, out, spec.vocab_size)
    return lines


TOKENIZER_EXTRAS = ("tokenizer_config.json", "special_tokens_map.json", "generation_config.json")


def _import_tokenizer(hf_dir: Path, out: Path, vocab_size: int) -> list[str]:
    """Copy the model's tokenizer into the run dir: ``tokenizer.json`` (preferred: it is what ``transformers``
    uses) with its config files, else a SentencePiece ``tokenizer.model``. Checked against the embedding."""
    from jaxllm.data.tokenizer import Tokenizer

    if (hf_dir / "tokenizer.json").is_file():
        names = ["tokenizer.json", *[n for n in TOKENIZER_EXTRAS if (hf_dir / n).is_file()]]
    elif (hf_dir / "tokenizer.model").is_file():
        names = ["tokenizer.model"]
    else:
        return [f"{hf_dir} has no tokenizer.json or tokenizer.model: bring the model's tokenizer yourself "
                "(data.tokenizer.path)"]
    tok = Tokenizer.load(hf_dir / names[0])
    if tok.vocab_size > vocab_size:
        raise UserError(f"{hf_dir / names[0]}: the tokenizer has {tok.vocab_size} tokens but the model's embedding has "
                        f"{vocab_size} rows (config.json vocab_size); ids past {vocab_size - 1} would have no embedding. "
                        "The tokenizer belongs to another model.")
    for n in names:
        shutil.copy(hf_dir / n, out / n)
    what = f"{tok.vocab_size} tokens, BOS {tok.bos_id}, EOS {tok.eos_id}, pad {tok.pad_id}"
    if getattr(tok, "chat_template", None):
        from jaxllm.data.model_template import ModelChatTemplate
        template = ModelChatTemplate(tok)
        what += f"; its chat template is used (assistant turns found by {template.how})"
    return [f"copied the tokenizer ({', '.join(names)}; {what}) to {out}"]


EXPORT_FILES = ("config.json", "generation_config.json", "model.safetensors", "model-*-of-*.safetensors",
                INDEX, "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "adapter_config.json", "adapter_model.safetensors")


def _check_export_dir(out: Path, overwrite: bool) -> None:
    """Refuse a file, or a non-empty directory unless ``overwrite``; then clear only what an export writes
    (stale shards and an old index would otherwise be read back with the new model)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; give a directory to export into (it is created if missing).")
    if not out.is_dir() or not any(out.iterdir()):
        return
    ours = sorted({p for pattern in EXPORT_FILES for p in out.glob(pattern) if p.is_file()})
    if not overwrite:
        raise UserError(f"{out} is not empty ({len(list(out.iterdir()))} entries); give a new directory, or pass "
                        f"--overwrite to replace the export files in it ({len(ours)} there now).")
    for p in ours:
        p.unlink()


def to_hf(checkpoint: str | Path, out: str | Path, part: str = "auto", dtype: str = "float32",
          max_shard_bytes: int = 5 << 30, overwrite: bool = False, merge: bool = False) -> list[str]:
    """Export a jaxllm run (any path into it); ``part``: auto, policy or critic (PPO runs). A LoRA run gives a
    PEFT adapter for its base, or with ``merge`` the whole model with the adapters folded in.

    ``out`` must be missing or empty unless ``overwrite``, which first removes the files an export writes."""
    from jaxllm.config import load_config
    from jaxllm.run_dir import find_run_dir
    from jaxllm.model import resolve_spec
    from jaxllm.objectives.registry import get_spec
    from jaxllm.parallel.layout import Layout
    from jaxllm.parallel.mesh import make_mesh
    from jaxllm.pretrained import load_params

    run_dir = find_run_dir(checkpoint)
    _check_export_dir(Path(out), overwrite)
    cfg: Config = load_config(run_dir / "config.yaml", ["mesh.data=1", "mesh.fsdp=-1", "mesh.tensor=1"])
    vocab = cfg.model.vocab_size
    from jaxllm.data.tokenizer import Tokenizer, tokenizer_file

    tokenizer = Tokenizer.load(tokenizer_file(run_dir)) if tokenizer_file(run_dir) else None
    if vocab is None:
        if tokenizer is None:
            raise UserError(f"{run_dir}: model.vocab_size is null and there is no tokenizer.model or tokenizer.json "
                            "to size it from.")
        vocab = tokenizer.vocab_size
    spec = resolve_spec(cfg.model, vocab, backend="cpu")
    ospec = get_spec(cfg.objective.name)
    kind = ospec.name
    if part == "auto":
        part = next(iter(ospec.parts))
    elif part not in ospec.parts and part == "policy" and ospec.lm_part() is not None:
        part = next(n for n, p in ospec.parts.items() if p.kind == "lm")
    elif part not in ospec.parts:
        raise UserError(f"--part {part}: {run_dir} is a {kind} run, which holds {', '.join(ospec.parts)}.")
    chosen = ospec.parts[part]
    scalar = chosen.kind == "scalar"
    from jaxllm.train.adapters import read_base_file
    lora = read_base_file(run_dir)
    if lora is not None and not merge:
        return _to_peft(checkpoint, run_dir, Path(out), spec, cfg, chosen, lora, tokenizer)
    layout = Layout(make_mesh(cfg.mesh), cfg.mesh.rules)
    with layout.context():
        params = load_params(str(checkpoint), layout.abstract_params(ospec.model(spec)))
    if chosen.subtree:
        if chosen.subtree not in params:
            raise UserError(f"{run_dir}: its {part} started from a fresh initialisation under LoRA (no checkpoint "
                            "for its frozen base), so it cannot be exported; export the policy.")
        params = params[chosen.subtree]
    ids = {}
    if tokenizer is not None:
        ids = {"pad_id": tokenizer.pad_id, "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id}
    notes = write_hf(params, spec, out, scalar=scalar, dtype=dtype, max_shard_bytes=max_shard_bytes, **ids)
    out = Path(out)
    if tokenizer is not None:
        notes += export_tokenizer(tokenizer, run_dir, out)
    what = "sequence classifier (num_labels 1)" if scalar else "causal LM"
    return [f"wrote {out}: {spec.family} {what} from {run_dir} ({kind} run{', ' + part if len(ospec.parts) > 1 else ''}), {dtype}",
            *notes]


def _to_peft(checkpoint, run_dir: Path, out: Path, spec, cfg: Config, chosen, lora: dict, tokenizer) -> list[str]:
    """A LoRA run's language model as a PEFT adapter on its base (``lora_base.json`` names it)."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P

    from jaxllm.interop.hf import is_hf_dir
    from jaxllm.interop.peft import write_peft
    from jaxllm.train.checkpoint import load_saved_params

    if chosen.kind == "scalar":
        raise UserError(f"{run_dir} is a LoRA run; its {chosen.kind} model exports merged only (add --merge): a PEFT "
                        "adapter here is written for the causal LM.")
    trainable = load_saved_params(str(checkpoint), NamedSharding(jax.sharding.Mesh(jax.devices()[:1], ("x",)), P()))
    if chosen.subtree:
        trainable = trainable[chosen.subtree]
    base = lora["parts"].get(chosen.subtree or "")
    notes = write_peft(trainable, spec, out, base or "", cfg.model.lora.dropout)
    if not (base and is_hf_dir(base)):
        notes.append(f"the base ({base or 'a fresh initialisation'}) is not a Hugging Face directory: export it with "
                     "`jaxllm convert to-hf` and set base_model_name_or_path in adapter_config.json to that directory, "
                     "or export this run merged (--merge)")
    if tokenizer is not None:
        notes += export_tokenizer(tokenizer, run_dir, out)
    return [f"wrote {out}: a PEFT LoRA adapter from {run_dir} ({cfg.objective.name} run)", *notes]


def export_tokenizer(tokenizer, run_dir: Path, out: Path) -> list[str]:
    """The tokenizer files ``AutoTokenizer`` reads with jaxllm's ids, and ``generation_config.json`` whose
    ``eos_token_id`` lists jaxllm's stop tokens (so ``generate`` with its defaults stops where jaxllm stops).
    A SentencePiece run keeps ``tokenizer.model`` and gains an equivalent ``tokenizer.json`` and jaxllm's chat
    template in Jinja (`chat.jinja_template`); a Hugging Face tokenizer is written as it came, chat template too."""
    import json

    from jaxllm.data.chat import chat_template
    from jaxllm.data.hf_tokenizer import sentencepiece_to_hf

    from jaxllm.data.chat import ChatTemplate, jinja_template
    from jaxllm.data.hf_tokenizer import HFTokenizer

    notes = []
    hf_tok = tokenizer
    if tokenizer.kind == "sentencepiece":
        shutil.copy(run_dir / "tokenizer.model", out / "tokenizer.model")
        try:
            hf_tok = sentencepiece_to_hf(tokenizer)
        except UserError as e:
            return [str(e)]
    config = dict(hf_tok.config)
    if not config.get("chat_template") and ChatTemplate(tokenizer).reserved:
        config["chat_template"] = jinja_template()
    HFTokenizer(hf_tok.tokenizer_json, config, hf_tok.name).save(out / "tokenizer.json")
    specials = {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if config.get(k) is not None}
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2, ensure_ascii=False) + "\n")
    stops = list(chat_template(tokenizer).stop_ids)
    generation = {"bos_token_id": tokenizer.bos_id, "eos_token_id": stops if len(stops) > 1 else stops[0],
                  "pad_token_id": tokenizer.pad_id}
    source = run_dir / "generation_config.json"
    if source.is_file():  # an imported model's own sampling defaults, with jaxllm's stop and special ids
        generation = {**json.loads(source.read_text()), **generation}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    notes.append(f"wrote the tokenizer (tokenizer.json, tokenizer_config.json{', chat template' if config.get('chat_template') else ''}"
                 f", special_tokens_map.json) and generation_config.json (stops at ids {stops})")
    return notes


