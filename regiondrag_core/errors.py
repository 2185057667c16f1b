"""User-facing input errors: each names the input, the problem and what to do; the node layer adds the
node's name."""
from __future__ import annotations


class RegionDragInputError(ValueError):
    """Bad user input. ``str()`` reads "<input>: <problem> <fix>" as the core raises it, and
    "<Node> / <input>: <problem> <fix>" once the node that received the value is named (:meth:`for_node`)."""

    def __init__(self, input_name: str, problem: str, fix: str = "", node: str | None = None):
        self.node = node
        self.input_name = input_name
        self.problem = problem
        self.fix = fix
        msg = f"{input_name}: {problem}"
        if node:
            msg = f"{node} / {msg}"
        if fix:
            msg += f" {fix}"
        super().__init__(msg)

    def for_node(self, node: str) -> "RegionDragInputError":
        """The same error labelled with the node that received the bad value."""
        return RegionDragInputError(self.input_name, self.problem, self.fix, node=node)
