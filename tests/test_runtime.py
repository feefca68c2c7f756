"""interp.runtime: environment defaults that never override the user, the cores a process may
use, the thread count, and the batch independence of attention that the strict MKL mode buys."""

from __future__ import annotations

import os

import pytest
import torch

from interp import runtime
from tests.conftest import torch_threads


def test_the_environment_defaults_are_set_without_overriding_the_user(monkeypatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.delenv("KMP_BLOCKTIME", raising=False)
    runtime.configure_environment()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"  # the user's value stays
    assert os.environ["KMP_BLOCKTIME"] == "0"
    assert os.environ["MKL_CBWR"]  # set at import (interp/__init__) or by the user


def test_available_cpus_follow_the_affinity_and_thecgroup_quota(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(runtime, "cgroup_quota", lambda: None)
    assert runtime.available_cpus() == 4
    monkeypatch.setattr(runtime, "cgroup_quota", lambda: 1.5)  # 150 ms per 100 ms
    assert runtime.available_cpus() == 2


def test_thecgroup_quota_is_read_from_v2_and_v1_files(tmp_path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert runtime.cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert runtime.cgroup_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert runtime.cgroup_quota(tmp_path) == 0.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert runtime.cgroup_quota(tmp_path) is None


def test_set_threads_uses_the_request_else_the_users_setting_else_the_available_cores(monkeypatch) -> None:
    with torch_threads(torch.get_num_threads()):
        assert runtime.set_threads(1) == 1 == torch.get_num_threads()
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert runtime.default_threads() == 3
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(runtime, "available_cpus", lambda: 1)
        assert runtime.set_threads() == 1
        with pytest.raises(ValueError, match="threads"):
            runtime.set_threads(0)
    info = runtime.describe()
    assert info["threads"] == torch.get_num_threads() and info["mkl_cbwr"] == os.environ["MKL_CBWR"]


@pytest.mark.parametrize("shape", [(4, 17, 8), (4, 9, 8), (16, 50, 64)])
def test_attention_of_a_row_does_not_depend_on_its_batch_at_two_threads(shape) -> None:
    """Without MKL_CBWR=AUTO,STRICT the first two shapes (the test model's zero-shot encoder and
    decoder) differed between batch 1 and batch 4 at 2 threads on this project's AVX-512 CPU."""
    heads, length, d_head = shape
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(4, heads, length, d_head, generator=g) for _ in range(3))
    attend = torch.nn.functional.scaled_dot_product_attention
    with torch_threads(2):
        batch = attend(q, k, v)
        for row in range(4):
            assert torch.equal(attend(q[row : row + 1], k[row : row + 1], v[row : row + 1])[0], batch[row])
