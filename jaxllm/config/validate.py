"""Cross-field checks that a single field's type and range cannot express."""

from __future__ import annotations

from jaxllm.config.schema import LORA_TARGETS, Config
from jaxllm.errors import ConfigError
from jaxllm.model.families import family

MESH_AXES = ("data", "fsdp", "tensor")
LOGICAL_AXES = ("vocab", "embed", "heads", "kv_heads", "mlp", "positions", "norm", "layers", "lora",
                "act_batch", "act_length", "act_embed", "act_heads", "act_kv", "act_mlp", "act_vocab")


def _check_rules(rules: list) -> None:
    for i, rule in enumerate(rules):
        where = f"mesh.rules[{i}] = {rule!r}"
        if not (isinstance(rule, (list, tuple)) and len(rule) == 2 and isinstance(rule[0], str)):
            raise ConfigError(f"{where}: each rule is [logical_name, mesh_axis | [mesh_axes] | null].")
        logical, target = rule
        if logical not in LOGICAL_AXES:
            raise ConfigError(f"{where}: unknown logical axis {logical!r}. Known: {', '.join(LOGICAL_AXES)}.")
        targets = target if isinstance(target, (list, tuple)) else [target]
        for t in targets:
            if t is not None and t not in MESH_AXES:
                raise ConfigError(f"{where}: unknown mesh axis {t!r}. Mesh axes: {', '.join(MESH_AXES)} (or null).")


def _check_distributed(d) -> None:
    if d.coordinator_address is not None:
        host, _, port = d.coordinator_address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"distributed.coordinator_address = {d.coordinator_address!r}: expected host:port "
                              "(e.g. 10.0.0.1:1234, process 0's address and a free port).")
    if d.num_processes is not None and d.process_id is not None and d.process_id >= d.num_processes:
        raise ConfigError(f"distributed.process_id = {d.process_id} is out of range for distributed.num_processes = "
                          f"{d.num_processes}; ids run 0..{d.num_processes - 1}.")


WORLD_KINDS = ("factual", "unknowable", "myth", "harmful", "helpful", "benign")  # = world.options.ALL_KINDS (tested)


def _check_builtin(b) -> None:
    kinds = b.kinds if isinstance(b.kinds, list) else []
    bad = [k for k in kinds if k not in WORLD_KINDS]
    if bad or not kinds or len(set(kinds)) != len(kinds):
        raise ConfigError(f"data.builtin.kinds = {b.kinds!r}: expected a list of distinct kinds from "
                          f"{', '.join(WORLD_KINDS)}" + (f" ({', '.join(map(repr, bad))} is not one)." if bad else "."))


def lora_modules(m) -> list[str]:
    """The modules of ``model`` (a ModelConfig) that can carry LoRA adapters."""
    fam = family(m.family)
    mlp = ["fc", "proj"] if fam.mlp == "gelu" else ["gate", "up", "proj"]
    tied = fam.tie_embeddings if m.tie_embeddings is None else m.tie_embeddings
    return ["q", "k", "v", "o", *mlp, *([] if tied else ["lm_head"]), "embed"]


def _check_lora(cfg: Config) -> None:
    lc = cfg.model.lora
    if not lc.rank:
        return
    if not cfg.init_from:
        raise ConfigError(f"model.lora.rank = {lc.rank}: LoRA adapts a trained model, but init_from is not set; give "
                          "init_from (a run dir or a Hugging Face dir), or model.lora.rank=0 to train every parameter.")
    bad = [t for t in lc.targets if t not in LORA_TARGETS]
    if bad:
        raise ConfigError(f"model.lora.targets: {bad[0]!r} is not a module name; choose from {', '.join(LORA_TARGETS)}.")
    have = lora_modules(cfg.model)
    if not any(t in have for t in lc.targets):
        raise ConfigError(f"model.lora.targets = {lc.targets} names no module of this {cfg.model.family} model "
                          f"(it has {', '.join(have)}).")
    if lc.quantize != "none":
        try:
            import qwix  # noqa: F401
        except ImportError:
            raise ConfigError(f"model.lora.quantize = {lc.quantize!r} needs the qwix package (pip install 'qwix>=0.1.8'; "
                              "it is a jaxllm dependency), or model.lora.quantize=none.") from None


def validate(cfg: Config) -> None:
    m, t = cfg.model, cfg.train
    _check_builtin(cfg.data.builtin)
    head_dim = m.head_dim or (m.d_model // m.n_heads)
    if m.head_dim is None and m.d_model % m.n_heads:
        raise ConfigError(f"model.d_model = {m.d_model} is not divisible by model.n_heads = {m.n_heads}; "
                          "change one of them or set model.head_dim.")
    fam = family(m.family)
    if fam.positions == "rope" and head_dim % 2:
        raise ConfigError(f"model.head_dim = {head_dim}: RoPE needs an even head dimension.")
    if m.global_every and not m.sliding_window:
        raise ConfigError(f"model.global_every = {m.global_every} picks the global layers among local ones, but "
                          "model.sliding_window is null; set a window (e.g. 4096) or global_every=0.")
    kv = m.n_kv_heads or m.n_heads
    if m.n_heads % kv:
        raise ConfigError(f"model.n_kv_heads = {kv} must divide model.n_heads = {m.n_heads}.")
    if fam.positions == "learned" and t.seq_len > m.max_seq_len:
        raise ConfigError(f"train.seq_len = {t.seq_len} exceeds model.max_seq_len = {m.max_seq_len} "
                          "(the learned position table); lower train.seq_len or raise model.max_seq_len.")
    if t.batch_size % t.grad_accum:
        raise ConfigError(f"train.batch_size = {t.batch_size} is not divisible by train.grad_accum = {t.grad_accum}.")
    if t.loss_chunk and t.seq_len % t.loss_chunk:
        raise ConfigError(f"train.loss_chunk = {t.loss_chunk} does not divide train.seq_len = {t.seq_len}; "
                          "use a divisor (e.g. 128 or 256) or 0 for the whole sequence.")
    if t.stop_at_step is not None and t.stop_at_step > t.steps:
        raise ConfigError(f"train.stop_at_step = {t.stop_at_step} is beyond train.steps = {t.steps}.")
    if cfg.optimizer.warmup_steps > t.steps:
        raise ConfigError(f"optimizer.warmup_steps = {cfg.optimizer.warmup_steps} exceeds train.steps = {t.steps}.")
    for axis in MESH_AXES:
        size = getattr(cfg.mesh, axis)
        if size == 0 or size < -1:
            raise ConfigError(f"mesh.{axis} = {size}: must be a positive size or -1 (fill with the devices left).")
    if sum(getattr(cfg.mesh, a) == -1 for a in MESH_AXES) > 1:
        raise ConfigError("mesh: at most one of mesh.data, mesh.fsdp, mesh.tensor may be -1.")
    for axis in MESH_AXES:
        size, dcn = getattr(cfg.mesh, axis), getattr(cfg.mesh, f"dcn_{axis}")
        if size != -1 and size % dcn:
            raise ConfigError(f"mesh.dcn_{axis} = {dcn} does not divide mesh.{axis} = {size}: the across-slice ways "
                              f"are part of the axis; make mesh.{axis} a multiple of {dcn}.")
    _check_rules(cfg.mesh.rules)
    _check_distributed(cfg.distributed)
    _check_lora(cfg)
    if cfg.data.clean.language_id and not cfg.data.clean.language_model:
        raise ConfigError("data.clean.language_id = true needs data.clean.language_model, a local fastText model "
                          "(e.g. lid.176.bin); jaxllm never downloads it.")
    if cfg.data.source == "prepared" and not cfg.data.prepared_dir:
        raise ConfigError("data.source = 'prepared' needs data.prepared_dir (the output of `jaxllm data prepare`).")
    if cfg.data.source in ("text", "jsonl") and not cfg.data.paths:
        raise ConfigError(f"data.paths is empty but data.source = {cfg.data.source!r} needs files; "
                          "set data.paths=[file1,file2] or data.source=builtin.")
    from jaxllm.objectives.registry import get_spec  # each objective checks its own options

    get_spec(cfg.objective.name).validate(cfg)
