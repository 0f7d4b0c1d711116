#!/usr/bin/env bash
# Installs what the test servers need and the project cannot get from PyPI:
# Ceph's radosgw (the loopback S3 server), rsync, buildah and debootstrap (the serving image,
# built and run without a Docker daemon: tools/image.sh), nginx, gitlab-ci-local with a Node 22
# runtime, headless Chromium with a font (screenshots of HTML reports, tools/browser.py) and the
# vega / vega-lite / vega-embed JavaScript that DVC's plots need offline.
# Idempotent: each part is skipped when it is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium's dependencies bring a font only as one of several alternatives (fontconfig-config's):
# name one, so that screenshots have glyphs. buildah runs every step with --isolation chroot
# (tools/image.sh): no OCI runtime and no podman; debootstrap makes its base image and checks the
# mirror's signature with Debian's keyring.
APT_PACKAGES=(rsync radosgw ceph-mon ceph-osd ceph-common chromium fonts-dejavu-core
  buildah debootstrap debian-archive-keyring nginx)
GCL_VERSION=4.75.1
VEGA_PACKAGES=(vega@5 vega-lite@5 vega-embed@6)  # NAME@MAJOR; each has build/NAME.min.js
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

vega_ok=1
for spec in "${VEGA_PACKAGES[@]}"; do
  name=${spec%@*} major=${spec##*@} dir=$TOOLS/node_modules/$name
  [[ -f $dir/build/$name.min.js ]] \
    && [[ $(node -p "require('./$dir/package.json').version" 2>/dev/null) == "$major".* ]] \
    || vega_ok=0
done
if ((!vega_ok)); then
  echo "system-deps: installing ${VEGA_PACKAGES[*]} into $TOOLS/" >&2
  mkdir -p "$TOOLS"
  # npm trusts its lock file: a package folder that lost a file is only reinstalled once gone.
  for spec in "${VEGA_PACKAGES[@]}"; do rm -rf "$TOOLS/node_modules/${spec%@*}"; done
  npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error \
    "${VEGA_PACKAGES[@]}" >/dev/null
fi
