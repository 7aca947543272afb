"""``jaxllm pipeline CONFIG``: pre-training -> SFT -> (reward model -> PPO) and/or DPO, then a report.

A pipeline config names one training config per stage and where the runs go:

    dir: runs/pipeline-demo
    stages: {pretrain: pretrain/demo, sft: sft/demo, reward: reward/demo, ppo: ppo/demo}
    report: {eval_prompts: 200, unseen_prompts: 200, examples: 2}

A stage is named by its kind (pretrain, sft, reward, ppo, dpo, grpo), optionally with a label
(``dpo_pairs``, ``ppo_kl02``), so one pipeline can branch several policies off the same SFT stage
(`configs/pipeline/compare.yaml`: PPO and DPO, listwise and pairwise). pretrain and sft are
required, then any policy stages; PPO needs the reward stage. Stage ``s`` trains into ``<dir>/<s>``:
sft from pretrain, reward and every policy stage from sft (``init_from``), PPO's critic and
reward model from ``<dir>/reward``; so the stage configs stay usable on their own. A stage
whose run already reached its ``train.steps`` is skipped; an interrupted one resumes.
Command-line overrides are ``STAGE.key=value`` (``sft.train.steps=50``), ``all.key=value`` for every stage
(``all.seed=1 all.data.builtin.seed=1``: a second seed of the whole job) or top-level (``dir=...``,
``report.eval_prompts=40``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import yaml

from jaxllm.errors import ConfigError, UserError

KINDS = ("pretrain", "sft", "reward", "ppo", "dpo", "grpo")
POLICY_KINDS = ("ppo", "dpo", "grpo")
STAGES = ("pretrain", "sft", "reward", "ppo")  # the classic pipeline (configs/pipeline/demo.yaml)


def stage_kind(name: str) -> str:
    return name.split("_", 1)[0]


@dataclasses.dataclass
class PipelineConfig:
    dir: Path
    stages: dict[str, str]
    overrides: dict[str, list[str]]
    eval_prompts: int = 200
    examples: int = 2
    unseen_prompts: int | None = None  # held-out prompts in unseen template families; None: eval_prompts


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
    names = _check_stages(file, list(raw["stages"]))
    report = raw.get("report") or {}
    cfg = PipelineConfig(Path(raw.get("dir", "runs/pipeline")),
                         {s: _resolve_stage_path(str(raw["stages"][s]), file.parent) for s in names},
                         {s: [] for s in names}, int(report.get("eval_prompts", 200)), int(report.get("examples", 2)))
    bad = set(report) - {"eval_prompts", "unseen_prompts", "examples"}
    if bad:
        raise ConfigError(f"{file}: unknown report key(s) {sorted(bad)}; report has eval_prompts, unseen_prompts and "
                          "examples.")
    if report.get("unseen_prompts") is not None:
        cfg.unseen_prompts = int(report["unseen_prompts"])
    for o in overrides:
        key, eq, value = o.partition("=")
        head, _, rest = key.partition(".")
        if not eq:
            raise ConfigError(f"override {o!r}: expected key=value (e.g. sft.train.steps=50).")
        if head in cfg.stages and rest:
            cfg.overrides[head].append(f"{rest}={value}")
        elif head == "distributed" and rest:  # how this process joins the job: the same for every stage
            for s in cfg.stages:
                cfg.overrides[s].append(o)
        elif head == "all" and rest:
            for s in cfg.stages:
                cfg.overrides[s].append(f"{rest}={value}")
        elif key == "dir":
            cfg.dir = Path(value)
        elif key in ("report.eval_prompts", "report.examples", "report.unseen_prompts"):
            setattr(cfg, rest, int(value))
        else:
            raise ConfigError(f"override {o!r}: use STAGE.key=value with STAGE one of {', '.join(cfg.stages)}, "
                              "all.key=value for every stage, or dir=..., report.eval_prompts=..., report.unseen_prompts=..., "
                              "report.examples=..., distributed.KEY=...")
    return cfg


def _check_stages(file: Path, names: list[str]) -> list[str]:
    """Stage names in training order: pretrain, sft, reward (if any), then the policy stages as listed."""
    bad = [n for n in names if stage_kind(n) not in KINDS or (stage_kind(n) in ("pretrain", "sft", "reward") and n != stage_kind(n))]
    kinds = [stage_kind(n) for n in names]
    if bad or "pretrain" not in names or "sft" not in names or not any(k in POLICY_KINDS for k in kinds):
        raise ConfigError(f"{file}: stages need pretrain, sft and at least one policy stage (ppo, dpo, grpo, or "
                          f"ppo_<label>, dpo_<label>, grpo_<label> to branch several off SFT){f'; not a stage name: {bad}' if bad else ''}; "
                          f"got {names}. The classic pipeline is exactly {', '.join(STAGES)}.")
    if "ppo" in kinds and "reward" not in names:
        raise ConfigError(f"{file}: a ppo stage needs the reward stage (its reward model and critic).")
    return [n for n in ("pretrain", "sft", "reward") if n in names] + [n for n in names if stage_kind(n) in POLICY_KINDS]


def stage_config(p: PipelineConfig, stage: str):
    """The training config of ``stage``, wired to the stage it starts from."""
    from jaxllm.config import load_config

    kind = stage_kind(stage)
    wiring = [f"run.dir={p.dir / stage}"]
    if kind != "pretrain":
        wiring.append(f"init_from={p.dir / ('pretrain' if kind == 'sft' else 'sft')}")
    if kind == "ppo":
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
    cfgs = {s: stage_config(p, s) for s in p.stages}  # every config error before any training
    initialize(cfgs["pretrain"].distributed)
    say = print if jax.process_index() == 0 else (lambda *a, **k: None)
    times = {}
    for s in p.stages:
        cfg = cfgs[s]
        if finished(cfg):
            say(f"== {s}: {cfg.run.dir} already reached step {cfg.train.steps}; skipped", flush=True)
            continue
        say(f"== {s}: training {cfg.run.dir} ({cfg.objective.name}, {cfg.train.steps} steps)", flush=True)
        t0 = time.perf_counter()
        train(cfg)
        times[s] = time.perf_counter() - t0
    if not all(finished(cfgs[s]) for s in p.stages):
        raise UserError("a stage stopped before its last step (SIGTERM or train.stop_at_step); run the pipeline "
                        "again to resume it.")
    say("== report: held-out prompts, every stage", flush=True)
    t0 = time.perf_counter()
    out = write_report(p, cfgs, times)
    say(f"report written to {out} ({time.perf_counter() - t0:.0f}s)", flush=True)
    return out
