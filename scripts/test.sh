#!/usr/bin/env bash
# Install what the checks need (SIPp from Debian's sip-tester, baresip, Kamailio, rtpengine, openssl, chromium and a
# Korean font, the Python test extras in .venv), then run ruff, mypy and the whole test suite. Extra arguments go to
# pytest.
# All three always run (a lint failure does not hide the test results); the exit status is
# non-zero if any of them failed.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v openssl >/dev/null || need+=(openssl)
command -v baresip >/dev/null || need+=(baresip-core)  # an SRTP peer (tests/test_e2e_srtp.py)
[ -x /usr/sbin/kamailio ] || need+=(kamailio)  # the reference proxy of cps.py (tests/test_bench_peers.py)
command -v rtpengine >/dev/null || need+=(rtpengine-daemon)  # the reference media relay of media.py (same)
[ -x /usr/bin/chromium ] || need+=(chromium)  # the console's browser tests (driven by Playwright)
fc-list 2>/dev/null | grep -q "Noto Sans CJK" || need+=(fonts-noto-cjk)  # Korean in the screenshots
if [ ${#need[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# (Re)install on a fresh clone, when pyproject.toml changed since the last install, or when a tool is missing.
stale=0
[ pyproject.toml -nt .venv/.installed-test ] && stale=1
for tool in pytest ruff mypy; do
    [ -x ".venv/bin/$tool" ] || stale=1
done
if [ "$stale" -eq 1 ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    touch .venv/.installed-test
fi

status=0
summary=()
# check NAME COMMAND...: run COMMAND, then print "NAME: ok" or "NAME: FAILED (exit N)" and remember it.
check() {
    local name=$1 rc=0
    shift
    echo "--- $name: $*"
    "$@" || rc=$?
    if [ "$rc" -eq 0 ]; then
        summary+=("$name: ok")
    else
        summary+=("$name: FAILED (exit $rc)")
        status=1
    fi
    echo "${summary[-1]}"
}

check ruff .venv/bin/ruff check .
check mypy .venv/bin/mypy  # files and options from [tool.mypy] in pyproject.toml
echo "--- checks: ${summary[*]}"
# pytest runs last so its own summary line closes the output. No path given: pytest collects
# testpaths (tests/); a path given (tests/test_schedule.py) runs only that.
rc=0
.venv/bin/python -m pytest -q "$@" || rc=$?
[ "$status" -ne 0 ] && [ "$rc" -eq 0 ] && rc=1  # the tests passed but ruff or mypy did not
exit "$rc"
