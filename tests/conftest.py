import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402  (the path first: the tests import the harness by name)
from harness import SIPP  # noqa: E402


@pytest.fixture
def sipp_installed() -> None:
    """End-to-end tests need SIPp: without it they fail (a missing prerequisite is not a pass or a skip)."""
    assert SIPP, "sipp is not installed: apt install sip-tester (./scripts/test.sh installs it)"


@pytest.fixture
def chromium_installed() -> None:
    """The console's browser tests need Debian's chromium: without it they fail, as without SIPp."""
    assert Path("/usr/bin/chromium").is_file(), \
        "chromium is not installed: apt install chromium (./scripts/test.sh installs it)"
