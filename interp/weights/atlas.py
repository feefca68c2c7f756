"""aTLAS: task vectors composed with learned anisotropic (per-block) scaling.

Zhang et al., "Knowledge Composition using Task Vectors with Learned Anisotropic Scaling",
NeurIPS 2024 (seed 002; official code ``fredzzhang/atlas``, ``src/composition.py``,
class ``WeightedImageEncoder``). Given a frozen base ``theta_0`` and task vectors
``tau_1..tau_T``, the model is evaluated at

    theta[b] = theta_0[b] + sum_t sum_k lambda[b, t, k] * mask_k[b] * tau_t[b]

where ``b`` runs over parameter blocks (one block = one parameter tensor), ``lambda`` is one
learnable ``nn.Parameter`` of shape ``[n_blocks, n_task_vectors, partitions]`` initialised at 0
(so training starts at the base model), and ``mask_k[b]`` selects the elements of block ``b``
that a fixed, seeded random assignment put in group ``k`` (the "aTLAS x K" partition variant;
``partitions=1`` is plain blockwise aTLAS). The forward pass goes through
``torch.func.functional_call(base, merged, args, kwargs)``, so any ``nn.Module`` works and the
base module is never modified.

Two conventions (``convention=``), which differ only for ``partitions > 1`` and fp16 storage:

* ``"interp"`` (default): every block is partitioned, 1-D ones included (biases, LayerNorm,
  conv kernels too), and each block has its own group assignment, drawn in block order from a
  ``torch.Generator`` seeded with ``seed``. The mix runs in fp32 for partitions (``_PartitionMix``)
  and as one ``tensordot`` in the storage dtype for ``partitions=1``.
* ``"upstream"``: the rule of the official ``WeightedImageEncoder(partition=K)`` /
  ``mask_multiply``: only 2-D blocks (weight matrices) are partitioned; every other block keeps
  ``theta_0`` exactly and its coefficients get a zero gradient. Masks are shared per shape: one
  ``randint(K, shape)`` is drawn (int64) for every parameter of the base, in ``named_parameters``
  order, and a later parameter of the same shape replaces the draw of an earlier one, so all blocks
  of one shape share the last draw. Upstream draws from the global generator unseeded;
  ``torch.manual_seed(seed)`` before the upstream constructor gives the same masks as
  ``seed=seed`` here. The mix runs in the storage dtype like upstream's (with fp16 task vectors,
  ``dtype=torch.float16``: coefficients cast to fp16, fp16 products, a sum over task vectors in
  fp16; for ``partitions=1`` the official Python ``sum`` of ``tau_t * lambda_t``, bit for bit;
  for partitions the fp16 sum order of upstream's ``einsum`` may differ in the last bit; a
  partitioned block then holds a ``[T, *shape]`` coefficient map per forward, as upstream's does).

In both, the group index is kept as one ``uint8`` per element (1 byte, ``K <= 255``) instead of
upstream's one-hot ``[K, *shape]`` half tensors. The coefficient layout is
``[n_blocks, n_task_vectors, K]``; upstream's ``coef`` is ``[n_task_vectors, n_params, K]``
(``coefficients.permute(1, 0, 2)``, when the task vectors cover every parameter).

Memory: base weights are used by reference (their ``requires_grad`` is switched off), task
vectors are stacked once per block as ``[T, *shape]`` non-persistent buffers (optionally in a
smaller ``dtype``), and nothing is copied per task vector. A forward builds one merged copy of
the blocks, as any re-parameterisation must.

Training (:mod:`interp.weights.atlas_train`): :func:`~interp.weights.atlas_train.train_atlas` runs AdamW on the coefficients only (the official optimiser,
cosine schedule without warm-up, gradient clipping at 1), with a supervised loss on
``(outputs, targets)`` or the unsupervised softmax entropy of the outputs, and keeps the best
coefficients when a validation function is given, as the official scripts keep the best epoch.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import pandas as pd
import torch
from torch import Tensor, nn

from interp.weights.arithmetic import TaskVector, TaskVectorError, key_listing, check_same_keys, named_task_vectors

TaskVectors = Union[Sequence[TaskVector], Mapping[str, TaskVector]]
CONVENTIONS = ("interp", "upstream")


class _PartitionMix(torch.autograd.Function):
    """``delta[e] = sum_t coef[t, group[e]] * tau[t, e]`` for one block.

    Saves only the ``uint8`` group index and the (buffer) task vectors: the backward pass
    bins ``grad * tau_t`` by group, one task vector at a time, so no ``[T, numel]`` or int64
    per-element tensor outlives a block.
    """

    @staticmethod
    def forward(ctx, coef: Tensor, tau: Tensor, group: Tensor) -> Tensor:  # coef [T, K], tau [T, *s]
        ctx.save_for_backward(tau, group)
        index = group.reshape(-1).long()  # transient, one block at a time
        delta = torch.zeros(index.shape[0], dtype=coef.dtype, device=coef.device)
        for t in range(tau.shape[0]):
            delta.addcmul_(coef[t][index], tau[t].reshape(-1).to(coef.dtype))
        ctx.coef_shape, ctx.coef_dtype = coef.shape, coef.dtype
        return delta.view(group.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        tau, group = ctx.saved_tensors
        index = group.reshape(-1).long()
        grad_flat = grad.reshape(-1).to(ctx.coef_dtype)
        grad_coef = torch.zeros(ctx.coef_shape, dtype=ctx.coef_dtype, device=grad.device)
        for t in range(tau.shape[0]):
            grad_coef[t].index_add_(0, index, grad_flat * tau[t].reshape(-1).to(ctx.coef_dtype))
        return grad_coef, None, None


class AtlasModel(nn.Module):
    """``base`` re-weighted by ``theta_0 + sum_t sum_k lambda[b,t,k] mask_k tau_t[b]``.

    Args:
        base: any module; its parameters are frozen (``requires_grad=False``) and used by reference.
        task_vectors: a list of :class:`TaskVector` (names from ``tv.name``) or a dict name -> vector,
            all with the same keys.
        partitions: ``K`` random element groups per block, each with its own coefficient.
        seed: seeds the group assignment.
        dtype: storage dtype of the stacked task vectors (default: the block's dtype);
            ``torch.bfloat16`` halves their memory, and the blockwise mix then runs in bf16.
            Upstream aTLAS stores task vectors in fp16 (the fp32 difference, then ``.half()``):
            ``dtype=torch.float16`` rounds them the same way (task vectors given in fp16 are
            otherwise cast to the block's dtype).
        convention: ``"interp"`` (every block partitioned, one seeded assignment per block) or
            ``"upstream"`` (only 2-D blocks partitioned, the others fixed at ``theta_0`` with zero
            gradient; one assignment per shape; the mix in the storage dtype); see the module
            docstring. For ``partitions=1`` both compute the same sum (up to float summation order).

    Attributes: ``coefficients`` ``[n_blocks, n_task_vectors, partitions]``, ``blocks`` (parameter
    names, the order of the first axis), ``task_names``, ``skipped`` (task-vector keys left at the
    base value with the reason: float buffers such as BatchNorm running statistics, which the
    official code does not scale either and autograd cannot differentiate through, and tied aliases).
    """

    def __init__(
        self,
        base: nn.Module,
        task_vectors: TaskVectors,
        partitions: int = 1,
        seed: int = 0,
        dtype: torch.dtype | None = None,
        convention: str = "interp",
    ) -> None:
        super().__init__()
        if not isinstance(partitions, int) or not 1 <= partitions <= 255:
            raise ValueError(f"partitions must be an int in [1, 255], got {partitions!r}")
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        tvs, names = named_task_vectors(task_vectors, default_prefix="tv")
        for tv, name in zip(tvs[1:], names[1:]):
            check_same_keys(tvs[0], tv, "task vectors", (names[0], name))
        self.base = base
        base.requires_grad_(False)
        self.task_names = names
        self.partitions = partitions
        self.seed = seed
        self.convention = convention

        params = dict(base.named_parameters())
        aliases = dict(base.named_parameters(remove_duplicate=False))
        buffers = dict(base.named_buffers())
        self.blocks: list[str] = []
        self.skipped: dict[str, str] = {}
        unknown = []
        for key in tvs[0]:
            if key in params:
                self.blocks.append(key)
            elif key in aliases:
                self.skipped[key] = "tied to another parameter (scaled with it)"
            elif key in buffers:  # e.g. BatchNorm running statistics: not learnable, stay at theta_0
                self.skipped[key] = "buffer (only parameters get coefficients)"
            else:
                unknown.append(key)
        if unknown:
            raise TaskVectorError(
                f"{len(unknown)} task-vector key(s) are not parameters or buffers of the base model: "
                f"{key_listing(unknown)}; the task vectors were built for another model (or a prefix differs)"
            )
        if not self.blocks:
            raise TaskVectorError("no task-vector key is a parameter of the base model; nothing to learn")
        targets = params
        bad = [
            f"{k}: {tuple(tvs[0][k].shape)} vs {tuple(targets[k].shape)}"
            for k in self.blocks
            if tuple(tvs[0][k].shape) != tuple(targets[k].shape)
        ]
        if bad:
            raise TaskVectorError(f"task vectors and base model disagree in shape: {key_listing(bad)}")

        for i, key in enumerate(self.blocks):
            ref = targets[key]
            store = dtype or ref.dtype
            if len(tvs) == 1:  # a view, no copy, when dtype and device already match
                stacked = tvs[0][key].detach().unsqueeze(0).to(ref.device, store)
            else:
                stacked = torch.stack([tv[key].detach().to(ref.device, store) for tv in tvs])
            self.register_buffer(f"_tau{i}", stacked, persistent=False)  # [T, *shape]
        # _mask[i]: which group buffer block i uses (None: the block is not partitioned)
        self._mask: list[int | None] = [None] * len(self.blocks)
        if partitions > 1:
            generator = torch.Generator().manual_seed(seed)
            if convention == "interp":  # one assignment per block, in block order
                for i, key in enumerate(self.blocks):
                    group = torch.randint(partitions, tuple(targets[key].shape), generator=generator, dtype=torch.uint8)
                    self.register_buffer(f"_group{i}", group.to(targets[key].device), persistent=False)
                    self._mask[i] = i
            else:  # upstream: a draw per base parameter, the last one per shape kept, 2-D blocks only
                by_shape: dict[tuple[int, ...], Tensor] = {}
                for tensor in params.values():
                    by_shape[tuple(tensor.shape)] = torch.randint(partitions, tuple(tensor.shape), generator=generator)
                shapes = list(dict.fromkeys(tuple(targets[k].shape) for k in self.blocks if targets[k].dim() == 2))
                for j, shape in enumerate(shapes):
                    device = next(targets[k].device for k in self.blocks if tuple(targets[k].shape) == shape)
                    self.register_buffer(f"_group{j}", by_shape[shape].to(device, torch.uint8), persistent=False)
                for i, key in enumerate(self.blocks):
                    if targets[key].dim() == 2:
                        self._mask[i] = shapes.index(tuple(targets[key].shape))
        device = targets[self.blocks[0]].device
        self.coefficients = nn.Parameter(torch.zeros(len(self.blocks), len(tvs), partitions, device=device))

    # --- the re-parameterisation ---------------------------------------------------------------
    def stacked(self, block: int | str) -> Tensor:
        """The task vectors of one block, ``[T, *shape]``."""
        return getattr(self, f"_tau{self._index(block)}")

    def partition_groups(self, block: int | str) -> Tensor | None:
        """Group index (``0..K-1``) of every element of one block, ``[*shape]`` int64; all zeros
        for ``partitions=1``; ``None`` for a block the upstream convention leaves unpartitioned
        (it stays at ``theta_0``)."""
        i = self._index(block)
        if self.partitions == 1:
            return torch.zeros(self.stacked(i).shape[1:], dtype=torch.long, device=self.coefficients.device)
        mask = self._mask[i]
        return None if mask is None else getattr(self, f"_group{mask}").long()

    def _index(self, block: int | str) -> int:
        if isinstance(block, int):
            return block
        try:
            return self.blocks.index(block)
        except ValueError:
            raise KeyError(f"{block!r} is not a block; blocks are {key_listing(self.blocks)}") from None

    def deltas(self) -> dict[str, Tensor]:
        """``sum_t sum_k lambda[b,t,k] mask_k tau_t[b]`` per block (differentiable)."""
        out = {}
        for i, key in enumerate(self.blocks):
            tau = self.stacked(i)
            coef = self.coefficients[i]  # [T, K]
            if self.convention == "upstream":
                out[key] = self._upstream_delta(i, tau, coef)
            elif self.partitions == 1:
                out[key] = torch.tensordot(coef[:, 0].to(tau.dtype), tau, dims=1)  # [*shape]
            else:
                out[key] = _PartitionMix.apply(coef, tau, getattr(self, f"_group{self._mask[i]}"))
        return out

    def _upstream_delta(self, i: int, tau: Tensor, coef: Tensor) -> Tensor:
        """The official mix, in the storage dtype of ``tau`` (see the module docstring)."""
        if self.partitions == 1:  # Python sum of tau_t * lambda_t (a 0-d fp32 coefficient)
            return sum(tau[t] * coef[t, 0] for t in range(tau.shape[0]))
        mask = self._mask[i]
        if mask is None:  # not a 2-D block: no change; coef * 0 keeps a zero gradient
            return tau.new_zeros(tau.shape[1:]) + (coef * 0.0).sum().to(tau.dtype)
        index = getattr(self, f"_group{mask}").long()  # [*shape]
        return (coef.to(tau.dtype)[:, index] * tau).sum(0)

    def merged_parameters(self) -> dict[str, Tensor]:
        """``theta_0 + delta`` for every block (differentiable in the coefficients)."""
        targets = dict(self.base.named_parameters())
        return {k: targets[k] + d.to(targets[k].dtype) for k, d in self.deltas().items()}

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return torch.func.functional_call(self.base, self.merged_parameters(), args, kwargs)

    # --- export --------------------------------------------------------------------------------
    @torch.no_grad()
    def merged_state_dict(self) -> dict[str, Tensor]:
        """The base state dict with the learned blocks merged in (detached copies; tied names
        of a block get the same merged tensor)."""
        state = dict(self.base.state_dict())
        merged = {k: v.detach().clone() for k, v in self.merged_parameters().items()}
        owners = {id(t): k for k, t in self.base.named_parameters() if k in merged}
        for name, tensor in self.base.named_parameters(remove_duplicate=False):
            if id(tensor) in owners and name in state:
                state[name] = merged[owners[id(tensor)]]
        state.update(merged)
        return state

    @torch.no_grad()
    def merged_model(self) -> nn.Module:
        """A plain copy of the base module with the learned weights (for evaluation, saving)."""
        model = copy.deepcopy(self.base)
        model.load_state_dict(self.merged_state_dict())
        return model

    @torch.no_grad()
    def learned_task_vector(self, name: str = "atlas") -> TaskVector:
        """The learned composition as one task vector (over the blocks)."""
        return TaskVector({k: d.detach().clone() for k, d in self.deltas().items()}, name=name)

    def coefficient_table(self) -> pd.DataFrame:
        """One row per (block, task vector, partition) with the coefficient value."""
        values = self.coefficients.detach().cpu()
        rows = [
            {"block": block, "task": task, "partition": k, "coef": float(values[b, t, k])}
            for b, block in enumerate(self.blocks)
            for t, task in enumerate(self.task_names)
            for k in range(self.partitions)
        ]
        return pd.DataFrame(rows)

    def _header(self) -> dict[str, str]:
        return {
            "format": "interp.atlas_coefficients",
            "blocks": json.dumps(self.blocks),
            "task_names": json.dumps(self.task_names),
            "partitions": str(self.partitions),
            "seed": str(self.seed),
            "convention": self.convention,
        }

    def save_coefficients(self, path: str | Path) -> Path:
        """Write the coefficients (and what they index) as safetensors; the base is not saved."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"coefficients": self.coefficients.detach().cpu().contiguous()}, str(path), self._header())
        return path

    def load_coefficients(self, path: str | Path) -> None:
        """Read coefficients written by :meth:`save_coefficients` for the same blocks and tasks."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            values = handle.get_tensor("coefficients")
        mine = self._header()
        header.setdefault("convention", "interp")  # files written before the option existed
        differ = [k for k in ("blocks", "task_names", "partitions", "seed", "convention") if header.get(k) != mine[k]]
        if differ:
            raise TaskVectorError(
                f"{path} was saved for a different aTLAS set-up ({', '.join(differ)} differ); "
                "build AtlasModel with the same task vectors, partitions, seed and convention"
            )
        with torch.no_grad():
            self.coefficients.copy_(values)
