"""``jaxllm convert from-hf`` and ``to-hf``: whole-directory conversions between HF models and jaxllm runs.

``from_hf(HF_DIR, OUT)`` writes a jaxllm run dir: ``checkpoints/0`` (parameters, sharded FSDP over the
local devices while converting), ``config.yaml`` (so generate/chat/eval/to-hf take the dir), ``model.yaml``
(the model section that reproduces the HF model, to list under ``base:``) and, where the HF directory has
a SentencePiece ``tokenizer.model``, a copy of it. A ``tokenizer.json`` alone is copied but not used:
jaxllm tokenizes with SentencePiece only. ``to_hf(CHECKPOINT, OUT)`` writes ``config.json`` + safetensors from a jaxllm run: a language
model (pre-training, SFT, the policy of a PPO run) as ``*ForCausalLM``/``GPT2LMHeadModel``, a reward
model (or a PPO run's critic, ``part="critic"``) as ``*ForSequenceClassification`` with one label.
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

    hf_dir, out = Path(hf_dir), Path(out)
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
    lines = [f"{hf_dir}: {hf.get('model_type')} ({'sequence classifier' if scalar else 'causal LM'}), "
             f"{param_count(params) / 1e6:.2f}M parameters, {spec.n_layers} layers x {spec.d_model}, vocab {spec.vocab_size}",
             f"wrote {out}/checkpoints/0, {out}/config.yaml and {out}/model.yaml (put it last under `base:` in a training "
             f"config, with init_from: {out})"]
    sp = hf_dir / "tokenizer.model"
    if sp.is_file():
        shutil.copy(sp, out / "tokenizer.model")
        lines.append(f"copied the SentencePiece tokenizer {sp} to {out}/tokenizer.model")
    elif (hf_dir / "tokenizer.json").is_file():
        shutil.copy(hf_dir / "tokenizer.json", out / "tokenizer.json")
        lines.append(f"{hf_dir} has only tokenizer.json (copied, not used): jaxllm tokenizes with SentencePiece, so "
                     "training, chat and eval need a tokenizer.model for this vocabulary (set data.tokenizer.path); "
                     "the weights themselves converted exactly")
    else:
        lines.append(f"{hf_dir} has no tokenizer.model or tokenizer.json: bring the model's tokenizer yourself")
    return lines


EXPORT_FILES = ("config.json", "generation_config.json", "model.safetensors", "model-*-of-*.safetensors",
                INDEX, "tokenizer.model")


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
          max_shard_bytes: int = 5 << 30, overwrite: bool = False) -> list[str]:
    """Export a jaxllm run (any path into it); ``part``: auto, policy or critic (PPO runs).

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
    tokenizer = None
    if (run_dir / "tokenizer.model").is_file():
        from jaxllm.data.tokenizer import Tokenizer
        tokenizer = Tokenizer.load(run_dir / "tokenizer.model")
    if vocab is None:
        if tokenizer is None:
            raise UserError(f"{run_dir}: model.vocab_size is null and there is no tokenizer.model to size it from.")
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
    layout = Layout(make_mesh(cfg.mesh), cfg.mesh.rules)
    with layout.context():
        params = load_params(str(checkpoint), layout.abstract_params(ospec.model(spec)))
    if chosen.subtree:
        params = params[chosen.subtree]
    ids = {}
    if tokenizer is not None:
        ids = {"pad_id": tokenizer.pad_id, "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id}
    notes = write_hf(params, spec, out, scalar=scalar, dtype=dtype, max_shard_bytes=max_shard_bytes, **ids)
    out = Path(out)
    if tokenizer is not None:
        shutil.copy(run_dir / "tokenizer.model", out / "tokenizer.model")
    what = "sequence classifier (num_labels 1)" if scalar else "causal LM"
    return [f"wrote {out}: {spec.family} {what} from {run_dir} ({kind} run{', ' + part if len(ospec.parts) > 1 else ''}), {dtype}",
            *notes]


