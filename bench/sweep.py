"""Single-unit sweep with vs. without prefix reuse.

``interp.taskvectors.sweep.sweep`` patches every unit alone on ``N`` zero-shot prompts.
With ``reuse_prefix=True`` a patch at layer L restarts from the clean run's cached
``hook_resid_pre`` of layer L (``forward_from``); with ``False`` every row runs the whole
model. Both are batched; only the prefix differs, so the ratio isolates prefix reuse.

The reward is ``token`` by default (no VQGAN decoding). It still VQGAN-*encodes* the
canvas of every row, which costs the same in both variants and dilutes the ratio, so both
variants are timed a second time with the reward replaced by a stub returning zeros
(``*_forward_only``; same library code otherwise): ``ratio_forward_only`` is the ratio of
the model work alone.

Granularity ``head`` by default. For ``large`` on CPU (and with ``--quick``) the default is ``layer`` (32 units
instead of 512): each layer contributes the same share of rows at both granularities, so
the prefix-reuse ratio is the same in expectation at a 16th of the cost.

    python -m bench.sweep --model tiny --prompts 10
    python -m bench.sweep --model large --granularity head --prompts 1
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from bench import common


class _ZeroScorer:
    """Stands in for :class:`interp.scoring.Scorer`: every row scores 0 (no VQGAN, no metric)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def rewards(self, canvases: Any, logits: Any, target_codes: Any = None) -> Any:
        return logits.new_zeros(logits.shape[0])


@contextmanager
def _reward_stub() -> Iterator[None]:
    """Within the block, ``sweep`` scores every row 0: model work only."""
    import interp.taskvectors.sweep as sweep_module

    real = sweep_module.Scorer
    sweep_module.Scorer = _ZeroScorer
    try:
        yield
    finally:
        sweep_module.Scorer = real


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=None)
    p.add_argument("--granularity", choices=("layer", "head", "group", "token"), default=None,
                   help="unit space (default head; layer for large on CPU)")
    p.add_argument("--reward", choices=("pixel", "token"), default="token")
    p.add_argument("--task", default="segmentation")
    p.add_argument("--chunk", type=int, default=512, help="rows per forward")
    args = p.parse_args(argv)
    common.setup(args)

    from interp.taskvectors.sweep import sweep
    from interp.taskvectors.units import UnitSpace

    granularity = common.pick(args.granularity, args, "head", large_cpu="layer", quick="layer")
    n = common.pick(args.prompts, args, 10, large_cpu=2, quick=1)
    repeats = common.pick(args.repeats, args, 3, large_cpu=1, quick=1)

    model, source = common.get_model(args.model, args.device, args.seed)
    layout = "zero_shot"
    space = UnitSpace.for_model(model, granularity, layout=layout)
    means = common.random_means(model, args.seed)
    prompts = common.make_prompts(model, args.task, n, seed=args.seed)
    one = prompts.select([0])

    last: dict[str, Any] = {}  # the latest result of each timed variant

    def variant(reuse: bool, batch=prompts, key: str | None = None):
        def call():
            frame = sweep(model, space, means, batch, layout, args.reward, reuse_prefix=reuse,
                          chunk=args.chunk, progress=False)
            if key is not None:
                last[key] = frame
            return frame

        return call

    timings = {
        "reuse_prefix": common.measure(variant(True, key="reuse"), args.device, repeats, args.warmup, warmup_fn=variant(True, one)),
        "full_forward": common.measure(variant(False, key="full"), args.device, repeats, args.warmup, warmup_fn=variant(False, one)),
    }

    with _reward_stub():
        timings["reuse_prefix_forward_only"] = common.measure(variant(True), args.device, repeats, 0)
        timings["full_forward_forward_only"] = common.measure(variant(False), args.device, repeats, 0)

    diff = float((last["reuse"]["reward"] - last["full"]["reward"]).abs().max())
    sec = {k: v["median"] for k, v in timings.items()}
    result = common.report(
        "sweep", args, source,
        sizes={"prompts": n, "granularity": granularity, "units": len(space), "rows": len(space) * n,
               "reward": args.reward, "task": args.task, "chunk": args.chunk, "layout": layout},
        timings=timings, fast="reuse_prefix", slow="full_forward", per="run",
        extra={"ratio_forward_only": sec["full_forward_forward_only"] / sec["reuse_prefix_forward_only"],
               "max_abs_reward_diff": diff},
    )
    return common.emit(result, args.out)


if __name__ == "__main__":
    common.script_main(run)
