#!/usr/bin/env bash
# Install the Debian packages the kreg test cluster needs (idempotent; fast when already installed).
# Daemons are never auto-started: a policy-rc.d that exits 101 is in place while installing.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "ERROR: install-deps.sh must run as root" >&2; exit 1; }
PKGS="containerd runc containernetworking-plugins iptables conntrack iproute2 util-linux mount openssl jq curl
      ca-certificates busybox-static gcc libc6-dev binutils procps psmisc"
missing=()
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then echo "install-deps: all packages present"; exit 0; fi
echo "install-deps: installing ${missing[*]}"
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1
fi
trap 'if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
export DEBIAN_FRONTEND=noninteractive
# refresh the index only if it is missing or older than a day
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  apt-get update -qq || { echo "ERROR: apt-get update failed" >&2; exit 1; }
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || { echo "ERROR: apt-get install ${missing[*]} failed" >&2; exit 1; }
# Debian's containerd postinst may have been blocked from starting (good); make sure no stray system
# containerd was started by us. We never touch one that was already running before.
echo "install-deps: done"
