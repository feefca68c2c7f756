"""Values that cannot be meant are named errors, in files and in the API: statistics with NaN,
infinite or impossible counts, mistyped header fields of statistics and policies, NaN weights,
thresholds outside [0, 1], sizes outside the unit space, booleans where integers go, layers
that do not exist, hook specs that are not ``(name, fn)`` pairs, a hooked run started from
inside a hook, and hooks attached from two threads at once."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from interp.errors import InterpError
from interp.hooks import ConcurrentHooksError, ReentrantHooksError
from interp.models.checkpoint import load_model, save_model
from interp.models.presets import random_model
from interp.taskvectors.collect import collect
from interp.taskvectors.policy import Policy, PolicyError, random_like
from interp.taskvectors.stats import ActivationStats
from interp.taskvectors.stats_file import FIELDS
from interp.taskvectors.units import UnitSpace
from tests.robustness.probes import assert_named


@pytest.fixture(scope="module")
def model():
    return random_model()


@pytest.fixture(scope="module")
def stats_file(tmp_path_factory, model):
    torch.manual_seed(0)
    canvases = torch.randn(3, 3, model.grid.canvas_size, model.grid.canvas_size)
    stats = collect(model, [canvases], layout="one_shot", task="lowlight", progress=False)
    return stats.save(tmp_path_factory.mktemp("stats") / "lowlight.safetensors")


def tensor_digest(tensors):
    """The tensor hash a statistics header records (names, dtypes, shapes and bytes, by name)."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _rewrite(path, out, edit_tensors=None, edit_meta=None):
    """A copy of a statistics file with edited tensors / description and a matching tensor hash
    (what a careful hand edit leaves: every integrity check passes)."""
    with safe_open(str(path), framework="pt") as handle:
        header = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    meta = json.loads(header["description"])
    if edit_tensors:
        edit_tensors(tensors)
    if edit_meta:
        edit_meta(meta)
    meta["tensors_sha256"] = tensor_digest(tensors)
    header["description"] = json.dumps(meta)
    save_file(tensors, str(out), metadata=header)
    return out


def _site(tensors):
    return next(k for k in tensors if k.endswith(".sum")).rsplit(".", 1)[0]


@pytest.mark.parametrize("edit, words", [
    (lambda t: t[_site(t) + ".sum"].view(-1).__setitem__(0, float("inf")), "infinite"),
    (lambda t: t[_site(t) + ".sum_sq"].view(-1).__setitem__(0, float("nan")), "NaN"),
    (lambda t: t[_site(t) + ".count"].fill_(-1), "negative counts"),
    (lambda t: t[_site(t) + ".count"].fill_(0), "no slot counted"),
    (lambda t: t[_site(t) + ".count"].fill_(1000), "counts up to 1000"),
])
def test_statistics_with_impossible_values_are_refused(stats_file, tmp_path, edit, words) -> None:
    bad = _rewrite(stats_file, tmp_path / "lowlight.safetensors", edit_tensors=edit)
    with pytest.raises(InterpError) as error:
        ActivationStats.load(bad)
    assert_named(error.value, words)


@pytest.mark.parametrize("field, value", [("n_prompts", "3"), ("n_prompts", True), ("n_prompts", -2), ("extra", "x"),
                                          ("task", 7), ("sites", ["a"]), ("layout", 5)])
def test_mistyped_statistics_header_fields_are_named(stats_file, tmp_path, field, value) -> None:
    bad = _rewrite(stats_file, tmp_path / "lowlight.safetensors", edit_meta=lambda m: m.__setitem__(field, value))
    with pytest.raises(InterpError) as error:
        ActivationStats.load(bad)
    assert_named(error.value, "lowlight.safetensors")


def test_a_model_with_a_nan_weight_is_refused_at_load_and_its_statistics_are_not_written(model, tmp_path) -> None:
    broken = random_model()
    with torch.no_grad():
        next(p for n, p in broken.named_parameters() if "blocks.0" in n).view(-1)[0] = float("nan")
    save_model(broken, tmp_path / "nan.safetensors")
    with pytest.raises(InterpError) as error:
        load_model(tmp_path / "nan.safetensors")
    assert_named(error.value, "NaN or infinite")
    canvases = torch.randn(2, 3, broken.grid.canvas_size, broken.grid.canvas_size)
    stats = collect(broken, [canvases], layout="one_shot", task="lowlight", progress=False)
    with pytest.raises(InterpError) as error:
        stats.save(tmp_path / "stats" / "lowlight.safetensors")
    assert_named(error.value, "NaN or infinite")
    assert not (tmp_path / "stats" / "lowlight.safetensors").exists()


@pytest.fixture(scope="module")
def policy(model):
    space = UnitSpace.for_model(model, "head")
    return Policy(space, torch.linspace(-2, 2, len(space)), metadata={"task": "lowlight"})


@pytest.mark.parametrize("threshold", [float("nan"), 1.5, -0.1, True, "0.5"])
def test_thresholds_outside_zero_one_are_named(policy, threshold) -> None:
    with pytest.raises(PolicyError) as error:
        policy.mask(threshold)
    assert_named(error.value, "threshold")


@pytest.mark.parametrize("k", [10**6, -5, True, 2.5, "3"])
def test_random_sizes_outside_the_unit_space_are_named(policy, k) -> None:
    with pytest.raises(PolicyError) as error:
        random_like(policy.mask(), seed=0, k=k)
    assert_named(error.value, "random_like")
    assert int(random_like(policy.mask(), seed=0, k=len(policy.space)).sum()) == len(policy.space)


@pytest.mark.parametrize("header", [{"format_version": "x"}, {"metadata": "[1, 2]"}, {"metadata": '{"task": 3}'},
                                    {"space": '{"granularity": "head"}'}, {"space": "[]"}])
def test_mistyped_policy_header_fields_are_named(policy, tmp_path, header) -> None:
    path = policy.save(tmp_path / "policy.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        meta = {**handle.metadata(), **header}
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(PolicyError) as error:
        Policy.load(path)
    assert_named(error.value, str(path))


def test_a_policy_over_another_models_unit_space_is_named(policy) -> None:
    from dataclasses import replace

    from interp.models.mae_vqgan import MAEVQGAN
    from interp.models.presets import random_config

    config = random_config()
    other = MAEVQGAN(replace(config, mae=replace(config.mae, depth=3)))
    with pytest.raises(InterpError) as error:
        policy.space.check_model(other)
    assert_named(error.value, "unit space")


@pytest.mark.parametrize("kwargs", [{"head": True}, {"layer": 99}, {"stack": 1}, {"layer": [0, False]}])
def test_select_refuses_what_is_no_unit(policy, kwargs) -> None:
    with pytest.raises(InterpError) as error:
        policy.space.select(**kwargs)
    assert_named(error.value, "select(")


@pytest.mark.parametrize("stack, layer", [("decoder", 99), ("decoder", -1), ("encoder", True), ("middle", 0), ("decoder", 1.0)])
def test_forward_from_a_layer_that_does_not_exist_is_named(model, stack, layer) -> None:
    resid = torch.zeros(1, 5, model.config.mae.decoder_embed_dim)
    with pytest.raises(InterpError) as error:
        model.forward_from(resid, "zero_shot", stack, layer)
    assert_named(error.value, "forward_from(")


def test_hook_specs_that_are_not_pairs_are_named(model) -> None:
    name = next(iter(model.hook_dict))
    for spec in (("name", lambda t, h: None), (name, lambda t, h: None), [(name,)], [(name, "fn")], 5):
        with pytest.raises(InterpError) as error, model.hooks(spec):
            pass
        assert_named(error.value, "fwd_hooks" if spec != [(name, "fn")] else "not a function")


def test_a_hooked_run_inside_a_hook_is_named_not_a_recursion(model) -> None:
    canvases = torch.zeros(1, 3, model.grid.canvas_size, model.grid.canvas_size)
    name = "decoder.blocks.0.attn.hook_z"

    def inner(tensor, hook):
        model.run_with_cache(canvases, names_filter=[name])

    with pytest.raises(ReentrantHooksError) as error:
        model.run_with_hooks(canvases, fwd_hooks=[(name, inner)])
    assert_named(error.value, "inside a hook")
    assert not any(hp.has_hooks for hp in model.hook_dict.values())
    model.run_with_cache(canvases, names_filter=[name])  # and the model is usable again


def test_hooks_from_a_second_thread_are_named(model) -> None:
    name = "decoder.blocks.0.attn.hook_z"
    entered, release, errors = threading.Event(), threading.Event(), []

    def holder():
        with model.hooks([(name, lambda t, h: None)]):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert entered.wait(10)
        try:
            with model.hooks([(name, lambda t, h: None)]):
                pass
        except InterpError as error:
            errors.append(error)
    finally:
        release.set()
        thread.join()
    assert len(errors) == 1 and isinstance(errors[0], ConcurrentHooksError)
    assert_named(errors[0], "second thread")
    with model.hooks([(name, lambda t, h: None)]), model.hooks([(name, lambda t, h: None)]):  # nesting in one thread is fine
        pass
    assert not any(hp.has_hooks for hp in model.hook_dict.values())


def test_a_plain_forward_from_a_second_thread_that_meets_anothers_hooks_is_named(model) -> None:
    """A forward with no hooks of its own, in a second thread, while the first thread's hooks are
    on: refused at the first hooked point instead of returning an output patched by them."""
    name = "decoder.blocks.0.attn.hook_z"
    canvases = torch.rand(1, 3, model.grid.canvas_size, model.grid.canvas_size)
    clean = model(canvases)
    outcome: list = []

    def plain_forward():
        try:
            outcome.append(model(canvases))
        except InterpError as error:
            outcome.append(error)

    with model.hooks([(name, lambda t, h: t * 0)]):
        thread = threading.Thread(target=plain_forward)
        thread.start()
        thread.join()
        patched = model(canvases)  # this thread's own forward still runs its hook
    assert len(outcome) == 1 and isinstance(outcome[0], ConcurrentHooksError)
    assert_named(outcome[0], "second thread")
    assert not torch.equal(patched, clean)
    thread = threading.Thread(target=plain_forward)  # with the hooks gone, another thread's forward is fine
    thread.start()
    thread.join()
    assert torch.equal(outcome[1], clean)


def test_fields_are_the_three_sums() -> None:
    assert tuple(FIELDS) == ("sum", "sum_sq", "count")


def test_two_threads_running_hooked_forwards_are_named(model) -> None:
    """The 49-of-60 leak of the issue: one thread's forward patched by another's hooks. Now the
    second thread's hooked run is refused while the first one runs, and nothing leaks."""
    name = "decoder.blocks.0.attn.hook_z"
    canvases = torch.zeros(1, 3, model.grid.canvas_size, model.grid.canvas_size)
    inside, release, errors = threading.Event(), threading.Event(), []

    def slow_hook(tensor, hook):
        inside.set()
        release.wait(10)

    thread = threading.Thread(target=lambda: model.run_with_hooks(canvases, fwd_hooks=[(name, slow_hook)]))
    thread.start()
    try:
        assert inside.wait(10)
        for call in (lambda: model.run_with_hooks(canvases, fwd_hooks=[(name, lambda t, h: t * 0)]),
                     lambda: model.run_with_cache(canvases, names_filter=[name])):
            try:
                call()
            except InterpError as error:
                errors.append(error)
    finally:
        release.set()
        thread.join()
    assert [type(e) for e in errors] == [ConcurrentHooksError, ConcurrentHooksError]
    assert not any(hp.has_hooks for hp in model.hook_dict.values())


@pytest.mark.parametrize("field, value", [("n_eval", True), ("n_collect", 0), ("fold", 4), ("seed", -1), ("n_train", 2.0)])
def test_pipeline_config_refuses_what_is_not_a_count(field, value) -> None:
    from interp.pipeline import PipelineConfig

    with pytest.raises(InterpError) as error:
        PipelineConfig(**{field: value})
    assert_named(error.value, f"PipelineConfig.{field}")


@pytest.mark.parametrize("raised", [MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                                                                 "can't allocate memory: you tried to allocate 8000000000000 bytes")])
def test_an_allocation_failure_is_named(raised, monkeypatch, tmp_path, capsys) -> None:
    from interp import pipeline
    from interp.cli import main

    def allocate(*args, **kwargs):
        raise raised

    monkeypatch.setattr(pipeline, "load_model_spec", allocate)
    assert main(["collect", "--run", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "out of memory" in err and "--n-eval" in err and "unexpected" not in err, err
