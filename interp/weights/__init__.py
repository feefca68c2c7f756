"""Weight-space task vectors: task arithmetic, aTLAS, task-vector bases.

* :mod:`interp.weights.arithmetic`: :class:`TaskVector` (``theta_ft - theta_0`` over float
  entries; ``+``, ``-``, scalar ``*``, ``apply_to``); :mod:`interp.weights.search`:
  :func:`search_coefficient`.
* :mod:`interp.weights.atlas`: :class:`AtlasModel` (one learned coefficient per parameter block,
  per task vector, per random partition; ``torch.func.functional_call`` on a frozen base); :mod:`interp.weights.atlas_train`:
  :func:`train_atlas` (supervised loss or unsupervised entropy).
* :mod:`interp.weights.basis_build`: :func:`build_basis` (AE/Gram, PCA or random); :mod:`interp.weights.bases`:
  :class:`Basis` (addition, per-task recovery for negation, the published folder format).

All of it works on any ``nn.Module``; files are safetensors or ``torch.load(weights_only=True)``.
Where interp's defaults differ from the upstream code on purpose (every aTLAS block partitioned,
one mask per block; the Gram scaled by ``tr(G)/T``; float buffers kept in task vectors; fp32
storage), an option gives upstream's behaviour: ``AtlasModel(convention="upstream")``,
``build_basis(gram_scaling="none", softmax_w=...)``, ``Basis.load(softmax_w=...)``,
``TaskVector.from_modules(keys="parameters", dtype=torch.float16)`` (README, "Conventions against
the upstream code").
"""

from interp.weights.arithmetic import TaskVector, TaskVectorError
from interp.weights.atlas import AtlasModel
from interp.weights.atlas_train import cross_entropy_loss, entropy_loss, softmax_entropy, train_atlas
from interp.weights.bases import Basis, BasisError
from interp.weights.basis_build import build_basis, gram_matrix
from interp.weights.search import default_coefficients, search_coefficient

__all__ = [
    "AtlasModel",
    "Basis",
    "BasisError",
    "TaskVector",
    "TaskVectorError",
    "build_basis",
    "cross_entropy_loss",
    "default_coefficients",
    "entropy_loss",
    "gram_matrix",
    "search_coefficient",
    "softmax_entropy",
    "train_atlas",
]
