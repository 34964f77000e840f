#!/usr/bin/env bash
# Installs the pinned schemathesis (test/contract/run.ts names the version) into a virtualenv
# outside the checkout, once per machine and version. Needs python3 with venv and PyPI.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=$(sed -n "s/^export const SCHEMATHESIS_VERSION = '\(.*\)';$/\1/p" test/contract/run.ts)
[ -n "$version" ] || { echo "install.sh: cannot read SCHEMATHESIS_VERSION from test/contract/run.ts" >&2; exit 1; }
venv="${KREG_SCHEMATHESIS_VENV:-/var/cache/kreg/schemathesis}"
if [ -x "$venv/bin/schemathesis" ] && "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$version"; then
  echo "schemathesis $version (cached in $venv)"
  exit 0
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends python3-venv >/dev/null
fi
rm -rf "$venv"
# A half-made venv would pass the version check above next time only if schemathesis ran, but an
# interrupted install should not be left to find out.
trap 'rm -rf "$venv"' ERR
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
echo "schemathesis $("$venv/bin/schemathesis" --version) installed in $venv"
