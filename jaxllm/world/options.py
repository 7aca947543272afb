"""Which world to generate: the switches of `data.builtin` that change prompts, chats, rankings and the corpus.

The defaults are the classic world (four kinds, plain wording in training, corrections that restate the premise);
``kinds``, ``phrasings: families`` (or ``reworded``) and ``corrections: composed`` add the helpful and benign kinds,
train on the seed's seen template families (`phrasings`; ``reworded``: and on training-only rewordings,
`rewordings`) and correct false premises with "No, " and the factual answer. The report always scores the seed's
held-out families ("unseen phrasing"), whatever the training data used.
"""

from __future__ import annotations

import dataclasses

CLASSIC_KINDS = ("factual", "unknowable", "myth", "harmful")
ALL_KINDS = CLASSIC_KINDS + ("helpful", "benign")
PHRASINGS = ("plain", "families", "reworded")
CORRECTIONS = ("classic", "composed")


@dataclasses.dataclass(frozen=True)
class WorldOptions:
    kinds: tuple[str, ...] = CLASSIC_KINDS
    phrasings: str = "plain"        # plain: training data in the plain wording; families: plus the seed's seen families;
                                    # reworded: plus training-only rewordings (`rewordings`)
    corrections: str = "classic"    # classic: "X is not the capital of N; the capital of N is Y."; composed: "No, ..."

    @property
    def assist(self) -> bool:
        """Whether the helpful or benign kind is on (the corpus then holds everyday advice)."""
        return bool({"helpful", "benign"} & set(self.kinds))


def world_options(cfg) -> WorldOptions:
    """From a `BuiltinConfig` (checked by `config.validate`)."""
    return WorldOptions(tuple(k for k in ALL_KINDS if k in cfg.kinds), cfg.phrasings, cfg.corrections)
