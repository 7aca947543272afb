"""The objective interface: everything the trainer loop may use, declared in one place.

An objective module (``objectives/pretrain.py``, a user's ``my_pkg/my_loss.py``) exports one
`ObjectiveSpec` named ``SPEC``. Training runs it in this order:

1. ``spec.validate(cfg)``: cross-field checks, when the config is loaded (before anything runs);
2. ``spec.load(cfg, run_dir) -> data`` with ``.tokenizer`` and ``.stats`` (before the model exists:
   the vocabulary comes from the tokenizer); ``spec.report(data.stats)`` lines are printed;
3. ``spec.model(model_spec)``: the flax module whose parameters the loop trains;
4. ``spec.build(cfg, module, data, process_index, process_count) -> Objective``.

The `Objective` is a batch source plus a pure loss

    loss(params, batch, frozen, rng) -> (loss_sum, denominator, {name: (sum, count)})

Sums, not means: gradient accumulation and multi-host averages stay exact (the step divides the
summed loss by the summed denominator). ``frozen`` is the dict of parameters the objective declared
in `Objective.frozen`, placed on the mesh by the loop and passed to the jitted step as an argument
(never closed over); ``rng`` is None in evaluation (dropout off).

On-policy objectives (PPO, GRPO) give an `OnPolicySource` as their batch source: the loop hands it
the frozen models once and the current parameters before each batch, and logs its `metrics`.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, Protocol

import numpy as np

from jaxllm.model.flops import train_flops_per_token
from jaxllm.model.transformer import Transformer

LossFn = Callable[..., tuple[Any, Any, dict[str, tuple[Any, Any]]]]


class BatchSource(Protocol):
    """An iterator of per-process numpy batches ``{name: [local_batch, ...]}`` with a resumable position."""

    def __next__(self) -> dict[str, np.ndarray]: ...

    def state(self) -> dict: ...          # JSON-able; saved in every checkpoint

    def restore(self, state: dict) -> None: ...


class OnPolicySource(abc.ABC):
    """A batch source that generates its data with the current parameters (PPO, GRPO...)."""

    @abc.abstractmethod
    def attach(self, layout, frozen: dict) -> str:
        """Called once the state exists (fresh start and resume alike) with the `Layout` and the placed
        frozen parameters; returns a line for the run log."""

    @abc.abstractmethod
    def set_params(self, params) -> None:
        """The current trainable parameters, before every batch is asked for."""

    @abc.abstractmethod
    def metrics(self) -> dict[str, float]:
        """Statistics of the rollouts since the last call; ``generate_s`` is the time spent making them."""

    def drop_timing(self) -> None:
        """Forget the time spent so far (the first rollout, made while the step compiled); by default by
        reading `metrics` once."""
        self.metrics()

    @abc.abstractmethod
    def __next__(self) -> dict[str, np.ndarray]: ...

    @abc.abstractmethod
    def state(self) -> dict: ...

    @abc.abstractmethod
    def restore(self, state: dict) -> None: ...

    def __iter__(self):
        return self


def _identity(params):
    return params


@dataclasses.dataclass(frozen=True)
class Params:
    """Parameters the loop places on the mesh for an objective: read from ``path`` (a run dir, its
    checkpoints/<step>, or a Hugging Face dir) as ``module`` holds them, then ``select``-ed; or, with
    ``path`` None, a copy of the initial trainable parameters' ``copy`` subtree (None: all of them; a
    resumed run re-creates them from the seed, so the copy is still of the initial ones)."""

    module: Any
    path: str | None = None
    copy: str | None = None
    select: Callable = _identity


@dataclasses.dataclass
class Objective:
    """What `ObjectiveSpec.build` returns: the loss, the batches, and what the loop must provide."""

    name: str
    loss: LossFn
    train_batches: BatchSource | OnPolicySource
    eval_batches: list[dict[str, np.ndarray]]
    tokens_per_step: int  # tokens the model processes per optimizer step (for tokens/s and MFU)
    # First trainable parameters from other runs, by top-level key of the parameter tree (None = the whole
    # tree); None here = the whole tree from `init_from` when it is set (pretrain, SFT).
    init: dict[str | None, Params] | None = None
    frozen: dict[str, Params] = dataclasses.field(default_factory=dict)  # models read but never trained
    prompt: Callable[[str], list[int]] | None = None  # text -> prompt tokens for samples; None = BOS + text
    stop_ids: tuple[int, ...] = ()                     # tokens that end a sample (besides EOS)
    evaluate: Callable | None = None       # (params, frozen) -> {eval_name: float}; None = the loss on eval_batches
    finish: Callable | None = None         # (params, run_dir, layout) -> a line to print, or None
    sample_params: Callable | None = _identity  # params -> language-model params for the end sample; None = no sample
    flops_per_token: Callable = train_flops_per_token  # (spec, seq_len) -> training FLOPs per token, for MFU
    progress_metrics: tuple[str, ...] = ()  # logged metrics worth a place on the progress line (e.g. "score", "kl")
    eval_split: str = "held-out"           # "train" when nothing was held out: eval metrics then measure fit
    # (layout, frozen) -> (a line to print or None, the frozen dict the step gets): once the frozen models are
    # placed, before the step compiles (e.g. DPO scores its data with the reference, then drops it)
    prepare: Callable | None = None

    @property
    def on_policy(self) -> bool:
        return isinstance(self.train_batches, OnPolicySource)


@dataclasses.dataclass(frozen=True)
class Part:
    """One model a finished run holds: its parameters' subtree (None = all) and kind (``lm`` or ``scalar``)."""

    subtree: str | None
    kind: str


@dataclasses.dataclass(frozen=True)
class ObjectiveSpec:
    """An objective module's one export. ``config`` is the dataclass of its options, read from
    ``objective.<name>`` (None = no options); ``validate(cfg)`` raises `ConfigError` for bad
    combinations; ``parts`` says which models a finished run holds (for generate, chat, convert)."""

    name: str
    load: Callable
    build: Callable[..., Objective]
    model: Callable = Transformer
    config: type | None = None
    validate: Callable = lambda cfg: None
    report: Callable[[dict], list[str]] = lambda stats: []
    parts: dict[str, Part] = dataclasses.field(default_factory=lambda: {"lm": Part(None, "lm")})
    chat: bool = True     # its runs answer as an assistant (a chat template), not as plain continuation
    doc: str = ""         # one line for `objective.name`'s documentation

    def lm_part(self) -> Part | None:
        return next((p for p in self.parts.values() if p.kind == "lm"), None)
