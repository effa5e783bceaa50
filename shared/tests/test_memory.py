"""The process-tree memory reading the buildpack simulation checks against the manifest's limit."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from aerie.testing.memory import process_tree, tree_memory


def test_tree_memory_counts_the_children_and_pss_never_exceeds_rss():
    ballast = "b = bytearray(40 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", ballast])
    try:
        deadline = time.monotonic() + 20  # until the child has touched its 40 MiB
        while tree_memory(child.pid).rss_mib <= 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.pid in process_tree(os.getpid())
        alone = tree_memory(child.pid)
        assert alone.pids == (child.pid,)
        assert alone.rss_mib > 40, "the child's touched pages are counted"
        assert 0 < alone.pss_mib <= alone.rss_mib
        assert tree_memory(os.getpid()).pss_kib >= alone.pss_kib
    finally:
        child.kill()
        child.wait()


def test_a_gone_process_is_empty():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert tree_memory(child.pid).pids == ()
