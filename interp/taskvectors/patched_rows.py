"""Score many (prompt, unit set) rows with less work and the same answer.

A search step scores hundreds of rows ``(prompt which[i], unit set masks[i])``. Two kinds of
work in it are provably redundant, and :class:`PatchedRows` skips them:

* **Repeated rows.** As a policy converges, its samples repeat: the same unit set drawn for
  the same prompt gives the same logits. Rows are keyed by (prompt, mask); each distinct row
  is run once and its reward copied to its repeats (``dedupe``).
* **The unpatched prefix.** Blocks before a row's first patched block see the clean
  activations of its prompt. With ``reuse_prefix`` the clean residual stream of every prompt
  is cached once per prompt batch (``hook_resid_pre`` of every block, bounded by
  ``prefix_cache_bytes``) and each row restarts there
  (:meth:`~interp.models.MAEVQGAN.forward_from`); a row that patches nothing takes the clean
  logits.

Both leave every reward bit-identical to the plain path (every row a full patched forward)
because a row's logits do not depend on which other rows share its batch. On the CPU that
holds at any thread count once MKL runs in its strict reproducibility mode
(``MKL_CBWR=AUTO,STRICT``, which :mod:`interp.runtime` sets when ``interp`` is imported before
torch runs a matmul; without it, at 2+ threads torch's attention kernel differed in the last
bit between batch sizes). ``tests/taskvectors/test_patched_rows.py`` checks it on a random
model at 1 and 2 threads, ``bench.reinforce_run`` every 25 steps of a run on the bundled one; GPU matmul kernels may
pick another algorithm for another batch size, so on CUDA the savings are exact only up to
float rounding (turn them off with ``dedupe=False, reuse_prefix=False`` for a bitwise
comparison). :attr:`work` counts what was requested and what was run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor

from interp.data.tasks import PromptBatch
from interp.scoring import Score, Scorer
from interp.taskvectors.patching import MeanPatcher

#: ``(logits [B, P, V], canvases [B, 3, H, W], rows [B] prompt indices) -> reward [B]``
RowReward = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass
class Work:
    """What was asked for and what ran: ``rows`` requested, ``distinct`` run, ``blocks`` run
    (summed over distinct rows) out of ``blocks_full`` (had every row run every block)."""

    rows: int = 0
    distinct: int = 0
    blocks: int = 0
    blocks_full: int = 0


class PatchedRows:
    """``rows(prompts, which [S], masks [S, U], reward) -> [S]`` float64, each row patched by its mask.

    ``chunk`` bounds the rows per forward (memory). See the module docstring for what
    ``dedupe`` and ``reuse_prefix`` skip; both default on.
    """

    def __init__(self, patcher: MeanPatcher, chunk: int = 256, dedupe: bool = True, reuse_prefix: bool = True,
                 prefix_cache_bytes: int = 512 << 20) -> None:
        self.patcher, self.model, self.layout = patcher, patcher.model, patcher.layout
        self.chunk, self.dedupe, self.reuse_prefix = max(1, int(chunk)), dedupe, reuse_prefix
        self.prefix_cache_bytes = int(prefix_cache_bytes)
        self.device = self.model.device
        self.blocks = [(stack, i) for stack, info in self.model.stacks.items() for i in range(info.layers)]
        depth = {site: k for k, site in enumerate(self.blocks)}
        self.unit_depth = torch.tensor([depth[(u.stack, u.layer)] for u in patcher.space.units])  # [U]
        self._clean: dict[int, tuple[PromptBatch, list[Tensor], Tensor] | None] = {}  # insertion = LRU order
        self.work = Work()

    @torch.no_grad()
    def __call__(self, prompts: PromptBatch, which: Tensor, masks: Tensor, reward: RowReward) -> Tensor:
        inverse, parts = self._plan(prompts, which, masks)
        out = torch.empty(int(inverse.max()) + 1 if len(inverse) else 0, dtype=torch.float64)
        for part, logits, canvases, rows in parts:
            out[part] = reward(logits, canvases, rows).double().cpu()
        return out[inverse]

    @torch.no_grad()
    def score(self, prompts: PromptBatch, which: Tensor, masks: Tensor, scorer: Scorer, keep_images: int = 0) -> Score:
        """Each row's whole :class:`~interp.scoring.Score` (reward, metric and, for the rows of the
        first ``keep_images`` prompts, the official image, in row order) from ``scorer``."""
        inverse, parts = self._plan(prompts, which, masks)
        n = int(inverse.max()) + 1 if len(inverse) else 0
        reward, metric, images = torch.empty(n, dtype=torch.float64), None, {}
        for part, logits, canvases, rows in parts:
            score = scorer(canvases, logits)
            metric = torch.empty(n, dtype=score.metric.dtype) if metric is None else metric  # the metric's own dtype
            reward[part], metric[part] = score.reward.double().cpu(), score.metric.cpu()
            if keep_images and score.image is not None:
                for j, r in enumerate(part.tolist()):
                    if int(rows[j]) < keep_images:
                        images[r] = score.image[j].cpu()
        kept = [images[r] for r in inverse.tolist() if r in images]
        metric = torch.empty(0) if metric is None else metric
        return Score(reward[inverse], metric[inverse], torch.stack(kept) if kept else None)

    def _plan(self, prompts: PromptBatch, which: Tensor, masks: Tensor) -> tuple[Tensor, Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]]:
        """``(inverse [S], parts)``: each distinct row runs once; ``parts`` yields ``(indices into the
        distinct rows, logits, canvases, prompt rows on the device)`` per forward; row ``i`` is
        distinct row ``inverse[i]``."""
        which, masks = which.long().cpu(), masks.bool().cpu()
        if self.dedupe and len(which) > 1:
            keys = torch.cat([which[:, None], masks.long()], dim=1)
            distinct, inverse = torch.unique(keys, dim=0, return_inverse=True)
            which_d, masks_d = distinct[:, 0], distinct[:, 1:].bool()
        else:
            which_d, masks_d, inverse = which, masks, torch.arange(len(which))
        first = torch.where(masks_d, self.unit_depth, len(self.blocks)).amin(dim=1) if masks_d.shape[1] else \
            torch.full((len(which_d),), len(self.blocks))
        clean = self._clean_run(prompts) if self.reuse_prefix and len(which_d) else None
        if clean is None:
            first = torch.zeros_like(first)
        self.work.rows += len(which)
        self.work.distinct += len(which_d)
        self.work.blocks += int((len(self.blocks) - first).sum())
        self.work.blocks_full += len(which_d) * len(self.blocks)

        def parts() -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
            for depth in first.unique().tolist():
                rows = (first == depth).nonzero().flatten()
                for start in range(0, len(rows), self.chunk):
                    part = rows[start : start + self.chunk]
                    logits, canvases = self._logits(prompts, which_d[part], masks_d[part], depth, clean)
                    yield part, logits, canvases, which_d[part].to(self.device)

        return inverse, parts()

    def _logits(self, prompts: PromptBatch, which: Tensor, masks: Tensor, depth: int,
                clean: tuple[PromptBatch, list[Tensor], Tensor] | None) -> tuple[Tensor, Tensor]:
        canvases = prompts.canvases[which].to(self.device)
        if depth == 0 or clean is None:
            return self.patcher.forward(canvases, masks), canvases
        rows = which.to(self.device)
        if depth == len(self.blocks):  # nothing patched: the clean logits
            return clean[2][rows], canvases
        stack, layer = self.blocks[depth]
        with self.patcher.patched(masks):
            return self.model.forward_from(clean[1][depth][rows], self.layout, stack, layer), canvases

    def _clean_run(self, prompts: PromptBatch) -> tuple[PromptBatch, list[Tensor], Tensor] | None:
        """Per prompt batch, once: every block's clean input ``[N, pos, d]`` and the clean logits.

        Batches are kept least recently used first within ``prefix_cache_bytes``; a batch that
        alone would pass it gets None (its rows then run whole forwards).
        """
        key = id(prompts)
        if key in self._clean:
            entry = self._clean.pop(key)
            if entry is None or entry[0] is prompts:
                self._clean[key] = entry  # most recently used last
                return entry
        names = [f"{stack}.blocks.{layer}.hook_resid_pre" for stack, layer in self.blocks]
        chunks, logits = [], []
        for start in range(0, len(prompts), self.chunk):
            canvases = prompts.canvases[start : start + self.chunk].to(self.device)
            out, cache = self.model.run_with_cache(canvases, self.layout, names_filter=lambda n: n in names)
            chunks.append([cache[n] for n in names])
            logits.append(out)
            if _nbytes(chunks[0]) * len(prompts) // len(canvases) > self.prefix_cache_bytes:
                self._clean[key] = None
                return None
        entry = (prompts, [torch.cat([c[k] for c in chunks]) for k in range(len(names))], torch.cat(logits))
        while self._clean and sum(_nbytes(e[1]) for e in self._clean.values() if e) + _nbytes(entry[1]) > self.prefix_cache_bytes:
            self._clean.pop(next(iter(self._clean)))
        self._clean[key] = entry
        return entry


def _nbytes(tensors: list[Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)
