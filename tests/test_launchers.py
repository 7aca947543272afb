"""The launch/ files: shell syntax, manifest structure, the exact commands they run (gcloud and srun
replaced by recorders), and docs/LAUNCH.md showing those same commands with configs that load."""

import os
import re
import shlex
import stat
import subprocess

import pytest
import yaml

from conftest import ROOT

LAUNCH = ROOT / "launch"
DOC = (ROOT / "docs" / "LAUNCH.md").read_text()
SCRIPTS = ["local.sh", "slurm.sbatch", "tpu_pod.sh"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_parse_and_their_usage_is_documented(name):
    path = LAUNCH / name
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    lines, usages = path.read_text().splitlines(), []
    for i, line in enumerate(lines):
        if "usage: " in line and line.startswith("#"):
            usages.append(line.split("usage: ", 1)[1].strip())
            for more in lines[i + 1:]:  # continuation lines, indented under the first
                if not re.match(r"^#\s{6,}\S", more):
                    break
                usages.append(more[1:].strip())
            break
    assert usages, name
    for u in usages:
        assert u in DOC, f"{name}: usage {u!r} is not in docs/LAUNCH.md"


def test_every_launch_file_the_doc_names_exists():
    named = set(re.findall(r"launch/([\w.-]+)", DOC))
    assert named >= {"local.sh", "slurm.sbatch", "tpu_pod.sh", "gke-tpu-jobset.yaml", "gke-gpu-job.yaml", "Dockerfile"}
    for n in named:
        assert (LAUNCH / n).is_file(), n


def _doc_commands() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC, re.S)
    cmds = []
    for line in "\n".join(blocks).splitlines():
        words = shlex.split(line, comments=True)
        while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value prefixes
            words = words[1:]
        if words:
            cmds.append(words)
    return cmds


def _config_and_overrides(words: list[str]) -> tuple[str, list[str]] | None:
    """CONFIG and overrides of a documented jaxllm / launcher command (None for other commands)."""
    w = [x for x in words if not x.startswith("--")] if words[0] == "sbatch" else words
    if w[0] == "launch/local.sh":
        return w[2], w[3:]
    if w[0] == "sbatch":
        return w[2], w[3:]
    if w[0] == "launch/tpu_pod.sh" and w[1] == "run":
        return w[4], w[5:]
    if w[0] == "jaxllm" and w[1] == "launch":
        rest = w[w.index("--local") + 2:]
        return (rest[1], rest[2:]) if rest[0] in ("train", "mesh") else None
    if w[0] == "jaxllm" and w[1] in ("train", "mesh"):
        return w[2], w[3:]
    return None


def test_documented_commands_use_configs_and_keys_that_load():
    from jaxllm.config import load_config

    checked = 0
    for words in _doc_commands():
        found = _config_and_overrides(words)
        if found is None or found[0].startswith("pipeline/"):
            continue
        load_config(*found)
        checked += 1
    assert checked >= 10


def _recorder(bin_dir, name: str, log) -> None:
    """A fake ``name`` on PATH that appends its arguments (one per line) and the environment it got to ``log``."""
    script = bin_dir / name
    script.write_text(f'#!/usr/bin/env bash\n{{ echo "== {name}"; printf "%s\\n" "$@"; '
                      f'echo "-- JAX_LOCAL_DEVICE_IDS=${{JAX_LOCAL_DEVICE_IDS:-unset}}"; }} >> {log}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def _calls(log) -> list[list[str]]:
    calls = []
    for line in log.read_text().splitlines():
        if line.startswith("== "):
            calls.append([line[3:]])
        else:
            calls[-1].append(line)
    return calls


def test_tpu_script_runs_the_documented_gcloud_commands(tmp_path):
    log = tmp_path / "log"
    _recorder(tmp_path, "gcloud", log)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    run = lambda *a, **kw: subprocess.run(["bash", str(LAUNCH / "tpu_pod.sh"), *a], env={**env, **kw},  # noqa: E731
                                          capture_output=True, text=True, timeout=60)
    for typ, version in (("v4-32", "tpu-ubuntu2204-base"), ("v5litepod-16", "v2-alpha-tpuv5-lite"),
                         ("v5p-32", "v2-alpha-tpuv5"), ("v6e-16", "v2-alpha-tpuv6e")):
        assert run("create", "my-tpu", "us-central2-b", typ).returncode == 0
        assert _calls(log)[-1][:11] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "my-tpu", "--zone",
                                        "us-central2-b", "--accelerator-type", typ, "--version"]
        assert _calls(log)[-1][11] == version
    assert run("create", "my-tpu", "z", "v9-8").returncode == 2

    out = run("run", "my-tpu", "us-central2-b", "pretrain/demo", "run.dir=/mnt/shared/runs/demo", "mesh.fsdp=-1",
              "mesh.data=1")
    assert out.returncode == 0, out.stderr
    call = _calls(log)[-1]
    assert call[:10] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu", "--zone", "us-central2-b",
                         "--worker=all", "--command"]
    remote = shlex.split(call[10])
    assert remote[:3] == ["cd", "~/jaxllm", "&&"]
    assert remote[3:] == [".venv/bin/jaxllm", "train", "pretrain/demo", "run.dir=/mnt/shared/runs/demo",
                          "mesh.fsdp=-1", "mesh.data=1", "distributed.initialize=always"]
    from jaxllm.config import load_config
    load_config(remote[5], remote[6:])  # the command the workers run is a valid config

    assert run("run", "my-tpu", "z", "pretrain/demo", DETACH="1").returncode == 0
    assert _calls(log)[-1][10].startswith("nohup bash -c ") and _calls(log)[-1][10].endswith("> ~/jaxllm.log 2>&1 &")

    out = run("setup", "my-tpu", "us-central2-b")
    assert out.returncode == 0, out.stderr
    scp, ssh = _calls(log)[-2:]
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--worker=all" in scp
    assert "pip install -q -e '.[tpu]'" in ssh[10] and "python3.11 -m venv .venv" in ssh[10]


@pytest.mark.parametrize("per_node, device_ids", [("1", "0,1,2,3,4,5,6,7"), ("8", "unset")])
def test_slurm_script_runs_srun_with_the_documented_command(tmp_path, per_node, device_ids):
    text = (LAUNCH / "slurm.sbatch").read_text().splitlines()
    first_command = next(i for i, line in enumerate(text) if line.strip() and not line.startswith("#"))
    assert all(i < first_command for i, line in enumerate(text) if line.startswith("#SBATCH"))  # sbatch reads only these
    log = tmp_path / "log"
    _recorder(tmp_path, "srun", log)
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "activate").write_text("")
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}", SLURM_SUBMIT_DIR=str(ROOT),
               JAXLLM_VENV=str(tmp_path / "venv"), SLURM_GPUS_ON_NODE="8", SLURM_NTASKS_PER_NODE=per_node,
               SLURM_JOB_NUM_NODES="2", SLURM_JOB_NODELIST="gpu[01-02]", SLURM_NTASKS=str(2 * int(per_node)))
    env.pop("JAX_LOCAL_DEVICE_IDS", None)
    out = subprocess.run(["bash", str(LAUNCH / "slurm.sbatch"), "pretrain/demo", "run.dir=/shared/runs/demo"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    (call,) = _calls(log)
    assert call[1:-1] == ["--kill-on-bad-exit=1", "--cpu-bind=none", "jaxllm", "train", "pretrain/demo",
                          "run.dir=/shared/runs/demo"]
    assert call[-1] == f"-- JAX_LOCAL_DEVICE_IDS={device_ids}"


def _load(name):
    return list(yaml.safe_load_all((LAUNCH / name).read_text()))


def _check_args(args):
    from jaxllm.config import load_config

    assert args[0] == "train"
    load_config(args[1], args[2:])


def test_gke_tpu_jobset_is_a_complete_jobset():
    (js,) = _load("gke-tpu-jobset.yaml")
    assert js["apiVersion"] == "jobset.x-k8s.io/v1alpha2" and js["kind"] == "JobSet"
    job = js["spec"]["replicatedJobs"][0]["template"]["spec"]
    assert job["parallelism"] == job["completions"] == 4 and job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    assert set(pod["nodeSelector"]) == {"cloud.google.com/gke-tpu-accelerator", "cloud.google.com/gke-tpu-topology"}
    (c,) = pod["containers"]
    assert c["resources"]["limits"]["google.com/tpu"] == 4
    _check_args(c["args"])
    assert {v["name"] for v in pod["volumes"]} == {m["name"] for m in c["volumeMounts"]}
    assert any(a.startswith("run.dir=/runs/") for a in c["args"]) and c["volumeMounts"][0]["mountPath"] == "/runs"


def test_gke_gpu_job_names_its_coordinator_consistently():
    svc, job = _load("gke-gpu-job.yaml")
    assert svc["kind"] == "Service" and svc["spec"]["clusterIP"] == "None" and job["kind"] == "Job"
    spec, name = job["spec"], job["metadata"]["name"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"]
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == svc["metadata"]["name"] and svc["spec"]["selector"] == {"job-name": name}
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c["env"]}
    port = svc["spec"]["ports"][0]["port"]
    assert env["JAX_COORDINATOR_ADDRESS"]["value"] == f"{name}-0.{svc['metadata']['name']}:{port}"
    assert int(env["JAX_NUM_PROCESSES"]["value"]) == spec["parallelism"]
    assert (env["JAX_PROCESS_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
            == "metadata.annotations['batch.kubernetes.io/job-completion-index']")
    assert c["ports"][0]["containerPort"] == port and c["resources"]["limits"]["nvidia.com/gpu"] == 8
    _check_args(c["args"])


def test_dockerfile_installs_an_extra_the_package_declares():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    text = (LAUNCH / "Dockerfile").read_text()
    default = re.search(r"^ARG ACCEL=(\w+)", text, re.M).group(1)
    assert default in extras and "tpu" in extras
    assert 'pip install --no-cache-dir -e ".[${ACCEL}]"' in text and 'ENTRYPOINT ["jaxllm"]' in text
    for d in ("jaxllm", "configs"):
        assert f"COPY {d} ./{d}" in text
