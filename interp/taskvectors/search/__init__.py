"""Task-vector search methods behind one API: ``run_search(method, problem, cfg)``.

Every method works on a :class:`SearchProblem` (one task's model, unit space, means, training
and held-out prompts; forwards, backwards and seconds counted), is resumable from an atomic,
config-checked checkpoint, and returns a :class:`SearchResult`:

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
    Budget, SearchProblem, SearchResult, SearchResumeError, best_of, gated_hooks, size_grid, top_k_masks,
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


def run_search(method: str, problem: SearchProblem, cfg: Any = None, checkpoint: str | Path | None = None,
               progress: bool = True, **kwargs: Any) -> SearchResult:
    """Run one method (``cfg`` defaults to the method's ``Config()``)."""
    module = method_module(method)
    return module.run(problem, module.Config() if cfg is None else cfg, checkpoint=checkpoint, progress=progress, **kwargs)


__all__ = [
    "METHODS", "Budget", "SearchProblem", "SearchResult", "SearchResumeError", "run_search", "method_config",
    "method_module", "best_of", "gated_hooks", "size_grid", "top_k_masks",
]
