"""User-facing errors: every message names the node, the input and what to do."""


class RegionDragInputError(ValueError):
    """Bad user input. ``str()`` reads "<Node> / <input>: <problem>. <fix>"."""

    def __init__(self, node: str, input_name: str, problem: str, fix: str = ""):
        self.node = node
        self.input_name = input_name
        self.problem = problem
        self.fix = fix
        msg = f"{node} / {input_name}: {problem}"
        if fix:
            msg += f" {fix}"
        super().__init__(msg)

    def for_node(self, node: str) -> "RegionDragInputError":
        """The same error re-labelled for the node that received the bad value."""
        return RegionDragInputError(node, self.input_name, self.problem, self.fix)
