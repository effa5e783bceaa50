"""What a Cloud Foundry instance's memory limit counts: a process tree's RSS and PSS.

The limit applies to the container, so to the uWSGI master and all its workers together.
Summed RSS counts every shared page (the interpreter, the wheels' shared objects) once per
process and overstates the total; PSS splits each shared page among its sharers, so the
sum of PSS is what the tree really occupies. Both come from ``/proc/<pid>/smaps_rollup``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["TreeMemory", "process_tree", "tree_memory"]

_PROC = Path("/proc")


@dataclass(frozen=True)
class TreeMemory:
    pids: tuple[int, ...]
    rss_kib: int
    pss_kib: int

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024

    @property
    def pss_mib(self) -> float:
        return self.pss_kib / 1024

    def max(self, other: TreeMemory) -> TreeMemory:
        """The larger of two samples by PSS (what the limit is checked against)."""
        return self if self.pss_kib >= other.pss_kib else other


def process_tree(root: int) -> list[int]:
    """``root`` and every descendant that is alive now."""
    children: dict[int, list[int]] = {}
    for stat in _PROC.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # exited while we looked
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = text[text.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_memory(root: int) -> TreeMemory:
    """The summed RSS and PSS of ``root``'s process tree, in KiB."""
    rss = pss = 0
    seen = []
    for pid in process_tree(root):
        try:
            lines = (_PROC / str(pid) / "smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        values = {
            parts[0].rstrip(":"): int(parts[1]) for parts in (line.split() for line in lines[1:]) if len(parts) >= 2
        }
        rss += values.get("Rss", 0)
        pss += values.get("Pss", 0)
        seen.append(pid)
    return TreeMemory(tuple(seen), rss, pss)
