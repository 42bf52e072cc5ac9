"""Running a module compiled in place (``nn.Module.compile``) eagerly for a moment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def uncompiled(module: nn.Module) -> Iterator[nn.Module]:
    """Calls of ``module`` inside the block bypass its compiled version.

    One-off passes (counting MACs, tracing the graph, probing attention blocks with one image,
    collecting gates through hooks) would otherwise compile graphs for shapes and hooks training
    never sees, and make later steps recompile.
    """
    compiled = module.__dict__.get("_compiled_call_impl")
    if compiled is None:
        yield module
        return
    module._compiled_call_impl = None
    try:
        yield module
    finally:
        module._compiled_call_impl = compiled
