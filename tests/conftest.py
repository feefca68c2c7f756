"""Shared fixtures: where the official reference fixtures live, the small reference model,
and torch's thread count kept per test.

``random_model`` is :func:`interp.models.presets.random_model` (re-exported for the tests).
A test that needs a thread count takes ``one_thread`` or calls :func:`torch_threads`; every
test gets torch's thread count back when it ends (``_torch_threads_restored``), so a test file
passes alone and in the suite whatever an earlier test set."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import interp  # noqa: F401  (first: sets the CPU environment, interp.runtime, before torch loads)
import pytest
import torch

from interp.models.presets import random_model  # noqa: F401  (tests import it from here)

#: the official-code fixtures (README "Checking the parity claim"): $INTERP_REFERENCE, else ../shared/reference
REFERENCE = Path(os.environ.get("INTERP_REFERENCE") or Path(__file__).resolve().parents[1].parent / "shared" / "reference")


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch on ``threads`` CPU threads inside the block, its previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _torch_threads_restored() -> Iterator[None]:
    """Whatever a test (or a module fixture it set up) did to torch's thread count is undone."""
    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run a test on one CPU thread (small tensors; avoids contention on shared cores)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(
            f"{REFERENCE} not found: the parity tests need the official-code fixtures; set INTERP_REFERENCE=<folder> "
            "or put them at ../shared/reference beside the clone (CI has them; README: 'Checking the parity claim')"
        )
    return REFERENCE


@pytest.fixture(scope="session")
def mae_small(reference_dir: Path):
    """The official-architecture MAE with random weights of the reference fixtures."""
    from safetensors.torch import load_file

    from interp.models import MAEConfig, ModelConfig, load_official

    config = MAEConfig.from_dict(json.loads((reference_dir / "mae_small.config.json").read_text()))
    return load_official(reference_dir / "mae_small.safetensors", config=ModelConfig(config))


@pytest.fixture(scope="session")
def mae_golden(reference_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(reference_dir / "mae_small.golden.safetensors")


@pytest.fixture
def tiny_random():
    return random_model()


@pytest.fixture
def canvases() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def mae_vqgan_small(reference_dir: Path):
    """The reference MAE (``mae_small``) with the reference VQGAN (``vqgan_small``) as its tokenizer."""
    from interp.models import MAEConfig, ModelConfig, VQGANConfig, load_official

    mae = MAEConfig.from_dict(json.loads((reference_dir / "mae_small.config.json").read_text()))
    vqgan = VQGANConfig.from_taming(json.loads((reference_dir / "vqgan_small.config.json").read_text()))
    return load_official(reference_dir / "mae_small.safetensors", reference_dir / "vqgan_small.safetensors",
                         config=ModelConfig(mae, vqgan))


@pytest.fixture(scope="session")
def pixels_golden(reference_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(reference_dir / "pixels.golden.safetensors")
