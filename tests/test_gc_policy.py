"""settle_heap changes the whole process, so it runs in a subprocess here."""

from __future__ import annotations

import subprocess
import sys

import pytest

from driftline.streams.gc_policy import YOUNG_THRESHOLD, settle_heap


def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    code = (
        "import gc\n"
        "from driftline.streams.gc_policy import settle_heap\n"
        "before = gc.get_threshold()\n"
        "settle_heap()\n"
        "after = gc.get_threshold()\n"
        "print(before[1:] == after[1:], after[0], gc.get_freeze_count() > 1000)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", str(YOUNG_THRESHOLD), "True"]


@pytest.mark.parametrize("bad", [0, -5, True, 2.5])
def test_young_threshold_is_validated(bad) -> None:
    with pytest.raises(ValueError, match="young_threshold must be an int >= 1"):
        settle_heap(bad)
