"""Named hook points on any ``nn.Module`` tree, in the style of TransformerLens.

A :class:`HookPoint` is an identity module placed wherever an activation is worth reading or
editing. Because it is a module, it gets a name from its place in the tree
(``encoder.blocks.3.attn.hook_z``), PyTorch forward hooks work on it, and so does nnsight
(``NNsight(model).encoder.blocks[3].attn.hook_z.output``).

A :class:`HookedModule` is a model that owns hook points. It offers three ways to attach
hook functions ``fn(activation, hook) -> Tensor | None`` (a returned tensor replaces the
activation):

* ``model.run_with_hooks(x, fwd_hooks=[(name_or_filter, fn), ...])`` for one call;
* ``with model.hooks([(name_or_filter, fn), ...]):`` for a block of calls (nestable: each
  context removes exactly the hooks it added);
* ``model.run_with_cache(x, names_filter=...)`` to record activations into an
  :class:`ActivationCache`.

Hooks are always removed when the call or context ends, also when a hook raises. A hook
that returns a tensor of another shape or device than the activation, a name that matches no
hook point, a filter that matches none and a hook spec that is not a ``(name, fn)`` pair are
:class:`~interp.errors.HookError` naming them.

**Threads.** Hooks belong to the modules, not to a call: while one thread has hooks attached,
every forward of that model, from any thread, runs them. A model is therefore *not*
thread-safe for hooked use. What is checked: attaching hooks (``hooks``, ``run_with_hooks``,
``run_with_cache``) while another thread has hooks on the same model is a
:class:`ConcurrentHooksError`, so is a forward from any other thread (a plain call included)
that reaches a hook point where a thread's hook is on, and starting a hooked run from inside a hook of a hooked run of
the same model (which would run the outer hooks again, without end) is a
:class:`ReentrantHooksError`. Use one model per thread (``copy.deepcopy``), or a process pool.
"""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Sequence, Union

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from interp.errors import HookError

HookFn = Callable[[Tensor, "HookPoint"], Union[Tensor, None]]
NamesFilter = Union[None, str, Sequence[str], Callable[[str], bool]]
FwdHooks = Sequence[tuple[Union[str, Callable[[str], bool]], HookFn]]


class UnknownHookError(HookError, KeyError):
    """A hook name that is not a hook point of the model (also a ``KeyError``)."""


class ConcurrentHooksError(HookError):
    """Hooks attached to a model from a second thread while another thread's hooks are on it."""


class ReentrantHooksError(HookError):
    """A hooked run of a model started from inside a hook of a hooked run of the same model."""


class HookPoint(nn.Module):
    """Identity module marking an activation; hook functions see it as ``(tensor, hook)``."""

    def __init__(self) -> None:
        super().__init__()
        self.name: str = ""

    @property
    def has_hooks(self) -> bool:
        """Whether anything (our hooks, nnsight, plain torch hooks) watches this point."""
        return bool(self._forward_hooks or self._forward_pre_hooks)

    def add_hook(self, fn: HookFn) -> RemovableHandle:
        """Register ``fn(tensor, hook)``; a non-None return value replaces the activation.

        The hook belongs to the thread that registers it: a forward from another thread that
        reaches it (a plain call while this thread's hooks are on) is a :class:`ConcurrentHooksError`
        instead of a result silently patched by a foreign hook."""
        owner = threading.get_ident()

        def forward_hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
            if threading.get_ident() != owner:
                raise ConcurrentHooksError(
                    f"a forward from a second thread reached {self.name}, where another thread's hook is on "
                    "(hooks belong to the model: this forward would run the other thread's hook)",
                    fix="Use one model per thread (copy.deepcopy(model)) or run the calls one after another")
            return self._checked(fn(output, self), output, fn)

        return self.register_forward_hook(forward_hook)

    def _checked(self, result: object, output: Tensor, fn: HookFn) -> Tensor | None:
        """A hook's return value if it can replace ``output`` (cast to its dtype), else a HookError."""
        if result is None:
            return None
        where = f"hook {getattr(fn, '__qualname__', type(fn).__name__)} at {self.name}"
        if not isinstance(result, Tensor):
            raise HookError(f"{where} returned a {type(result).__name__}", fix="Return a tensor like the activation, or None")
        if result.shape != output.shape or result.device != output.device:
            raise HookError(f"{where} returned shape {tuple(result.shape)} on {result.device}; the activation is "
                            f"{tuple(output.shape)} on {output.device}",
                            fix="Return a tensor of the activation's shape and device (edit it in place, or return None)")
        return result.to(output.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return x

    def extra_repr(self) -> str:
        return self.name


class HookedModule(nn.Module):
    """Base for models with hook points: name them, then run with hooks or a cache.

    Subclasses build their modules, then call :meth:`setup_hooks` once.
    """

    hook_dict: dict[str, HookPoint]

    def setup_hooks(self) -> None:
        """Give every HookPoint its full module name and index them in ``hook_dict``."""
        self.hook_dict = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module

    def hook_points(self, names_filter: NamesFilter = None) -> list[HookPoint]:
        """Hook points whose names pass the filter, in module order (a listed name that is no
        hook point is an error)."""
        if names_filter is not None and not isinstance(names_filter, str) and not callable(names_filter):
            unknown = [n for n in names_filter if n not in self.hook_dict]
            if unknown:
                raise UnknownHookError(f"no hook point named {unknown[0]!r} (names_filter lists {len(unknown)} unknown); "
                                       f"{_suggest(unknown[0], self.hook_dict)}")
        keep = _as_filter(names_filter)
        return [hp for name, hp in self.hook_dict.items() if keep(name)]

    @contextmanager
    def hooks(self, fwd_hooks: FwdHooks = ()) -> Iterator[HookedModule]:
        """Attach hooks for the duration of a ``with`` block; removes only its own hooks.

        Nestable within one thread; from a second thread while hooks are on is a
        :class:`ConcurrentHooksError` (see the module docstring: hooks are per model).
        """
        specs = _hook_specs(fwd_hooks)
        handles: list[RemovableHandle] = []
        with self._hook_owner():
            try:
                for name_or_filter, fn in specs:
                    points = self._resolve(name_or_filter)
                    if not points:
                        raise HookError(f"hook filter {name_or_filter!r} matches no hook point", fix="See model.hook_dict for the names")
                    handles.extend(hp.add_hook(fn) for hp in points)
                yield self
            finally:
                for handle in handles:
                    handle.remove()

    @contextmanager
    def _hook_owner(self) -> Iterator[None]:
        """Mark this thread as the one whose hooks are on the model (counted, for nesting)."""
        me = threading.get_ident()
        with _OWNERS_LOCK:
            owner, depth = self.__dict__.get("_interp_hook_owner", (None, 0))
            if owner is not None and owner != me:
                raise ConcurrentHooksError(
                    f"hooks attached to {type(self).__name__} from a second thread while another thread's hooks are on it "
                    "(hooks belong to the model, so each thread's forwards would run the other's hooks)",
                    fix="Use one model per thread (copy.deepcopy(model)) or run the hooked calls one after another")
            self.__dict__["_interp_hook_owner"] = (me, depth + 1)
        try:
            yield
        finally:
            with _OWNERS_LOCK:
                owner, depth = self.__dict__["_interp_hook_owner"]
                self.__dict__["_interp_hook_owner"] = (owner, depth - 1) if depth > 1 else (None, 0)

    @contextmanager
    def _hooked_forward(self) -> Iterator[None]:
        """One hooked forward at a time per model: a second one from inside a hook is refused."""
        running = self.__dict__.get("_interp_in_hooked_forward")
        if running is not None and running != threading.get_ident():
            raise ConcurrentHooksError(
                f"a hooked run of {type(self).__name__} started from a second thread while another thread's hooked run "
                "is on it (hooks belong to the model, so each thread's forwards would run the other's hooks)",
                fix="Use one model per thread (copy.deepcopy(model)) or run the hooked calls one after another")
        if running is not None:
            raise ReentrantHooksError(
                f"a hooked run of {type(self).__name__} started from inside a hook of another hooked run of it "
                "(the outer hooks would run again inside, without end)",
                fix="Run the inner forward after the outer call returns, or on a copy of the model (copy.deepcopy)")
        self.__dict__["_interp_in_hooked_forward"] = threading.get_ident()
        try:
            yield
        finally:
            self.__dict__["_interp_in_hooked_forward"] = None

    def run_with_hooks(self, *args, fwd_hooks: FwdHooks = (), **kwargs):
        """Run ``forward(*args, **kwargs)`` with temporary hooks."""
        with self._hooked_forward(), self.hooks(fwd_hooks):
            return self(*args, **kwargs)

    def run_with_cache(
        self,
        *args,
        names_filter: NamesFilter = None,
        device: torch.device | str | None = None,
        detach: bool = True,
        **kwargs,
    ) -> tuple[object, ActivationCache]:
        """Run forward and record the activations at the hook points passing ``names_filter``.

        Cache only what you need: the default (every hook point, hook_result and the
        attention pattern included) is memory-hungry on the large model.
        """
        store: dict[str, Tensor] = {}

        def save(tensor: Tensor, hook: HookPoint) -> None:
            tensor = tensor.detach() if detach else tensor
            store[hook.name] = tensor.to(device) if device is not None else tensor

        points = self.hook_points(names_filter)
        if not points:
            raise HookError(f"names_filter {names_filter!r} matches no hook point", fix="See model.hook_dict for the names")
        with self._hooked_forward(), self.hooks([(hp.name, save) for hp in points]):
            output = self(*args, **kwargs)
        return output, ActivationCache(store)

    def _resolve(self, name_or_filter: str | Callable[[str], bool]) -> list[HookPoint]:
        if isinstance(name_or_filter, str):
            if name_or_filter not in self.hook_dict:
                raise UnknownHookError(f"no hook point named {name_or_filter!r}; {_suggest(name_or_filter, self.hook_dict)}")
            return [self.hook_dict[name_or_filter]]
        if callable(name_or_filter):
            return self.hook_points(name_or_filter)
        raise HookError(f"a hook is addressed by a name or a filter function, got {type(name_or_filter).__name__}",
                        fix="Pass fwd_hooks=[(name_or_filter, fn), ...]")


#: guards the owner records of every model's hooks (taken only while attaching / removing)
_OWNERS_LOCK = threading.Lock()


def _hook_specs(fwd_hooks: object) -> list[tuple]:
    """``fwd_hooks`` as a list of ``(name_or_filter, fn)`` pairs, or a :class:`HookError`."""
    example = "fwd_hooks=[('encoder.blocks.0.attn.hook_z', fn)]"
    if isinstance(fwd_hooks, (str, bytes)) or not isinstance(fwd_hooks, Iterable):
        raise HookError(f"fwd_hooks must be a list of (name_or_filter, fn) pairs, got {type(fwd_hooks).__name__}", fix=f"Pass {example}")
    specs = list(fwd_hooks)
    for spec in specs:
        if not isinstance(spec, (tuple, list)) or len(spec) != 2:
            raise HookError(f"fwd_hooks must be a list of (name_or_filter, fn) pairs; one item is {spec!r}",
                            fix=f"Wrap a single pair in a list: {example}")
        if not callable(spec[1]):
            raise HookError(f"the hook for {spec[0]!r} is a {type(spec[1]).__name__}, not a function", fix=f"Pass {example}")
    return specs


def _as_filter(names_filter: NamesFilter) -> Callable[[str], bool]:
    if names_filter is None:
        return lambda name: True
    if isinstance(names_filter, str):
        return lambda name: name == names_filter
    if callable(names_filter):
        return names_filter
    allowed = set(names_filter)
    return lambda name: name in allowed


def _suggest(name: str, names: Iterable[str]) -> str:
    tail = name.rsplit(".", 1)[-1]
    close = [n for n in names if n.endswith(tail)][:3]
    return f"did you mean one of {close}?" if close else "list them with model.hook_dict"


class ActivationCache:
    """Activations recorded by ``run_with_cache``, indexed by full hook name.

    ``cache["encoder.blocks.0.attn.hook_z"]`` is one tensor; :meth:`stack` gathers one
    hook across the layers of a stack (``cache.stack("attn.hook_z", "encoder")`` ->
    ``[layer, batch, pos, head, d_head]``).
    """

    def __init__(self, store: dict[str, Tensor]) -> None:
        self._store = store

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self._store[name]
        except KeyError:
            raise KeyError(f"{name!r} was not cached; {_suggest(name, self._store)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._store

    def __len__(self) -> int:
        return len(self._store)

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def keys(self):
        return self._store.keys()

    def items(self):
        return self._store.items()

    def to(self, device: torch.device | str) -> ActivationCache:
        return ActivationCache({k: v.to(device) for k, v in self._store.items()})

    def layers(self, hook: str, stack: str) -> list[int]:
        """Layer indices of ``{stack}.blocks.{L}.{hook}`` present in the cache, ascending."""
        pattern = re.compile(rf"^{re.escape(stack)}\.blocks\.(\d+)\.{re.escape(hook)}$")
        return sorted(int(m.group(1)) for name in self._store if (m := pattern.match(name)))

    def stack(self, hook: str, stack: str, layers: Sequence[int] | None = None) -> Tensor:
        """Stack ``{stack}.blocks.{L}.{hook}`` over layers: ``[layer, *activation_shape]``.

        ``hook`` is the name inside a block, e.g. ``"attn.hook_z"`` or ``"hook_resid_post"``.
        """
        layers = self.layers(hook, stack) if layers is None else list(layers)
        if not layers:
            raise KeyError(f"no cached {stack}.blocks.*.{hook}; cache it with names_filter")
        return torch.stack([self[f"{stack}.blocks.{layer}.{hook}"] for layer in layers])

    def stack_heads(self, stack: str, kind: str = "z", layers: Sequence[int] | None = None) -> Tensor:
        """Per-head activations (``z`` or ``result``) over layers: ``[layer, batch, pos, head, d]``."""
        if kind not in ("z", "result", "q", "k", "v"):
            raise ValueError(f"kind must be one of z, result, q, k, v; got {kind!r}")
        return self.stack(f"attn.hook_{kind}", stack, layers)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} activations: {list(self._store)[:4]}{' ...' if len(self) > 4 else ''})"
