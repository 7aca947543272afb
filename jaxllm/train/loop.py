"""The trainer loop: one loop for every objective.

Numbered as it runs:
1. check everything a user can get wrong (config, mesh, data, init_from) before
   writing anything;
2. build tokenizer, model spec, objective (batch source + loss), optimizer;
3. initialise sharded (or resume from the run dir's latest checkpoint; or take
   parameters from ``init_from``);
4. compile the step ahead of time and report mesh, parameters and per-device memory;
5. loop: global batch -> step -> log / eval / checkpoint; SIGTERM saves and stops;
6. final eval, checkpoint and a text sample.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import threading
import time
from pathlib import Path

import flax.traverse_util
import jax
import numpy as np

from jaxllm.config import dump_yaml, to_dict
from jaxllm.config.schema import Config
from jaxllm.data.tokenizer import tokenizer_file
from jaxllm.errors import ConfigError, UserError
from jaxllm.model import Transformer, param_count, resolve_spec
from jaxllm.model.decode import Sampling, generate
from jaxllm.model.flops import lora_flops_factor
from jaxllm.model.lora import is_adapter, logical_size, without_adapters
from jaxllm.objectives.base import Objective, ObjectiveSpec, Params
from jaxllm.objectives.registry import get_spec
from jaxllm.parallel.distributed import check_same_everywhere, is_multiprocess, preemption_service_running
from jaxllm.parallel.layout import Layout
from jaxllm.parallel.mesh import describe, make_mesh
from jaxllm.pretrained import load_params
from jaxllm.train import adapters
from jaxllm.train.checkpoint import Checkpointer, latest_step
from jaxllm.train.guard import FiniteGuard, NonFiniteStop
from jaxllm.train.metrics import MetricsLogger, Progress, peak_flops_per_device
from jaxllm.train.optimizer import make_optimizer
from jaxllm.train.resume import check_resume_config, keep_old_config
from jaxllm.train.state import sharded_init
from jaxllm.train.step import jit_eval_step, jit_train_step, make_eval_step, make_train_step


@dataclasses.dataclass
class TrainResult:
    state: object
    history: list[dict]
    eval: dict
    sample: str | None
    run_dir: Path


class _Preemption:
    """SIGTERM (pre-emption, a time limit) becomes "save this step, then stop".

    One process: a Python handler sets a flag the loop reads after each step. Several
    processes: the signal may reach only some of them (one host pre-empted), so they must
    agree on the step. JAX's preemption service, started by ``jax.distributed.initialize``,
    owns SIGTERM there and picks that step (`multihost_utils.reached_preemption_sync_point`,
    asked after every step). Where the service is off, the flag is all-gathered at log and
    checkpoint steps instead.
    """

    def __init__(self, multi: bool):
        self.requested, self._old = False, None
        self.service = multi and preemption_service_running()
        self.gather = multi and not self.service
        if not self.service and threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.requested = True

    def check(self, step: int, at_log_step: bool) -> bool:
        """Whether every process stops after ``step`` (called by every process after every step)."""
        from jax.experimental import multihost_utils

        if self.service:
            self.requested = self.requested or multihost_utils.reached_preemption_sync_point(step)
        elif self.gather and at_log_step:
            self.requested = bool(np.any(multihost_utils.process_allgather(np.array([self.requested]))))
        elif self.gather:
            return False
        return self.requested

    def restore(self):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def _check_init_from(path: str | None) -> None:
    if path and not Path(path).exists():
        raise UserError(f"init_from = {path!r}: no such directory. Train that run first (`jaxllm train pretrain/demo` "
                        "writes runs/demo), or give a run dir, its checkpoints/ dir or checkpoints/<step>.")


def _unsharded_report(state_shardings, abstract, mesh) -> list[str]:
    """Large parameters replicated on a mesh that could shard them (a sign of a missing rule)."""
    if mesh.shape["fsdp"] * mesh.shape["tensor"] == 1:
        return []
    out = []
    for (path, sh), a in zip(jax.tree_util.tree_flatten_with_path(state_shardings.params)[0],
                             jax.tree.leaves(abstract.params)):
        if a.size >= 1 << 16 and all(s is None for s in sh.spec):
            out.append("/".join(str(getattr(k, "key", k)) for k in path))
    return out


def _memory_line(compiled) -> str:
    try:
        m = compiled.memory_analysis()
        total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
        return (f"compiled step memory per device: {total / 2**20:.1f} MiB "
                f"(arguments {m.argument_size_in_bytes / 2**20:.1f}, temporaries {m.temp_size_in_bytes / 2**20:.1f})")
    except Exception as e:  # not every backend implements it
        return f"compiled step memory per device: unavailable ({type(e).__name__})"


def _evaluate(eval_fn, params, frozen, batches, layout: Layout) -> dict:
    sums = None
    for b in batches:
        out = layout.to_host(eval_fn(params, layout.global_batch(b), frozen))
        sums = out if sums is None else jax.tree.map(np.add, sums, out)
    loss_sum, denom, metrics = sums
    loss = float(loss_sum / max(denom, 1e-9))
    res = {"eval_loss": loss, "eval_ppl": math.exp(min(loss, 50.0))}
    res.update({f"eval_{k}": float(s / max(c, 1e-9)) for k, (s, c) in metrics.items()})
    return res


@dataclasses.dataclass
class _Run:
    """What steps 1-2 build: everything the loop needs besides the state."""

    cfg: Config
    layout: Layout
    run_dir: Path
    tokenizer: object
    spec: object
    model: Transformer
    objective: Objective
    tx: object
    schedule: object
    say: Progress  # prints on process 0 only
    resume_at: int | None  # the newest checkpoint step found before anything was written
    changed_keys: list     # config keys that differ from that checkpoint's config
    lora: adapters.LoraRun | None = None  # LoRA: the frozen base and the reference views of it
    lora_parts: dict | None = None         # LoRA: where each part of the base came from (lora_base.json)

    def params(self, trainable):
        """The whole parameter tree the objective's model applies (LoRA: base + trainable)."""
        return trainable if self.lora is None else self.lora.params(trainable)

    def declared(self, frozen: dict) -> dict:
        """The frozen models the objective declared, from the step's frozen argument."""
        return frozen if self.lora is None else self.lora.objective_frozen(frozen)


def _prepare(cfg: Config, devices) -> _Run:
    """Steps 1-2: every check a user can fail runs before the run dir is touched (`_write_run_dir` writes it)."""
    t = cfg.train
    mesh = make_mesh(cfg.mesh, devices)
    layout = Layout(mesh, cfg.mesh.rules)
    div = layout.batch_divisor
    if (t.batch_size // t.grad_accum) % div:
        raise ConfigError(f"train.batch_size / train.grad_accum = {t.batch_size // t.grad_accum} sequences per micro-batch "
                          f"cannot split over the {div} batch shards of the mesh; make it a multiple of {div}.")
    _check_init_from(cfg.init_from)
    run_dir = Path(cfg.run.dir)
    is_main = jax.process_index() == 0
    say = Progress(t.steps, 0, "off", is_main)
    resume_at = latest_step(run_dir / "checkpoints") if cfg.checkpoint.enabled else None
    changed = []
    if resume_at is not None:
        changed = check_resume_config(run_dir, resume_at, to_dict(cfg), cfg.checkpoint.allow_config_change, say.write)
    ospec: ObjectiveSpec = get_spec(cfg.objective.name)
    data = ospec.load(cfg, run_dir)
    tokenizer = data.tokenizer
    check_same_everywhere("the tokenizer", tokenizer.model_proto)
    spec = resolve_spec(cfg.model, tokenizer.vocab_size)
    model = ospec.model(spec)
    objective = ospec.build(cfg, model, data, jax.process_index(), jax.process_count())
    tx, schedule = make_optimizer(cfg.optimizer, t.steps)
    say.write(describe(mesh))
    for line in ospec.report(data.stats):
        say.write(line)
    if objective.eval_split == "train":
        say.write("note: nothing is held out (data.eval_fraction = 0): evaluation runs on training rows, so eval_* "
                  "metrics measure fit, not generalisation (logged with evaluated_on = train)")
    return _Run(cfg, layout, run_dir, tokenizer, spec, model, objective, tx, schedule, say, resume_at, changed)


def _write_run_dir(r: _Run) -> None:
    """The run dir is self-contained: config and tokenizer beside the checkpoints (process 0).

    A resume with a changed config keeps the config that trained so far as ``config.<step>.yaml``.
    """
    if jax.process_index() != 0:
        return
    r.run_dir.mkdir(parents=True, exist_ok=True)
    if r.changed_keys:
        keep_old_config(r.run_dir, r.resume_at)
    (r.run_dir / "config.yaml").write_text(dump_yaml(r.cfg))
    if tokenizer_file(r.run_dir) is None:
        r.tokenizer.save(r.run_dir / r.tokenizer.filename)
    if r.lora_parts is not None:
        adapters.write_base_file(r.run_dir, r.lora_parts, r.spec.lora_scale)


def _place(p: Params, fresh, layout: Layout, abstract=None):
    """One declared `Params` on the mesh: read from its checkpoint, or copied from the fresh parameters.
    A LoRA model's adapters are never in a checkpoint it reads: they are left out of the shapes asked for."""
    if p.path is None:
        return jax.tree.map(jax.numpy.copy, fresh if p.copy is None else fresh[p.copy])
    abstract = abstract if abstract is not None else without_adapters(layout.abstract_params(p.module))
    return p.select(load_params(p.path, abstract))


def _initial_lora_state(r: _Run):
    """Step 3 with LoRA: the state holds the trainable part; the base is loaded (every time: it is not in the
    checkpoints), stored as configured, and serves the objective's reference models (`train/adapters.py`)."""
    cfg, obj, layout, lc = r.cfg, r.objective, r.layout, r.cfg.model.lora
    init, (shardings, _), (abstract, base_abstract) = sharded_init(r.model, r.tx, cfg.train.seq_len, layout.mesh,
                                                                   layout.rules, lora_train=tuple(lc.train))
    ckpt = Checkpointer(r.run_dir / "checkpoints", cfg.checkpoint) if r.resume_at is not None else None
    restored = ckpt.restore_newest(abstract, r.say.write) if ckpt else None
    state, base = init(jax.random.PRNGKey(cfg.seed))  # parts no checkpoint provides keep this initialisation
    parts = obj.init if obj.init is not None else {None: Params(r.model, cfg.init_from)}
    base = dict(base)
    for key, p in parts.items():
        if key is None:
            base = _place(p, None, layout, base_abstract)
        else:
            base[key] = _place(p, None, layout)
    if restored is not None:
        latest, state, data_state = restored
        obj.train_batches.restore(data_state)
        r.say.write(f"resumed from {r.run_dir / 'checkpoints'} at step {latest}")
    else:  # leaves trained in full (a scalar head) start from their checkpoint, as copies (the state is donated)
        flat_base = flax.traverse_util.flatten_dict(base)
        flat = {k: (v if is_adapter(k) else jax.numpy.copy(flat_base[k]))
                for k, v in flax.traverse_util.flatten_dict(state.params).items()}
        state = state.replace(params=flax.traverse_util.unflatten_dict(flat))
    base = adapters.store_base(base, lc.base_dtype, lc.quantize, lc.quantize_block)
    views = adapters.views(parts, obj.frozen)
    run = adapters.LoraRun(base, views)
    declared = {name: _place(p, None, layout) for name, p in obj.frozen.items() if name not in views}
    declared.update(run.objective_frozen({adapters.BASE: base}))
    if obj.prepare is not None:
        line, declared = obj.prepare(layout, declared)
        if line:
            r.say.write(line)
    run.keep_views(declared)
    r.lora, r.lora_parts = run, parts
    if views:
        r.say.write(f"LoRA: {', '.join(sorted(run.views))} = the base with adapters off (no copy of its weights)")
    _write_run_dir(r)
    if cfg.checkpoint.enabled and ckpt is None:
        ckpt = Checkpointer(r.run_dir / "checkpoints", cfg.checkpoint)
    frozen = run.step_frozen(declared)
    if obj.on_policy:
        r.say.write(obj.train_batches.attach(layout, declared))
    return state, frozen, shardings, abstract, ckpt


def _initial_state(r: _Run):
    """Step 3: resume from the run dir (newest checkpoint that restores), else a fresh sharded init
    (with ``init_from`` parameters). Writes the run dir only once the state is built."""
    cfg, obj, layout = r.cfg, r.objective, r.layout
    if r.spec.lora_rank:
        return _initial_lora_state(r)
    init, shardings, abstract = sharded_init(r.model, r.tx, cfg.train.seq_len, layout.mesh, layout.rules)
    ckpt = Checkpointer(r.run_dir / "checkpoints", cfg.checkpoint) if r.resume_at is not None else None
    restored = ckpt.restore_newest(abstract, r.say.write) if ckpt else None
    fresh = None  # the initial trainable parameters, where a frozen copy of them is declared
    if restored is not None:
        latest, state, data_state = restored
        r.objective.train_batches.restore(data_state)
        r.say.write(f"resumed from {r.run_dir / 'checkpoints'} at step {latest}")
        if any(p.path is None for p in obj.frozen.values()):
            fresh = init(jax.random.PRNGKey(cfg.seed)).params  # the same init as the first start (same seed)
    else:
        state = init(jax.random.PRNGKey(cfg.seed))
        fresh = state.params
        parts = obj.init if obj.init is not None else ({None: Params(r.model, cfg.init_from)} if cfg.init_from else {})
        params = dict(state.params)
        for key, p in parts.items():
            if key is None:
                params = _place(p, fresh, layout, abstract.params)
            else:
                params[key] = _place(p, fresh, layout)
        state = state.replace(params=params)
        if cfg.init_from:
            r.say.write(f"parameters taken from {cfg.init_from}")
    frozen = {name: _place(p, fresh, layout) for name, p in obj.frozen.items()}
    if obj.prepare is not None:
        line, frozen = obj.prepare(layout, frozen)
        if line:
            r.say.write(line)
    _write_run_dir(r)
    if cfg.checkpoint.enabled and ckpt is None:
        ckpt = Checkpointer(r.run_dir / "checkpoints", cfg.checkpoint)
    if obj.on_policy:
        r.say.write(obj.train_batches.attach(layout, frozen))
    return state, frozen, shardings, abstract, ckpt


def _compile(r: _Run, state, frozen, shardings, abstract, first_batch):
    """Step 4: ahead-of-time compile of train and eval steps, and the pre-flight report.

    Also returns the seconds one step would take at peak FLOP/s on all devices (MFU = that / step time).
    """
    layout, t, spec, obj = r.layout, r.cfg.train, r.spec, r.objective
    loss = obj.loss if r.lora is None else adapters.wrap_loss(obj.loss, r.lora)
    step = make_train_step(loss, r.tx, r.schedule, t.grad_accum, dropout=spec.dropout > 0 or spec.lora_dropout > 0)
    jitted = jit_train_step(step, layout.mesh, layout.rules, shardings, first_batch, frozen)
    eval_fn = None
    if obj.evaluate is None:
        eval_fn = jit_eval_step(make_eval_step(loss), layout.mesh, layout.rules, shardings.params,
                                obj.eval_batches[0], frozen)
    t0 = time.perf_counter()
    compiled = jitted.lower(state, layout.global_batch(first_batch), frozen).compile()
    flops_tok = obj.flops_per_token(spec, t.seq_len)
    if r.lora is not None:  # no weight gradients for the frozen base
        flops_tok *= lora_flops_factor(spec, t.seq_len)
    peak, peak_src = peak_flops_per_device(t.peak_flops_per_device)
    n_params = param_count(abstract.params)
    if r.lora is not None:
        n_base = logical_size(r.lora.base)
        trained = f"{n_base / 1e6:.2f}M parameters frozen, {n_params / 1e6:.3f}M trained (LoRA r={spec.lora_rank})"
    else:
        trained = f"{n_params / 1e6:.2f}M parameters"
    r.say.write(f"model: {spec.family}, {trained}, {spec.n_layers} layers x "
                f"{spec.d_model}, vocab {spec.vocab_size}, compute {spec.dtype}, attention {spec.attention}; "
                f"{flops_tok / 1e6:.1f} MFLOP per trained token")
    r.say.write(f"compiled train step in {time.perf_counter() - t0:.1f}s; {_memory_line(compiled)}")
    r.say.write(f"peak {peak / 1e12:.3g} TFLOP/s per device ({peak_src})")
    for name in _unsharded_report(shardings, abstract, layout.mesh):
        r.say.write(f"warning: parameter {name} is replicated on every device; add a mesh.rules entry to shard it")
    return compiled, eval_fn, flops_tok * obj.tokens_per_step / (peak * layout.mesh.devices.size)


def _progress_line(step: int, m: dict, names: tuple[str, ...]) -> str:
    line = (f"step {step:>6}  loss {m['loss']:.4f}  gnorm {m['grad_norm']:.3f}  lr {m['lr']:.2e}  "
            f"{m['tokens_per_s']:,.0f} tok/s  mfu {m['mfu']:.1%}")
    line += "".join(f"  {k} {m[k]:.3g}" for k in names if k in m)
    if "generate_s" in m:
        line += f"  generate {m['generate_s']:.1f}s train {m['train_s']:.1f}s"
    return line


def _eval_line(ev: dict) -> str:
    name = "eval" if "evaluated_on" not in ev else f"eval (on {ev['evaluated_on']} rows)"
    head = f"{name} loss {ev['eval_loss']:.4f}  ppl {ev['eval_ppl']:.2f}" if "eval_loss" in ev else ""
    rest = "  ".join(f"{k[5:]} {v:.4g}" for k, v in ev.items() if k not in ("eval_loss", "eval_ppl", "evaluated_on"))
    return "  ".join(x for x in (head, rest) if x)


def _loop(r: _Run, state, frozen, compiled, eval_fn, ckpt, first_batch, step_seconds_at_peak):
    """Step 5: train until train.steps (or stop_at_step, or SIGTERM); log, evaluate, checkpoint."""
    cfg, t, layout, obj = r.cfg, r.cfg.train, r.layout, r.objective
    is_main = jax.process_index() == 0
    start = int(jax.device_get(state.step))
    stop = min(t.stop_at_step or t.steps, t.steps)
    logger = MetricsLogger(r.run_dir, cfg.log.tensorboard, is_main, resumed_at=start if r.resume_at is not None else None)
    progress = Progress(t.steps, start, t.progress, is_main)
    guard = FiniteGuard(t.nonfinite, t.max_skipped, lambda: _last_good(ckpt), layout.to_host, progress.write)
    preempt, stopped = _Preemption(is_multiprocess()), False
    history, last_eval, config_dict = [], {}, to_dict(cfg)
    n_dev = layout.mesh.devices.size
    batch = layout.global_batch(first_batch)
    t_last, steps_since, step = time.perf_counter(), 0, start
    source = obj.train_batches
    if obj.on_policy:
        source.drop_timing()  # the first rollout was made before the step compiled
    if obj.evaluate and start == 0 and t.eval_every:  # a baseline for the curves (cheap: no loss eval)
        logger.log(0, obj.evaluate(r.params(state.params), r.declared(frozen)))
    try:
        while step < stop:
            if batch is None:  # fetched here, so a checkpoint's data position counts only consumed batches
                if obj.on_policy:
                    source.set_params(r.params(state.params))
                batch = layout.global_batch(next(source))
            state, metrics = compiled(state, batch, frozen)
            batch = None
            step += 1
            steps_since += 1
            guard.add(step, metrics)
            if step % t.log_every == 0 or step == stop:
                guard.check()
                m = {k: float(v) for k, v in layout.to_host(metrics).items() if k not in ("denominator", "nonfinite")}
                m.update(guard.metrics())
                dt = time.perf_counter() - t_last
                tok_s = obj.tokens_per_step * steps_since / dt
                m.update(step_time=dt / steps_since, tokens_per_s=tok_s, tokens_per_s_per_device=tok_s / n_dev,
                         mfu=step_seconds_at_peak * steps_since / dt)
                if obj.on_policy:  # rollout statistics and the time spent generating
                    m.update(source.metrics())
                    m["train_s"] = dt - m.get("generate_s", 0.0)
                logger.log(step, m)
                history.append({"step": step, **m})
                progress.update(steps_since, f"loss {m['loss']:.3f}, {tok_s:,.0f} tok/s, mfu {m['mfu']:.1%}")
                progress.write(_progress_line(step, m, obj.progress_metrics))
                t_last, steps_since = time.perf_counter(), 0
            if (t.eval_every and step % t.eval_every == 0) or step == stop:
                if obj.evaluate:
                    last_eval = obj.evaluate(r.params(state.params), r.declared(frozen))
                else:
                    last_eval = _evaluate(eval_fn, state.params, frozen, obj.eval_batches, layout)
                if obj.eval_split != "held-out":
                    last_eval["evaluated_on"] = obj.eval_split
                logger.log(step, last_eval)
                line = _eval_line(last_eval)
                if line:
                    progress.write(f"step {step:>6}  {line}")
                t_last = time.perf_counter()  # keep eval time out of the throughput figures
            on_schedule = step % cfg.checkpoint.every == 0 or step == stop
            stopping = preempt.check(step, on_schedule or step % t.log_every == 0)
            if ckpt and (on_schedule or stopping):
                guard.check()  # never a checkpoint after a step the run must stop on
                ckpt.save(state, source.state(), config_dict)
            if stopping:
                progress.write(f"SIGTERM: saved step {step}, stopping")
                stopped = True
                break
    finally:
        preempt.restore()
        progress.close()
        logger.close()
        if ckpt:
            ckpt.close()
    return state, history, last_eval, stopped


def _last_good(ckpt) -> str:
    if ckpt is None:
        return "none (checkpoint.enabled is false)"
    step = ckpt.latest_step()
    return "none yet" if step is None else str(ckpt.directory / str(step))


def _sample(r: _Run, params) -> str:
    """Step 6: what the model writes now, from ``train.sample_prompt`` (as a user message for chat objectives)."""
    t, tok, obj = r.cfg.train, r.tokenizer, r.objective
    params = obj.sample_params(r.params(params))
    prompt = obj.prompt(t.sample_prompt) if obj.prompt else [tok.bos_id] + tok.encode(t.sample_prompt)
    n_new = max(1, min(t.sample_tokens, r.spec.max_seq_len - len(prompt)))
    out = generate(Transformer(r.spec), params, [prompt], jax.random.PRNGKey(r.cfg.seed + 1),
                   Sampling(temperature=t.sample_temperature, max_new_tokens=n_new),
                   stop_ids=(*obj.stop_ids, tok.eos_id), batch_multiple=r.layout.batch_divisor,
                   vocab_size=tok.vocab_size)
    new = [i for i in out[0]["tokens"] if i not in (*obj.stop_ids, tok.eos_id)]
    if obj.prompt:
        text = f"user: {t.sample_prompt}\nassistant: {tok.decode(new)}"
    else:
        text = tok.decode(prompt[1:] + new)
    r.say.write(f"sample ({t.sample_tokens} tokens, temperature {t.sample_temperature}):\n{text}")
    return text


def train(cfg: Config, devices=None) -> TrainResult:
    """Run (or resume) the configured training; ``devices`` defaults to all of them."""
    t0 = time.perf_counter()
    r = _prepare(cfg, devices)
    obj = r.objective
    with r.layout.context():
        state, frozen, shardings, abstract, ckpt = _initial_state(r)
        if obj.on_policy:
            obj.train_batches.set_params(r.params(state.params))
        first = next(obj.train_batches)
        compiled, eval_fn, at_peak = _compile(r, state, frozen, shardings, abstract, first)
        try:
            state, history, last_eval, preempted = _loop(r, state, frozen, compiled, eval_fn, ckpt, first, at_peak)
        except NonFiniteStop:
            if jax.process_index() == 0:
                _write_summary(r.run_dir, (ckpt.latest_step() if ckpt else None) or 0, time.perf_counter() - t0, False,
                               stopped="non-finite loss or gradient norm (train.nonfinite)")
            raise
        if obj.finish and not preempted:
            line = obj.finish(r.params(state.params), r.run_dir, r.layout)
            if line:
                r.say.write(line)
        sampling = cfg.train.sample_tokens and obj.sample_params and not preempted
        text = _sample(r, state.params) if sampling else None
    if jax.process_index() == 0:
        _write_summary(r.run_dir, int(jax.device_get(state.step)), time.perf_counter() - t0, not preempted)
    return TrainResult(state, history, last_eval, text, r.run_dir)


def _write_summary(run_dir: Path, step: int, seconds: float, finished: bool, stopped: str | None = None) -> None:
    """``summary.json``: the step reached (checkpointed, when ``stopped`` names why the run ended early)
    and the wall time of every invocation (a resumed run adds one)."""
    path = run_dir / "summary.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    sessions = [*old.get("sessions", []), round(seconds, 2)]
    out = {"step": step, "finished": finished, "wall_s": round(sum(sessions), 2), "sessions": sessions}
    if stopped:
        out["stopped"] = stopped
    path.write_text(json.dumps(out, indent=1) + "\n")
