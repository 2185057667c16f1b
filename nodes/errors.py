"""Naming the node in the core's input errors: "<input>: ..." becomes "<Node> / <input>: ..."."""
from __future__ import annotations

from contextlib import contextmanager

from ..regiondrag_core.errors import RegionDragInputError


@contextmanager
def node_errors(node: str):
    """Label every :class:`RegionDragInputError` raised in the block with ``node`` (one that already
    names a node passes unchanged). Also a decorator."""
    try:
        yield
    except RegionDragInputError as e:
        if e.node is not None:
            raise
        raise e.for_node(node).with_traceback(e.__traceback__) from None
