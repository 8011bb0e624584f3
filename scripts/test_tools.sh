#!/usr/bin/env bash
# Tools the tests use, installed when missing and the machine allows it:
# - (root + apt) the MinGW-w64 compiler that builds the real PE programs of the feature tests,
#   package lists for `apt-get download clamav-testfiles` (real PE samples, cached with the
#   corpus), openssl + osslsigncode to sign test files for the Authenticode features, and
#   Debian's chromium for the dashboard's browser tests (tests/browser; never a downloaded one);
# - the EMBER2024 reference extractor (ember-cdd-wdis, from PyPI) in its own environment,
#   .cache/ember-ref, for the ember-v3 parity tests.
# Where a tool cannot be had, the tests that need it skip and say why (the browser tests fail
# instead under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
EMBER_REF=ember-cdd-wdis==1.2.1
if [ ! -x .cache/ember-ref/bin/python ]; then
    echo "Building the EMBER2024 reference extractor environment (.cache/ember-ref)"
    { python3 -m venv .cache/ember-ref && .cache/ember-ref/bin/pip install -q "$EMBER_REF"; } \
        || { echo "warning: could not build .cache/ember-ref; ember-v3 parity tests will skip"
             rm -rf .cache/ember-ref; }
fi
command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] || exit 0
if [ -z "$(ls /var/lib/apt/lists/*_Packages* 2>/dev/null)" ]; then
    apt-get update -qq || echo "warning: apt-get update failed; the PE corpus may be partial"
fi
need=()
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || need+=(gcc-mingw-w64-x86-64)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v osslsigncode >/dev/null 2>&1 || need+=(osslsigncode)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if ((${#need[@]})); then
    echo "Installing test tools: ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        >/dev/null || echo "warning: could not install ${need[*]}; the tests that need them skip" \
            "(the browser tests fail under CI=true without chromium)"
fi
