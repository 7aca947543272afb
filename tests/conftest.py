"""Test set-up: 8 fake CPU devices (set before JAX is imported) and small config helpers."""

import os
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One XLA compilation cache for the whole session, the `jaxllm` subprocesses included: the suite compiles the
# same tiny programs many times over (measured: a second compile of a test's programs takes half the time).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="jaxllm-test-xla-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
# glibc's malloc defaults for the workers and every subprocess: the settings the `jaxllm` command gives itself
# on a CPU-only host (jaxllm/hostmem.py; tests/test_hostmem.py tests them) cost the suite user time, with two
# workers sharing two cores (quick tier from a clean clone, 2026-12-06: 369 s with them, 345 s without).
os.environ.setdefault("JAXLLM_MALLOC", "system")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def tiny_overrides(run_dir, *extra, model="tiny"):
    """Overrides for a fast end-to-end run on a small slice of the built-in corpus."""
    return [
        f"run.dir={run_dir}", "data.builtin.chars=60000", "data.tokenizer.vocab_size=400", "data.eval_fraction=0.05",
        "train.seq_len=32", "train.batch_size=8", "train.log_every=1", "train.eval_every=0", "train.eval_batches=1",
        "train.sample_tokens=0", "train.progress=off", "optimizer.warmup_steps=2", "log.tensorboard=false",
        *extra,
    ]


def tiny_config(run_dir, *extra, model="tiny"):
    from jaxllm.config import load_config

    return load_config(ROOT / "configs" / "model" / f"{model}.yaml", tiny_overrides(run_dir, *extra))


@pytest.fixture
def tiny(tmp_path):
    return lambda *extra, model="tiny": tiny_config(tmp_path / "run", *extra, model=model)


LONGEST = ("test_pipeline.py",)  # the shortened main job: about 9 minutes of one worker's time


def pytest_collection_modifyitems(config, items):
    """Files with long end-to-end tests first, so that with several workers (``--dist loadfile``: a file's
    tests on one worker, its module fixtures trained once) none of them starts last. Order within a file
    is kept: interleaving files would tear a module's shared fixture down and train it again."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (item.path.name not in LONGEST, item.path not in slow_files))
