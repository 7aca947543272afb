"""One object for "where things live": the device mesh plus the logical-axis rules.

Everything that places data or parameters needs both, so they travel together:

    layout = Layout(mesh, cfg.mesh.rules)
    with layout.context():                      # mesh + rules active while tracing
        batch = layout.global_batch(local_rows) # per-process rows -> global sharded arrays
        shapes = layout.abstract_params(model)  # ShapeDtypeStructs with their shardings
"""

from __future__ import annotations

import contextlib
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding

from jaxllm.parallel import sharding


@dataclasses.dataclass(frozen=True, eq=False)
class Layout:
    mesh: Mesh
    rules: list  # [[logical_name, mesh_axis | [mesh_axes] | null], ...] as in mesh.rules

    @contextlib.contextmanager
    def context(self):
        """Mesh and logical rules active while tracing, so activation constraints resolve."""
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(sharding.rules_tuple(self.rules)):
            yield

    @property
    def batch_divisor(self) -> int:
        """How many ways the batch dim is split (a global batch must divide by it)."""
        return sharding.batch_divisor(self.mesh, self.rules)

    def batch_sharding(self, ndim: int) -> NamedSharding:
        return sharding.batch_sharding(self.mesh, self.rules, ndim)

    def global_batch(self, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        return sharding.global_batch(local, self.mesh, self.rules)

    to_host = staticmethod(sharding.to_host)

    def shardings(self, boxed_tree):
        """Mesh shardings of a tree boxed with logical names."""
        return sharding.logical_to_shardings(boxed_tree, self.mesh, self.rules)

    def abstract_params(self, model: nn.Module):
        """``model``'s parameter shapes with their shardings (``ShapeDtypeStruct`` leaves): a restore target."""
        with nn.logical_axis_rules(()):  # unboxing under active rules would add eager sharding constraints
            boxed = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 1), jnp.int32))["params"])
            shapes = nn.meta.unbox(boxed)
        return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), shapes, self.shardings(boxed))


def mesh_context(mesh: Mesh, rules: list):
    """``Layout(mesh, rules).context()``, for code that holds the two apart."""
    return Layout(mesh, rules).context()
