"""Task-vector search methods behind one API: ``run_search(method, problem, cfg, checkpoint)``.

Every method works on a :class:`SearchProblem` (one task's model, unit space, means, training
and held-out prompts, the reward kind; forwards, backwards and seconds counted), is resumable
from its :class:`Checkpoint` (the one resume check), and returns a :class:`SearchResult`
(:meth:`SearchResult.to_policy` gives the one artifact, a :class:`~interp.taskvectors.policy.Policy`).
A method's options are the fields of its ``Config`` dataclass, each with a ``help`` (and bounds)
in its field metadata: ``interp search --method M`` lists them. A new method is one module
here with ``Config`` and ``run``, and one entry in :data:`METHODS`:

=============  ===========================================================================
``reinforce``  the official REINFORCE over Bernoulli unit variables
``gradient``   gates ``z + g (mean - z)``, backprop through the token reward, sparsity term
``attribution`` first-order estimate ``(mean - z) . dR/dz`` per unit, best top-k held-out
``greedy``     forward selection from the single-unit sweep, batched
``random``     best-of-k random unit sets on the held-out prompts
``taskness``   top-k by taskness, k chosen on the held-out prompts
``prune``      backward elimination from every unit, batched; the best round held-out
``sweep``      top-k by the single-unit sweep's training reward, k chosen held-out
=============  ===========================================================================
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

from interp.taskvectors.search.base import (
    Budget, Checkpoint, SearchProblem, SearchResult, best_of, gated_hooks, size_grid, top_k_masks,
)

#: method name -> module (each defines ``Config`` and ``run(problem, cfg, checkpoint, progress)``)
METHODS: dict[str, str] = {
    "reinforce": "interp.taskvectors.search.reinforce",
    "gradient": "interp.taskvectors.search.gradient",
    "attribution": "interp.taskvectors.search.attribution",
    "greedy": "interp.taskvectors.search.greedy",
    "random": "interp.taskvectors.search.random_sets",
    "taskness": "interp.taskvectors.search.taskness_topk",
    "prune": "interp.taskvectors.search.prune",
    "sweep": "interp.taskvectors.search.sweep_topk",
}


def method_module(method: str) -> Any:
    if method not in METHODS:
        from interp.errors import ConfigError

        raise ConfigError(f"unknown search method {method!r}", fix=f"choose one of {', '.join(METHODS)}")
    return import_module(METHODS[method])


def method_config(method: str, **overrides: Any) -> Any:
    """The method's config dataclass with ``overrides`` (unknown keys are ignored)."""
    cls = method_module(method).Config
    return cls(**{k: v for k, v in overrides.items() if k in cls.__dataclass_fields__})


def method_name(cfg: Any) -> str:
    """The method whose ``Config`` ``cfg`` is."""
    for name in METHODS:
        if type(cfg) is method_module(name).Config:
            return name
    from interp.errors import ConfigError

    raise ConfigError(f"{type(cfg).__name__} is no search method's config", fix=f"pass the Config of one of {', '.join(METHODS)}")


def run_search(method: str, problem: SearchProblem, cfg: Any = None, checkpoint: Checkpoint | str | Path | None = None,
               progress: bool = True, **kwargs: Any) -> SearchResult:
    """Run one method (``cfg`` defaults to the method's ``Config()``)."""
    module = method_module(method)
    return module.run(problem, module.Config() if cfg is None else cfg, checkpoint=checkpoint, progress=progress, **kwargs)


__all__ = [
    "METHODS", "Budget", "Checkpoint", "SearchProblem", "SearchResult", "run_search", "method_config", "method_name",
    "method_module", "best_of", "gated_hooks", "size_grid", "top_k_masks",
]
