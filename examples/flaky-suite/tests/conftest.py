"""Makes the example's flaky tests flaky on purpose: each fails on its first attempts and then passes.

Attempts are counted in files under EXAMPLE_COUNTER_DIR (scripts/demo points it at target/demo/counters
and starts from an empty directory), so every demo run shows the same story.
"""

import os
import pathlib

import pytest


@pytest.fixture
def attempt(request):
    root = pathlib.Path(os.environ.get("EXAMPLE_COUNTER_DIR", pathlib.Path(__file__).parent.parent / ".counters"))
    root.mkdir(parents=True, exist_ok=True)
    counter = root / (request.node.nodeid.replace("/", "_").replace(":", "_") + ".count")
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    return n
