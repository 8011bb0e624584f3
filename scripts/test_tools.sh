#!/usr/bin/env bash
# System tools the tests use, installed when missing and the machine allows it (root + apt):
# the MinGW-w64 compiler that builds the real PE programs of the feature tests, and package
# lists for `apt-get download clamav-testfiles` (real PE samples, cached with the corpus).
# Where neither is possible the corpus tests skip and say why.
set -euo pipefail
command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] || exit 0
if [ -z "$(ls /var/lib/apt/lists/*_Packages* 2>/dev/null)" ]; then
    apt-get update -qq || echo "warning: apt-get update failed; the PE corpus may be partial"
fi
need=()
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || need+=(gcc-mingw-w64-x86-64)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
if ((${#need[@]})); then
    echo "Installing test tools: ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        >/dev/null || echo "warning: could not install ${need[*]}; the PE corpus tests will skip"
fi
