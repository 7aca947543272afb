"""``jaxllm pipeline CONFIG``: pre-training -> SFT -> reward model -> PPO, then a report.

A pipeline config names one training config per stage and where the runs go:

    dir: runs/pipeline-demo
    stages: {pretrain: pretrain/demo, sft: sft/demo, reward: reward/demo, ppo: ppo/demo}
    report: {eval_prompts: 200, examples: 2}

Stage ``s`` trains into ``<dir>/<s>``, initialised from the previous stage's
run (``init_from``; PPO's critic and reward model from ``<dir>/reward``), so the
stage configs stay usable on their own. A stage whose run already reached its
``train.steps`` is skipped; an interrupted one resumes. Command-line overrides
are ``STAGE.key=value`` (``sft.train.steps=50``) or top-level (``dir=...``,
``report.eval_prompts=40``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import yaml

from jaxllm.errors import ConfigError, UserError

STAGES = ("pretrain", "sft", "reward", "ppo")


@dataclasses.dataclass
class PipelineConfig:
    dir: Path
    stages: dict[str, str]
    overrides: dict[str, list[str]]
    eval_prompts: int = 200
    examples: int = 2


def _resolve_stage_path(value: str, base: Path) -> str:
    p = Path(value)
    if p.suffix in (".yaml", ".yml") and not p.is_absolute() and (base / p).is_file():
        return str(base / p)
    return value


def load_pipeline(path: str, overrides: list[str]) -> PipelineConfig:
    from jaxllm.config.load import resolve_config_path

    file = resolve_config_path(path)
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{file}: not valid YAML ({e}).") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("stages"), dict):
        raise ConfigError(f"{file}: a pipeline config needs 'stages: {{pretrain: ..., sft: ..., reward: ..., ppo: ...}}'.")
    unknown = set(raw) - {"dir", "stages", "report"}
    if unknown:
        raise ConfigError(f"{file}: unknown key(s) {sorted(unknown)}; a pipeline config has dir, stages and report.")
    missing = [s for s in STAGES if s not in raw["stages"]]
    if missing or set(raw["stages"]) - set(STAGES):
        raise ConfigError(f"{file}: stages must be exactly {', '.join(STAGES)} (missing {missing}).")
    report = raw.get("report") or {}
    cfg = PipelineConfig(Path(raw.get("dir", "runs/pipeline")),
                         {s: _resolve_stage_path(str(raw["stages"][s]), file.parent) for s in STAGES},
                         {s: [] for s in STAGES}, int(report.get("eval_prompts", 200)), int(report.get("examples", 2)))
    for o in overrides:
        key, eq, value = o.partition("=")
        head, _, rest = key.partition(".")
        if not eq:
            raise ConfigError(f"override {o!r}: expected key=value (e.g. sft.train.steps=50).")
        if head in STAGES and rest:
            cfg.overrides[head].append(f"{rest}={value}")
        elif head == "distributed" and rest:  # how this process joins the job: the same for every stage
            for s in STAGES:
                cfg.overrides[s].append(o)
        elif key == "dir":
            cfg.dir = Path(value)
        elif key in ("report.eval_prompts", "report.examples"):
            setattr(cfg, rest, int(value))
        else:
            raise ConfigError(f"override {o!r}: use STAGE.key=value with STAGE one of {', '.join(STAGES)}, "
                              "or dir=..., report.eval_prompts=..., report.examples=..., distributed.KEY=...")
    return cfg


def stage_config(p: PipelineConfig, stage: str):
    """The training config of ``stage``, wired to the previous stage's run."""
    from jaxllm.config import load_config

    i = STAGES.index(stage)
    wiring = [f"run.dir={p.dir / stage}"]
    if i > 0:
        wiring.append(f"init_from={p.dir / STAGES[i - 1 if stage != 'ppo' else 1]}")
    if stage == "ppo":
        wiring.append(f"objective.ppo.reward_from={p.dir / 'reward'}")
    return load_config(p.stages[stage], wiring + p.overrides[stage])


def finished(cfg) -> bool:
    from jaxllm.train.checkpoint import latest_step

    return latest_step(Path(cfg.run.dir) / "checkpoints") == cfg.train.steps


def run_pipeline(path: str, overrides: list[str]) -> Path:
    """Train every stage (skipping finished ones), then write ``<dir>/report.md``; returns its path."""
    import jax

    from jaxllm.parallel.distributed import initialize
    from jaxllm.pipeline.report import write_report
    from jaxllm.train.loop import train

    p = load_pipeline(path, overrides)
    cfgs = {s: stage_config(p, s) for s in STAGES}  # every config error before any training
    initialize(cfgs["pretrain"].distributed)
    say = print if jax.process_index() == 0 else (lambda *a, **k: None)
    times = {}
    for s in STAGES:
        cfg = cfgs[s]
        if finished(cfg):
            say(f"== {s}: {cfg.run.dir} already reached step {cfg.train.steps}; skipped", flush=True)
            continue
        say(f"== {s}: training {cfg.run.dir} ({cfg.objective.name}, {cfg.train.steps} steps)", flush=True)
        t0 = time.perf_counter()
        train(cfg)
        times[s] = time.perf_counter() - t0
    if not all(finished(cfgs[s]) for s in STAGES):
        raise UserError("a stage stopped before its last step (SIGTERM or train.stop_at_step); run the pipeline "
                        "again to resume it.")
    say("== report: held-out prompts, every stage", flush=True)
    t0 = time.perf_counter()
    out = write_report(p, cfgs, times)
    say(f"report written to {out} ({time.perf_counter() - t0:.0f}s)", flush=True)
    return out
