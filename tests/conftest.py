import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402  (the path first: the tests import the harness by name)
from harness import SIPP  # noqa: E402


@pytest.fixture
def sipp_installed() -> None:
    """End-to-end tests need SIPp: without it they fail (a missing prerequisite is not a pass or a skip)."""
    assert SIPP, "sipp is not installed: apt install sip-tester (./scripts/test.sh installs it)"
