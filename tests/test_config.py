"""Config: base inheritance, overrides with coercion, and errors that name key, value and what is allowed."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jaxllm.config import dump_yaml, load_config
from jaxllm.config.schema import Config
from jaxllm.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _write(path, text):
    path.write_text(text)
    return path


def test_base_inheritance_and_overrides(tmp_path):
    _write(tmp_path / "model.yaml", "model: {family: llama, n_layers: 3, d_model: 64, n_heads: 4}\ntrain: {steps: 10}\n")
    _write(tmp_path / "mid.yaml", "base: model.yaml\ntrain: {batch_size: 4}\n")
    top = _write(tmp_path / "top.yaml", "base: [mid.yaml]\nmodel: {n_layers: 5}\noptimizer: {warmup_steps: 1}\n")
    cfg = load_config(top, ["train.steps=20", "optimizer.lr=1e-3", "mesh.rules=[[vocab, null]]", "model.n_kv_heads=null",
                            "checkpoint.async_save=false", "data.paths=[a.txt]", "data.source=text"])
    assert cfg.model.family == "llama" and cfg.model.n_layers == 5 and cfg.model.d_model == 64
    assert cfg.train.batch_size == 4 and cfg.train.steps == 20
    assert cfg.optimizer.lr == 1e-3 and isinstance(cfg.optimizer.lr, float)
    assert cfg.mesh.rules == [["vocab", None]]
    assert cfg.model.n_kv_heads is None and cfg.checkpoint.async_save is False
    assert cfg.data.paths == ["a.txt"]


def test_dump_round_trips(tmp_path):
    cfg = load_config(ROOT / "configs/pretrain/demo.yaml", ["train.steps=77"])
    again = load_config(_write(tmp_path / "c.yaml", dump_yaml(cfg)))
    assert again == cfg


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_loads(path):
    if path.parent.name == "pipeline":  # a pipeline config names one training config per stage
        from jaxllm.pipeline.run import load_pipeline, stage_config
        p = load_pipeline(str(path), [])
        assert all(isinstance(stage_config(p, s), Config) for s in p.stages)
    elif path.parent.name == "sweep":  # a sweep file: every run's config must load
        from jaxllm.sweep.runner import check_configs
        from jaxllm.sweep.spec import load_sweep
        cfgs = check_configs(load_sweep(path))
        assert len(cfgs) > 1 and all(isinstance(c, Config) for c in cfgs.values())
    else:
        assert isinstance(load_config(path), Config)


@pytest.mark.parametrize("override, message", [
    (["model.n_layer=3"], "unknown config key 'model.n_layer'. Did you mean model.n_layers?"),
    (["trian.steps=3"], "unknown config key 'trian'. Did you mean train?"),
    (["train.steps=abc"], "train.steps = 'abc': expected an integer"),
    (["train.steps=0"], "train.steps = 0: must be >= 1"),
    (["optimizer.lr=fast"], "optimizer.lr = 'fast': expected a number"),
    (["model.family=gtp2"], "model.family = 'gtp2': not allowed. Did you mean gpt2? Allowed: gpt2, llama"),
    (["checkpoint.async_save=maybe"], "checkpoint.async_save = 'maybe': expected true or false"),
    (["model.d_model=100"], "model.d_model = 100 is not divisible by model.n_heads = 6"),
    (["mesh.rules=[[vocab, gpu]]"], "unknown mesh axis 'gpu'"),
    (["train.steps"], "expected key=value"),
    (["data.source=text"], "data.paths is empty"),
])
def test_config_errors_name_key_value_and_allowed(override, message):
    with pytest.raises(ConfigError, match=_re(message)):
        load_config(ROOT / "configs/pretrain/demo.yaml", override)


def _re(s):
    import re
    return re.escape(s)


def test_unknown_key_in_yaml_file(tmp_path):
    bad = _write(tmp_path / "bad.yaml", "train:\n  stpes: 10\n")
    with pytest.raises(ConfigError, match="unknown config key 'train.stpes'. Did you mean train.steps?"):
        load_config(bad)


def test_base_cycle_and_missing_base(tmp_path):
    _write(tmp_path / "a.yaml", "base: b.yaml\n")
    _write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    _write(tmp_path / "c.yaml", "base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="base: 'nowhere.yaml' not found"):
        load_config(tmp_path / "c.yaml")


@pytest.mark.parametrize("args, message", [
    (["train", "configs/pretrain/demo.yaml", "model.n_layer=3"], "Did you mean model.n_layers?"),
    (["train", "configs/pretrain/demo.yaml", "train.batch_size=big"], "train.batch_size = 'big': expected an integer"),
    (["train", "configs/pretrain/demo.yaml", "optimizer.b1=1.5"], "optimizer.b1 = 1.5: must be <= 1.0"),
    (["train", "configs/pretrain/missing.yaml"], "config file not found: 'configs/pretrain/missing.yaml'"),
    (["train", "configs/pretrain/demo.yaml", "data.source=text", "data.paths=[/nonexistent/x.txt]"],
     "data.paths: file not found: /nonexistent/x.txt"),
    (["train", "configs/pretrain/demo.yaml", "init_from=/nonexistent/run"], "init_from = '/nonexistent/run': no such directory"),
    (["train", "sft/demo", "init_from=runs/never-trained"], "Train that run first (`jaxllm train pretrain/demo`"),
    (["train", "configs/pretrain/demo.yaml", "mesh.data=3"], "mesh: data*fsdp*tensor = 3*1*1 = 3 but 1 devices are visible"),
])
def test_cli_errors_exit_2_and_write_nothing(tmp_path, args, message):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "jaxllm.cli", *args, f"run.dir={run_dir}"], cwd=ROOT,
                          capture_output=True, text=True, env=_single_device_env(), timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert not run_dir.exists()


def test_cli_config_show_prints_resolved_yaml():
    proc = subprocess.run([sys.executable, "-m", "jaxllm.cli", "config", "show", "pretrain/demo", "train.steps=123"],
                          cwd=ROOT, capture_output=True, text=True, env=_single_device_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)
    assert shown["train"]["steps"] == 123 and shown["model"]["family"] == "gpt2"


def _single_device_env():
    import os
    env = dict(os.environ)
    env["XLA_FLAGS"] = ""
    env["JAX_PLATFORMS"] = "cpu"
    return env


def test_config_reference_is_current():
    """docs/CONFIG.md is generated from the schema; regenerate with `jaxllm config docs > docs/CONFIG.md`."""
    from jaxllm.config.docs import config_markdown
    assert (ROOT / "docs" / "CONFIG.md").read_text() == config_markdown()
