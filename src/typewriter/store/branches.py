"""A conversation as a tree: which message follows which, and the branch one reads.

Each message names its parent (``schema.messages.parent_id``). Messages sharing a parent
are branches: an edited question beside the question it rewrote, a regenerated answer
beside the one it replaced. A branch is read from the root down; where it forks, the
newest child is taken unless the reader picked another, so a conversation opens on what
was said last. The tree is built from a conversation's rows, which are read whole anyway
(a conversation is at most a few thousand messages): no recursive SQL, the same on both
engines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Node", "Tree"]


@dataclass(frozen=True, slots=True)
class Node:
    """What the tree needs of a message: its id, role and parent, in creation order."""

    id: str
    role: str
    parent_id: str | None


class Tree:
    """The messages of one conversation, given in creation order (their ``position``)."""

    def __init__(self, nodes: Iterable[Node]) -> None:
        self.nodes: dict[str, Node] = {}
        self.children: dict[str | None, list[str]] = {}
        for node in nodes:
            self.nodes[node.id] = node
        for node in self.nodes.values():
            parent = node.parent_id if node.parent_id in self.nodes else None
            self.children.setdefault(parent, []).append(node.id)

    @property
    def newest(self) -> str | None:
        """The message written last: always a leaf, as children come after their parent."""
        return next(reversed(self.nodes), None)

    def path_to(self, message_id: str | None) -> list[str]:
        """The ids from the root down to ``message_id`` (empty for ``None`` or unknown)."""
        path: list[str] = []
        seen: set[str] = set()
        current = message_id
        while current is not None and current in self.nodes and current not in seen:
            seen.add(current)
            path.append(current)
            current = self.nodes[current].parent_id
        path.reverse()
        return path

    def branch(self, through: str | None = None) -> list[str]:
        """The branch through ``through`` (default: the newest message): its ancestors,
        itself, then the newest child at each step down."""
        path = self.path_to(through if through is not None else self.newest)
        if not path:
            return []
        below = self.children.get(path[-1])
        while below and len(path) <= len(self.nodes):  # the bound: never loop on bad rows
            path.append(below[-1])
            below = self.children.get(below[-1])
        return path

    def siblings(self, message_id: str) -> list[str]:
        """The messages of the same role sharing its parent, itself included, oldest first:
        the branches a pager moves between."""
        node = self.nodes[message_id]
        parent = node.parent_id if node.parent_id in self.nodes else None
        return [i for i in self.children.get(parent, []) if self.nodes[i].role == node.role]
