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

import jax
import numpy as np

from jaxllm.config import dump_yaml, to_dict
from jaxllm.config.schema import Config
from jaxllm.errors import ConfigError, UserError
from jaxllm.model import Transformer, param_count, resolve_spec
from jaxllm.model.decode import Sampling, generate
from jaxllm.objectives.base import Objective, ObjectiveSpec, Params
from jaxllm.objectives.registry import get_spec
from jaxllm.parallel.distributed import check_same_everywhere, is_multiprocess, preemption_service_running
from jaxllm.parallel.layout import Layout
from jaxllm.parallel.mesh import describe, make_mesh
from jaxllm.pretrained import load_params
from jaxllm.train.checkpoint import Checkpointer
from jaxllm.train.metrics import MetricsLogger, Progress, peak_flops_per_device
from jaxllm.train.optimizer import make_optimizer
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


def _prepare(cfg: Config, devices) -> _Run:
    """Steps 1-2: every check a user can fail runs before the run dir is touched."""
    t = cfg.train
    mesh = make_mesh(cfg.mesh, devices)
    layout = Layout(mesh, cfg.mesh.rules)
    div = layout.batch_divisor
    if (t.batch_size // t.grad_accum) % div:
        raise ConfigError(f"train.batch_size / train.grad_accum = {t.batch_size // t.grad_accum} sequences per micro-batch "
                          f"cannot split over the {div} batch shards of the mesh; make it a multiple of {div}.")
    _check_init_from(cfg.init_from)
    run_dir = Path(cfg.run.dir)
    ospec: ObjectiveSpec = get_spec(cfg.objective.name)
    data = ospec.load(cfg, run_dir)
    tokenizer = data.tokenizer
    check_same_everywhere("the tokenizer", tokenizer.model_proto)
    spec = resolve_spec(cfg.model, tokenizer.vocab_size)
    model = ospec.model(spec)
    objective = ospec.build(cfg, model, data, jax.process_index(), jax.process_count())
    tx, schedule = make_optimizer(cfg.optimizer, t.steps)

    is_main = jax.process_index() == 0
    if is_main:  # the run dir is self-contained: config and tokenizer beside the checkpoints
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_yaml(cfg))
        if not (run_dir / "tokenizer.model").exists():
            tokenizer.save(run_dir / "tokenizer.model")
    say = Progress(t.steps, 0, "off", is_main)
    say.write(describe(mesh))
    for line in ospec.report(data.stats):
        say.write(line)
    return _Run(cfg, layout, run_dir, tokenizer, spec, model, objective, tx, schedule, say)


def _place(p: Params, fresh, layout: Layout, abstract=None):
    """One declared `Params` on the mesh: read from its checkpoint, or copied from the fresh parameters."""
    if p.path is None:
        return jax.tree.map(jax.numpy.copy, fresh if p.copy is None else fresh[p.copy])
    return p.select(load_params(p.path, abstract if abstract is not None else layout.abstract_params(p.module)))


def _initial_state(r: _Run):
    """Step 3: resume from the run dir, else a fresh sharded init (with ``init_from`` parameters)."""
    cfg, obj, layout = r.cfg, r.objective, r.layout
    init, shardings, abstract = sharded_init(r.model, r.tx, cfg.train.seq_len, layout.mesh, layout.rules)
    ckpt = Checkpointer(r.run_dir / "checkpoints", cfg.checkpoint) if cfg.checkpoint.enabled else None
    latest = ckpt.latest_step() if ckpt else None
    fresh = None  # the initial trainable parameters, where a frozen copy of them is declared
    if latest is not None:
        state, data_state = ckpt.restore(abstract, latest)
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
    if obj.on_policy:
        r.say.write(obj.train_batches.attach(layout, frozen))
    return state, frozen, shardings, abstract, ckpt


def _compile(r: _Run, state, frozen, shardings, abstract, first_batch):
    """Step 4: ahead-of-time compile of train and eval steps, and the pre-flight report.

    Also returns the seconds one step would take at peak FLOP/s on all devices (MFU = that / step time).
    """
    layout, t, spec, obj = r.layout, r.cfg.train, r.spec, r.objective
    step = make_train_step(obj.loss, r.tx, r.schedule, t.grad_accum, dropout=spec.dropout > 0)
    jitted = jit_train_step(step, layout.mesh, layout.rules, shardings, first_batch, frozen)
    eval_fn = None
    if obj.evaluate is None:
        eval_fn = jit_eval_step(make_eval_step(obj.loss), layout.mesh, layout.rules, shardings.params,
                                obj.eval_batches[0], frozen)
    t0 = time.perf_counter()
    compiled = jitted.lower(state, layout.global_batch(first_batch), frozen).compile()
    flops_tok = obj.flops_per_token(spec, t.seq_len)
    peak, peak_src = peak_flops_per_device(t.peak_flops_per_device)
    r.say.write(f"model: {spec.family}, {param_count(abstract.params) / 1e6:.2f}M parameters, {spec.n_layers} layers x "
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
    head = f"eval loss {ev['eval_loss']:.4f}  ppl {ev['eval_ppl']:.2f}" if "eval_loss" in ev else ""
    rest = "  ".join(f"{k[5:]} {v:.4g}" for k, v in ev.items() if k not in ("eval_loss", "eval_ppl"))
    return "  ".join(x for x in (head, rest) if x)


def _loop(r: _Run, state, frozen, compiled, eval_fn, ckpt, first_batch, step_seconds_at_peak):
    """Step 5: train until train.steps (or stop_at_step, or SIGTERM); log, evaluate, checkpoint."""
    cfg, t, layout, obj = r.cfg, r.cfg.train, r.layout, r.objective
    is_main = jax.process_index() == 0
    start = int(jax.device_get(state.step))
    stop = min(t.stop_at_step or t.steps, t.steps)
    logger = MetricsLogger(r.run_dir, cfg.log.tensorboard, is_main)
    progress = Progress(t.steps, start, t.progress, is_main)
    preempt, stopped = _Preemption(is_multiprocess()), False
    history, last_eval, config_dict = [], {}, to_dict(cfg)
    n_dev = layout.mesh.devices.size
    batch = layout.global_batch(first_batch)
    t_last, steps_since, step = time.perf_counter(), 0, start
    source = obj.train_batches
    if obj.on_policy:
        source.metrics()  # drops the time of the first rollout (made before the step compiled)
    if obj.evaluate and start == 0 and t.eval_every:  # a baseline for the curves (cheap: no loss eval)
        logger.log(0, obj.evaluate(state.params, frozen))
    try:
        while step < stop:
            if batch is None:  # fetched here, so a checkpoint's data position counts only consumed batches
                if obj.on_policy:
                    source.set_params(state.params)
                batch = layout.global_batch(next(source))
            state, metrics = compiled(state, batch, frozen)
            batch = None
            step += 1
            steps_since += 1
            if step % t.log_every == 0 or step == stop:
                m = {k: float(v) for k, v in layout.to_host(metrics).items() if k != "denominator"}
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
                    last_eval = obj.evaluate(state.params, frozen)
                else:
                    last_eval = _evaluate(eval_fn, state.params, frozen, obj.eval_batches, layout)
                logger.log(step, last_eval)
                line = _eval_line(last_eval)
                if line:
                    progress.write(f"step {step:>6}  {line}")
                t_last = time.perf_counter()  # keep eval time out of the throughput figures
            on_schedule = step % cfg.checkpoint.every == 0 or step == stop
            stopping = preempt.check(step, on_schedule or step % t.log_every == 0)
            if ckpt and (on_schedule or stopping):
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


def _sample(r: _Run, params) -> str:
    """Step 6: what the model writes now, from ``train.sample_prompt`` (as a user message for chat objectives)."""
    t, tok, obj = r.cfg.train, r.tokenizer, r.objective
    params = obj.sample_params(params)
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
            obj.train_batches.set_params(state.params)
        first = next(obj.train_batches)
        compiled, eval_fn, at_peak = _compile(r, state, frozen, shardings, abstract, first)
        state, history, last_eval, preempted = _loop(r, state, frozen, compiled, eval_fn, ckpt, first, at_peak)
        if obj.finish and not preempted:
            line = obj.finish(state.params, r.run_dir, r.layout)
            if line:
                r.say.write(line)
        sampling = cfg.train.sample_tokens and obj.sample_params and not preempted
        text = _sample(r, state.params) if sampling else None
    if jax.process_index() == 0:
        _write_summary(r.run_dir, int(jax.device_get(state.step)), time.perf_counter() - t0, not preempted)
    return TrainResult(state, history, last_eval, text, r.run_dir)


def _write_summary(run_dir: Path, step: int, seconds: float, finished: bool) -> None:
    """``summary.json``: the step reached and the wall time of every invocation (a resumed run adds one)."""
    path = run_dir / "summary.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    sessions = [*old.get("sessions", []), round(seconds, 2)]
    path.write_text(json.dumps({"step": step, "finished": finished, "wall_s": round(sum(sessions), 2),
                                "sessions": sessions}, indent=1) + "\n")
