#!/usr/bin/env bash
# Installs what the test servers need and the project cannot get from PyPI:
# Ceph's radosgw (the loopback S3 server), rsync, and gitlab-ci-local with a Node 22 runtime.
# Idempotent: each part is skipped when it is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(rsync radosgw ceph-mon ceph-osd ceph-common)
GCL_VERSION=4.75.1
TOOLS=.tools

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "system-deps: installing Debian packages: ${missing[*]}" >&2
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x $TOOLS/node_modules/.bin/gitlab-ci-local ]] \
   || [[ $(cat $TOOLS/.gcl-version 2>/dev/null) != "$GCL_VERSION" ]]; then
  echo "system-deps: installing gitlab-ci-local $GCL_VERSION and Node 22 into $TOOLS/" >&2
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error \
    "node@22" "gitlab-ci-local@$GCL_VERSION" >/dev/null
  echo "$GCL_VERSION" > "$TOOLS/.gcl-version"
fi
