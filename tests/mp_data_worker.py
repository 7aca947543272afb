"""One process of a local multi-process data test (run by test_data_pipeline.py).

argv: coordinator_port process_id num_processes prepared_dir out_json batch seq_len steps
Reads the prepared data, takes its slice of each global batch, assembles the global
array with `jax.make_array_from_process_local_data`, and writes which rows it read.
"""

import json
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import jax  # noqa: E402
import numpy as np  # noqa: E402


def main():
    port, pid, n, prepared, out, batch, seq, steps = sys.argv[1:]
    pid, n, batch, seq, steps = int(pid), int(n), int(batch), int(seq), int(steps)
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=n, process_id=pid,
                               initialization_timeout=60)
    from jaxllm.config.schema import MeshConfig
    from jaxllm.data.packing import BatchIterator
    from jaxllm.data.prepared import read_prepared
    from jaxllm.parallel.mesh import make_mesh
    from jaxllm.parallel.sharding import global_batch

    streams, _, _ = read_prepared(prepared)
    it = BatchIterator(streams["train"], seq, batch, seed=7, process_index=jax.process_index(),
                       process_count=jax.process_count())
    mesh = make_mesh(MeshConfig())
    rows, shapes = [], []
    for _ in range(steps):
        ids = it.next_local_rows()
        rows.append(ids.tolist())
        local = {"inputs": np.stack([np.asarray(streams["train"].tokens[r * seq: r * seq + seq]).astype(np.int32) for r in ids])}
        g = global_batch(local, mesh, MeshConfig().rules)
        shapes.append(list(g["inputs"].shape))
    with open(out, "w") as f:
        json.dump({"rows": rows, "shapes": shapes, "devices": jax.device_count(), "n_rows": it.n_rows}, f)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
