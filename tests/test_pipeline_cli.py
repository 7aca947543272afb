"""`jaxllm pipeline` on the tiny model: stage wiring (SFT -> reward trunk, reward -> critic, SFT -> policy and
reference), skipping finished stages, the report; and config mistakes named before any training."""

import json

import jax
import numpy as np
import pytest

from conftest import ROOT
from jaxllm.errors import ConfigError

STAGE_SETTINGS = {
    "pretrain": ["objective:\n  name: pretrain", "train:\n  steps: 6"],
    "sft": ["objective:\n  name: sft", "data:\n  builtin:\n    conversations: 300\n    behaviour_chats: 100",
            "train:\n  steps: 4"],
    "reward": ["objective:\n  name: reward\ndata:\n  builtin:\n    rankings: 200", "train:\n  steps: 4"],
    "ppo": ["objective:\n  name: ppo\n  ppo:\n    rollout_prompts: 16\n    max_new_tokens: 8\n    eval_prompts: 8",
            "train:\n  steps: 4"],
    "dpo_listwise": ["objective:\n  name: dpo\n  dpo:\n    ranking: plackett_luce\ndata:\n  builtin:\n    rankings: 200",
                     "train:\n  steps: 4"],
    "grpo": ["objective:\n  name: grpo\n  grpo:\n    group_size: 4\n    prompts_per_rollout: 4\n    max_new_tokens: 8\n"
             "    eval_prompts: 8\ndata:\n  builtin:\n    task_questions: 200", "train:\n  steps: 4"],
}


def _write_pipeline(tmp_path):
    for stage, parts in STAGE_SETTINGS.items():
        text = f"base: {ROOT / 'configs/model/tiny.yaml'}\n" + "\n".join(parts) + "\n"
        (tmp_path / f"{stage}.yaml").write_text(text)
    common = ["data.builtin.chars=60000", "data.tokenizer.vocab_size=400", "data.eval_fraction=0.1",
              "train.seq_len=48", "train.batch_size=8", "train.log_every=2", "train.eval_every=0",
              "train.eval_batches=1", "train.sample_tokens=0", "train.progress=off", "optimizer.warmup_steps=1",
              "log.tensorboard=false"]
    (tmp_path / "pipe.yaml").write_text(
        f"dir: {tmp_path / 'runs'}\nstages:\n" + "".join(f"  {s}: {s}.yaml\n" for s in STAGE_SETTINGS)
        + "report:\n  eval_prompts: 16\n  unseen_prompts: 12\n  examples: 1\n")
    return str(tmp_path / "pipe.yaml"), [f"{s}.{o}" for s in STAGE_SETTINGS for o in common]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny pipeline, run once in this process (8 devices): its dir, pipeline file, overrides and report."""
    from jaxllm.pipeline.run import run_pipeline

    tmp_path = tmp_path_factory.mktemp("pipe")
    path, overrides = _write_pipeline(tmp_path)
    return tmp_path, path, overrides, run_pipeline(path, overrides)


@pytest.mark.slow
def test_pipeline_wires_stages_and_writes_a_report(finished, capsys):
    from jaxllm.pipeline.run import load_pipeline, run_pipeline, stage_config
    from jaxllm.pretrained import load_params
    from jaxllm.train.loop import _initial_state, _prepare

    tmp_path, path, overrides, report = finished
    text = report.read_text()
    for row in ("| pretrain |", "| sft |", "| ppo |", "| dpo_listwise |", "| reward model | held-out pairwise accuracy",
                "| dpo_listwise (implicit reward) | held-out pairwise accuracy", "| grpo |",
                "arithmetic (held-out) | + | - | * |", "## Verdicts: ppo", "## Verdicts: grpo", "learning signal in"):
        assert row in text
    assert (tmp_path / "runs" / "ppo_curves.svg").read_text().startswith("<svg")
    assert (tmp_path / "runs" / "grpo_curves.svg").read_text().startswith("<svg")
    grpo_row = next(line for line in text.splitlines() if line.startswith("| grpo |")).split("|")[-5:-1]
    assert all(0.0 <= float(c) <= 1.0 for c in grpo_row), grpo_row  # held-out arithmetic: overall, + - *
    # the unseen-phrasing table: every stage again, on prompts in the held-out template families
    from jaxllm.world.phrasings import heldout_families
    rows = _report_rows(text)
    assert {"sft/unseen", "ppo/unseen", "grpo/unseen"} <= set(rows) and "## Examples (unseen phrasing)" in text
    unseen_section = text.split("### Unseen phrasing")[1]
    assert "12 held-out prompts" in unseen_section  # report.unseen_prompts
    assert ", ".join(heldout_families(0)) in unseen_section.splitlines()[2]
    assert any(f"({f}):" in unseen_section for f in heldout_families(0))  # examples name their family
    ppo_metrics = [json.loads(line) for line in (tmp_path / "runs/ppo/metrics.jsonl").read_text().splitlines()]
    assert any("eval_judge" in r and "eval_kl" in r for r in ppo_metrics)
    assert (tmp_path / "runs/reward/reward_stats.json").is_file()

    # inference loads a PPO run's policy, and says a reward model does not generate
    from jaxllm.errors import UserError
    from jaxllm.infer.load import load_checkpoint
    from jaxllm.model.decode import Sampling
    loaded = load_checkpoint(tmp_path / "runs/ppo")
    assert isinstance(loaded.ask("What is the capital of France?", Sampling(0.0, max_new_tokens=4),
                                 jax.random.PRNGKey(0)), str)
    with pytest.raises(UserError, match="is a reward model"):
        load_checkpoint(tmp_path / "runs/reward")

    capsys.readouterr()
    run_pipeline(path, overrides)  # everything finished: every stage is skipped, the report is rewritten
    assert capsys.readouterr().out.count("skipped") == 6

    # a fresh PPO run starts its policy from SFT and its critic from the reward model
    p = load_pipeline(path, overrides + [f"ppo.run.dir={tmp_path / 'fresh'}"])
    cfg = stage_config(p, "ppo")
    r = _prepare(cfg, None)
    with r.layout.context():
        state, frozen, _, abstract, _ = _initial_state(r)
        sft = load_params(str(tmp_path / "runs/sft"), abstract.params["policy"])
        rm = load_params(str(tmp_path / "runs/reward"), abstract.params["critic"])
        engine = r.objective.train_batches.engine
    assert engine.ref is frozen["reference"] and engine.rm is frozen["reward_model"]  # the placed frozen models
    for got, want in ((state.params["policy"], sft), (state.params["critic"], rm), (engine.ref, sft), (engine.rm, rm)):
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), got, want)
    assert cfg.init_from == str(tmp_path / "runs/sft") and cfg.objective.ppo.reward_from == str(tmp_path / "runs/reward")

    # a fresh reward model takes its trunk from SFT (the head is new)
    cfg = stage_config(load_pipeline(path, overrides + [f"reward.run.dir={tmp_path / 'fresh-rm'}"]), "reward")
    r = _prepare(cfg, None)
    with r.layout.context():
        state, *_ = _initial_state(r)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), state.params["trunk"], sft)


@pytest.mark.parametrize("text, overrides, message", [
    ("stages: {pretrain: a, sft: b, reward: c}\n", [], "stages need pretrain, sft and at least one policy stage"),
    ("stages: {pretrain: a, sft: b, ppo: d}\n", [], "a ppo stage needs the reward stage"),
    ("stages: {pretrain: a, sft: b, sft_x: c, dpo: d}\n", [], "not a stage name: ['sft_x']"),
    ("stages: {pretrain: a, sft: b, reward: c, ppo: d}\nrport: {}\n", [], "unknown key(s) ['rport']"),
    ("stages: {pretrain: pretrain/demo, sft: sft/demo, reward: reward/demo, ppo: ppo/demo}\n", ["sft.train.steps"],
     "expected key=value"),
    ("stages: {pretrain: pretrain/demo, sft: sft/demo, reward: reward/demo, ppo: ppo/demo}\n", ["dpo.x=1"],
     "use STAGE.key=value"),
])
def test_pipeline_config_mistakes_are_named(tmp_path, text, overrides, message):
    from jaxllm.pipeline.run import load_pipeline
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_pipeline(str(tmp_path / "p.yaml"), overrides)
    assert message in str(e.value)


def test_all_overrides_set_every_stage_and_a_later_stage_override_wins():
    from jaxllm.pipeline.run import load_pipeline, stage_config
    p = load_pipeline("pipeline/demo", ["all.seed=3", "all.data.builtin.seed=3", "sft.seed=5"])
    cfgs = {s: stage_config(p, s) for s in ("pretrain", "sft", "reward", "ppo")}
    assert {s: (c.seed, c.data.builtin.seed) for s, c in cfgs.items()} == {
        "pretrain": (3, 3), "sft": (5, 3), "reward": (3, 3), "ppo": (3, 3)}


def test_a_stage_config_mistake_stops_before_training(tmp_path):
    from jaxllm.pipeline.run import run_pipeline
    path, overrides = _write_pipeline(tmp_path)
    with pytest.raises(ConfigError, match="objective.ppo.rollout_prompts = 12 is not a multiple"):
        run_pipeline(path, overrides + ["ppo.objective.ppo.rollout_prompts=12"])
    assert not (tmp_path / "runs").exists()


def _report_rows(text: str) -> dict[str, list[float]]:
    """Each stage's cells in the seen-phrasing table (``stage``) and the unseen one (``stage/unseen``)."""
    rows = {}
    seen, unseen = text.split("### Unseen phrasing")
    for section, suffix in ((seen, ""), (unseen, "/unseen")):
        for line in section.splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0] in ("pretrain", "sft", "ppo", "grpo"):
                rows[cells[0] + suffix] = [float(c) for c in cells[1:]]
    return rows


@pytest.mark.slow
def test_ppo_and_the_report_on_two_processes_match_one_process(finished, tmp_path):
    """The finished pipeline's stages but PPO, copied; PPO and the report rerun as 2 processes x 4 devices
    (rollouts generated on every process, each training on its slice) give the one-process figures."""
    import shutil
    import subprocess
    import sys

    src, path, overrides, report = finished
    runs = tmp_path / "runs"
    shutil.copytree(src / "runs", runs, ignore=shutil.ignore_patterns("ppo", "report.md", "*.svg"))
    out = subprocess.run([sys.executable, "-m", "jaxllm", "launch", "--local", "2", "pipeline", path, *overrides,
                          f"dir={runs}"], env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:]
    assert out.stdout.count("already reached step") == 5 and "2 process(es)" in out.stdout
    one = [json.loads(x) for x in (src / "runs/ppo/metrics.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (runs / "ppo/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in one] == [r["step"] for r in two]
    for a, b in zip(one, two):
        for k in ("loss", "score", "rm_score", "kl", "value_loss", "eval_rm_score", "eval_judge"):
            if k in a:
                np.testing.assert_allclose(b[k], a[k], rtol=1e-3, atol=1e-4, err_msg=f"step {a['step']} {k}")
    want, got = _report_rows(report.read_text()), _report_rows((runs / "report.md").read_text())
    for stage in want:
        np.testing.assert_allclose(got[stage], want[stage], atol=0.011, err_msg=stage)
