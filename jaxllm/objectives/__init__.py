"""Objectives: one module each, exporting an `ObjectiveSpec` named ``SPEC`` (see `base`).

`registry.get_spec(name)` finds them by ``objective.name``; nothing else lists them.
"""
