"""Sweeps: expansion and naming, skip/resume, the comparison table against hand-computed statistics,
plots, and a tiny real sweep end to end."""

import csv
import json
import statistics

import numpy as np
import pytest
import yaml

from jaxllm.errors import ConfigError, UserError
from jaxllm.sweep import runner
from jaxllm.sweep.compare import collect, render, table, write_csv
from jaxllm.sweep.spec import load_sweep


def _write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_grid_times_runs_times_seeds_with_readable_names(tmp_path):
    p = _write(tmp_path, f"""
base: pretrain/demo
dir: {tmp_path}/sw
set: {{train.steps: 5}}
grid:
  optimizer.lr: [1.0e-3, 3.0e-3]
  model.n_layers: [2, 4]
runs:
  - {{model.d_model: 64}}
  - {{model.d_model: 128, train.batch_size: 8}}
seeds: [0, 1, 2]
""")
    sw = load_sweep(p)
    assert len(sw.runs) == 2 * 2 * 2 * 3
    assert sw.varied == ["optimizer.lr", "model.n_layers", "model.d_model", "train.batch_size", "seed"]
    first = sw.runs[0]
    assert first.name == "lr=0.001,n_layers=2,d_model=64,seed=0"
    assert first.dir == tmp_path / "sw" / first.name
    assert first.overrides == {"optimizer.lr": 1e-3, "model.n_layers": 2, "model.d_model": 64, "seed": 0}
    assert sw.runs[5].name == "lr=0.001,n_layers=2,d_model=128,batch_size=8,seed=2"
    assert len({r.name for r in sw.runs}) == len(sw.runs)
    assert sw.cli_overrides(first) == ["train.steps=5", "optimizer.lr=0.001", "model.n_layers=2", "model.d_model=64",
                                       "seed=0", f"run.dir={first.dir}"]


def test_names_use_the_whole_key_where_last_parts_clash_and_a_single_setting_is_base(tmp_path):
    sw = load_sweep(_write(tmp_path, "base: pretrain/demo\ngrid: {optimizer.lr: [0.1, 0.2], objective.ppo.lr: [1, 2]}\n"))
    assert sw.runs[0].name == "optimizer.lr=0.1,objective.ppo.lr=1"
    assert load_sweep(_write(tmp_path, "base: pretrain/demo\nset: [train.steps=3]\n", "one.yaml")).runs[0].name == "base"


@pytest.mark.parametrize("text,message", [
    ("grid: {optimizer.lr: [1]}\n", "no `base:`"),
    ("base: x\ngird: {a: [1]}\n", "unknown key 'gird'"),
    ("base: x\ngrid: {optimizer.lr: 0.1}\n", "grid.optimizer.lr must be a non-empty list"),
    ("base: x\nseeds: [a]\n", "seeds must be a list of integers"),
    ("base: x\nruns: [{seed: 1}, {seed: 1}]\n", "two runs would both be named"),
    ("base: x\nset: [train.steps]\n", "set item 'train.steps' is not key=value"),
])
def test_bad_sweep_files_are_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep(_write(tmp_path, text))


def test_every_config_is_checked_before_anything_runs(tmp_path):
    sw = load_sweep(_write(tmp_path, f"base: pretrain/demo\ndir: {tmp_path}/sw\ngrid: {{optimizer.b1: [0.9, 1.5]}}\n"))
    with pytest.raises(UserError, match=r"run b1=1.5: .*optimizer.b1 = 1.5: must be <= 1.0"):
        runner.run_sweep(sw, say=lambda _: None)
    assert not (tmp_path / "sw").exists()


def test_finished_runs_are_skipped_and_unfinished_ones_resumed(tmp_path, monkeypatch):
    sw = load_sweep(_write(tmp_path, f"base: pretrain/demo\ndir: {tmp_path}/sw\nset: {{train.steps: 7, optimizer.warmup_steps: 1}}\n"
                                     "grid: {optimizer.lr: [0.1, 0.2, 0.3]}\n"))
    done, partial, fresh = sw.runs
    done.dir.mkdir(parents=True)
    (done.dir / "summary.json").write_text(json.dumps({"step": 7, "finished": True, "wall_s": 1.0}))
    (partial.dir / "checkpoints").mkdir(parents=True)  # started, no complete step at 7
    (partial.dir / "summary.json").write_text(json.dumps({"step": 4, "finished": False}))
    calls = []
    monkeypatch.setattr(runner.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    lines = []
    status = runner.run_sweep(sw, say=lines.append)
    assert status == {done.name: "skipped", partial.name: "finished", fresh.name: "finished"}
    assert [c[c.index("train") + 2:] for c in calls] == [sw.cli_overrides(partial), sw.cli_overrides(fresh)]
    assert any("resuming" in line and partial.name in line for line in lines)
    manifest = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert manifest["varied"] == ["optimizer.lr"] and [r["name"] for r in manifest["runs"]] == [r.name for r in sw.runs]


def test_print_gives_one_launch_command_per_run(tmp_path):
    sw = load_sweep(_write(tmp_path, "base: pretrain/demo\ndir: runs/x\ngrid: {optimizer.lr: [0.1, 0.2]}\nseeds: [0, 1]\n"))
    cmds = runner.commands(sw, "slurm")
    assert len(cmds) == 4
    assert cmds[0] == ("sbatch --job-name=lr=0.1,seed=0 launch/slurm.sbatch pretrain/demo optimizer.lr=0.1 seed=0 "
                       "run.dir=runs/x/lr=0.1,seed=0")
    assert runner.commands(sw, "local", 2)[3].startswith("launch/local.sh 2 pretrain/demo optimizer.lr=0.2 seed=1")


def _fake_run(root, name, lr, seed, evals, tok_s, wall):
    d = root / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "optimizer": {"lr": lr}, "run": {"dir": str(d)}}))
    rows = [{"step": 10 * (i + 1), "loss": 3.0 - i, "tokens_per_s": t, "mfu": 0.1} for i, t in enumerate(tok_s)]
    rows += [{"step": 10 * (i + 1), "eval_loss": e} for i, e in enumerate(evals)]
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (d / "summary.json").write_text(json.dumps({"step": 30, "finished": True, "wall_s": wall}))
    return d


def test_compare_table_mean_std_over_seeds_sorting_and_files(tmp_path):
    runs = {
        ("a", 0.1, 0): ([2.0, 1.5, 1.7], [100, 120, 110], 10.0),
        ("b", 0.1, 1): ([2.1, 1.4, 1.6], [90, 100, 95], 12.0),
        ("c", 0.3, 0): ([1.9, 1.2, 1.3], [100, 100, 100], 11.0),
        ("d", 0.3, 1): ([1.8, 1.1, 1.5], [105, 95, 100], 13.0),
    }
    dirs = [str(_fake_run(tmp_path, n, lr, s, e, t, w)) for (n, lr, s), (e, t, w) in runs.items()]
    recs, varied = collect(dirs)
    assert varied == ["optimizer.lr", "seed"]
    cols, rows = table(recs, varied, sort="eval_loss")
    assert cols == ["optimizer.lr", "seeds", "eval_loss", "best_eval_loss", "tokens_per_s", "mfu", "wall_s"]
    assert [r["optimizer.lr"] for r in rows] == [0.3, 0.1]  # final eval loss 1.4 < 1.65
    lr3 = rows[0]
    assert lr3["seeds"] == 2
    assert lr3["eval_loss"] == pytest.approx((np.mean([1.3, 1.5]), np.std([1.3, 1.5], ddof=1)))
    assert lr3["best_eval_loss"] == pytest.approx((np.mean([1.2, 1.1]), np.std([1.2, 1.1], ddof=1)))
    assert lr3["tokens_per_s"][0] == pytest.approx(np.mean([100, 100]))
    assert rows[1]["tokens_per_s"][0] == pytest.approx(np.mean([statistics.median([100, 120, 110]), 95]))
    assert lr3["wall_s"] == pytest.approx((12.0, np.std([11.0, 13.0], ddof=1)))
    _, desc = table(recs, varied, sort="eval_loss", descending=True)
    assert [r["optimizer.lr"] for r in desc] == [0.1, 0.3]
    text, md = render(cols, rows)
    assert "1.4000 ± 0.1414" in text and md.startswith("| optimizer.lr | seeds |")
    write_csv(tmp_path / "t.csv", cols, rows)
    got = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert float(got[0]["eval_loss"]) == pytest.approx(1.4) and float(got[0]["eval_loss_std"]) == pytest.approx(0.141421, 1e-4)
    with pytest.raises(UserError, match="--sort nope: not a column"):
        table(recs, varied, sort="nope")


def test_plot_draws_one_line_per_setting_with_seed_bands(tmp_path):
    from jaxllm.sweep.plot import figure, plot_metric

    dirs = [str(_fake_run(tmp_path, n, lr, s, [2.0, 1.5, 1.2], [100] * 3, 1.0))
            for n, lr, s in [("a", 0.1, 0), ("b", 0.1, 1), ("c", 0.3, 0), ("d", 0.3, 1), ("e", 1.0, 0)]]
    recs, varied = collect(dirs)
    fig = figure(recs, varied, "eval_loss")
    ax = fig.axes[0]
    assert len(ax.lines) == 3 and len(ax.collections) == 2  # lr 1.0 has one seed: no band
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["lr=0.1 (2 seeds)", "lr=0.3 (2 seeds)", "lr=1"]
    out = tmp_path / "plots" / "loss.png"
    assert plot_metric(recs, varied, "loss", out) == 3
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UserError, match="no run logged 'reward'"):
        figure(recs, varied, "reward")


@pytest.mark.slow
def test_a_tiny_real_sweep_runs_skips_when_rerun_and_compares(tmp_path, capsys):
    """2 learning rates x 2 seeds of a few tiny pre-training steps through `jaxllm sweep`, then `compare` and `plot`."""
    from conftest import tiny_overrides

    from jaxllm.cli import main

    sets = "\n".join(f"  - {o}" for o in tiny_overrides(tmp_path / "unused", "train.steps=4", "train.eval_every=2")
                     if not o.startswith("run.dir"))
    p = _write(tmp_path, f"base: {__import__('conftest').ROOT}/configs/model/tiny.yaml\ndir: {tmp_path}/sw\n"
                         f"set:\n{sets}\ngrid: {{optimizer.lr: [1.0e-3, 1.0e-2]}}\nseeds: [0, 1]\n")
    assert main(["sweep", str(p)]) == 0
    out = capsys.readouterr().out
    assert "4 ran, 0 skipped, 0 failed" in out
    for run in load_sweep(p).runs:
        s = json.loads((run.dir / "summary.json").read_text())
        assert s["finished"] and s["step"] == 4 and s["wall_s"] > 0
    assert main(["sweep", str(p)]) == 0
    assert "0 ran, 4 skipped" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "sw"), "--sort", "eval_loss"]) == 0
    table_text = capsys.readouterr().out
    assert "optimizer.lr" in table_text and "±" in table_text
    assert (tmp_path / "sw" / "compare.csv").is_file() and (tmp_path / "sw" / "compare.md").is_file()
    assert main(["plot", str(tmp_path / "sw"), "--metric", "loss", "--metric", "eval_loss"]) == 0
    assert "(2 lines)" in capsys.readouterr().out
    assert (tmp_path / "sw" / "eval_loss.png").read_bytes()[:4] == b"\x89PNG"
