"""The branch tree (key t): every path this turn took, abandoned ones included."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from minigpt.branches import StepPath, common_steps, path_log_prob, path_pieces
from minigpt.text.tokenizer import printable


def label(path: StepPath, start: int, current: bool) -> Text:
    """A node: what its steps add (quoted, so a space shows; byte pieces as escapes),
    then Σ log p and length of the path so far."""
    added = repr(path_pieces(path[start:]))
    text = Text(("● " if current else "") + added, style="bold" if current else "")
    count = f"{len(path)} token" if len(path) == 1 else f"{len(path)} tokens"
    text.append(f"  Σ log p {path_log_prob(path):.2f} · {count}", style="dim")
    return text


class BranchScreen(ModalScreen[StepPath | None]):
    """A tree of the turn's paths; shared beginnings are shared nodes. Enter on a node
    switches to the path up to it (its text, candidates and engine state, exactly)."""

    BINDINGS = [Binding("escape,t,q", "dismiss(None)", "close", id="close-branches")]

    def __init__(self, prompt: str, current: StepPath, branches: list[StepPath]):
        super().__init__()
        self.prompt = prompt
        self.current = current
        self.paths = [current, *branches]

    def compose(self) -> ComposeResult:
        with Vertical(id="branch-body", classes="modal-body"):
            yield Static(f"[bold]Branches[/bold] · {len(self.paths) - 1} abandoned · enter "
                         "switches · escape closes", classes="modal-title")
            tree: Tree[StepPath] = Tree(Text("› " + printable(self.prompt)), data=(),
                                    id="branch-tree")
            tree.show_root = True
            self.grow(tree.root, self.paths, 0)
            tree.root.expand_all()
            yield tree

    def grow(self, node: TreeNode, paths: list[StepPath], start: int) -> None:
        """Children of ``node`` for ``paths``, which share their first ``start`` steps."""
        groups: dict[int, list[StepPath]] = {}
        for path in paths:
            if len(path) > start:
                groups.setdefault(path[start].chosen.id, []).append(path)
        for group in groups.values():
            longest = max(group, key=len)
            end = min(min(common_steps(longest, p) for p in group), len(longest))
            prefix = longest[:end]
            child = node.add(label(prefix, start, self.current == prefix), data=prefix)
            if any(len(p) > end for p in group):
                self.grow(child, group, end)
            else:
                child.allow_expand = False

    def on_mount(self) -> None:
        tree = self.query_one(Tree)
        tree.focus()
        tree.move_cursor(self.node_of(tree.root, self.current) or tree.root)

    def node_of(self, node: TreeNode, path: StepPath) -> TreeNode | None:
        if node.data == path:
            return node
        for child in node.children:
            found = self.node_of(child, path)
            if found is not None:
                return found
        return None

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        event.stop()
        self.dismiss(event.node.data)
