#!/usr/bin/env bash
# The serving image (ci/serve.Dockerfile) built and run without a Docker daemon, by buildah with
# chroot isolation (make system-deps installs it). Run as root, as CI jobs are.
#
#   tools/image.sh base                     make the Debian bookworm base image IMAGE_BASE with
#                                           python3 and python3-venv (skipped when it exists)
#   tools/image.sh build BUNDLE TAG [BASE]  build the image of bundle folder BUNDLE (a signed
#                                           release) and its sidecar BUNDLE.json as TAG, with the
#                                           public key the service verifies it with at start
#                                           (CD4ML_PUBLIC_KEY, default keys/release.pub), FROM
#                                           BASE (default IMAGE_BASE, made first when missing; a
#                                           registry's image, e.g.
#                                           docker.io/library/python:3.11-slim, is pulled)
#   tools/image.sh run TAG PORT             serve TAG on 127.0.0.1:PORT in the foreground, with the
#                                           host's network and CD4ML_LOG_KEY; the container is
#                                           deleted on exit, SIGTERM and Ctrl-C included
#
# Settings (environment): IMAGE_BASE (localhost/cd4ml-base:bookworm), IMAGE_MIRROR (the Debian
# mirror for the base; default: the first bookworm one of /etc/apt/sources.list*), IMAGE_CA (the
# CA bundle pip trusts in a build, /etc/ssl/certs/ca-certificates.crt), IMAGE_LAYERS (1: keep
# each step's layer as a cache for the next build, the locked environment's above all; 0: none).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DOCKERFILE=$ROOT/ci/serve.Dockerfile
BASE_IMAGE=${IMAGE_BASE:-localhost/cd4ml-base:bookworm}
CA=${IMAGE_CA:-/etc/ssl/certs/ca-certificates.crt}
LAYERS=${IMAGE_LAYERS:-1}
STOP_S=10  # run: seconds the service gets to stop on SIGTERM before SIGKILL
SUITE=bookworm
# The base image's Debian packages: the Python the Dockerfile needs, and TLS roots for pip.
BASE_PACKAGES=python3,python3-venv,ca-certificates

TOOL=image
# shellcheck source=tools/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

need() {
  command -v "$1" >/dev/null || die "$1 not found: run make system-deps"
}

image_exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The first Debian mirror that apt uses for $SUITE (one-line .list or deb822 .sources files).
find_mirror() {
  if [[ -n ${IMAGE_MIRROR:-} ]]; then
    echo "$IMAGE_MIRROR"
    return
  fi
  local file found=""
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $file ]] || continue
    found=$(awk -v suite="$SUITE" '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }' "$file")
    [[ -z $found ]] || break
  done
  if [[ -z $found ]]; then
    for file in /etc/apt/sources.list.d/*.sources; do
      [[ -f $file ]] || continue
      found=$(awk -v suite="$SUITE" '
        BEGIN { RS = ""; FS = "\n" }
        {
          types = uris = suites = ""; enabled = 1
          for (i = 1; i <= NF; i++) {
            if ($i ~ /^Types:/) types = " " substr($i, 7) " "
            else if ($i ~ /^URIs:/) uris = substr($i, 6)
            else if ($i ~ /^Suites:/) suites = " " substr($i, 8) " "
            else if ($i ~ /^Enabled:[ \t]*no/) enabled = 0
          }
          gsub(/[ \t]+/, " ", types); gsub(/[ \t]+/, " ", suites)
          if (enabled && types ~ / deb / && suites ~ (" " suite " ")) {
            split(uris, u, /[ \t]+/)
            print (u[1] != "" ? u[1] : u[2]); exit
          }
        }' "$file")
      [[ -z $found ]] || break
    done
  fi
  [[ -n $found ]] || die "no $SUITE mirror in /etc/apt/sources.list*: set IMAGE_MIRROR"
  echo "$found"
}

cmd_base() {
  need buildah
  if image_exists "$BASE_IMAGE"; then
    log "base image $BASE_IMAGE exists: nothing to do"
    return 0
  fi
  need debootstrap
  [[ $(id -u) -eq 0 ]] || die "debootstrap and buildah need root here: run as root"
  local mirror t0=$SECONDS
  mirror=$(find_mirror)
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/cd4ml-base.XXXXXX")
  trap on_base_exit EXIT
  log "making $BASE_IMAGE: debootstrap --variant=minbase $SUITE from $mirror (about a minute)"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$WORK/root" "$mirror" \
    >"$WORK/debootstrap.log" 2>&1 \
    || die "debootstrap $SUITE from $mirror failed: set IMAGE_MIRROR to a reachable Debian mirror" \
      "$WORK/debootstrap.log"
  # What an image needs none of: downloaded packages, package lists, device nodes (a container
  # gets its own /dev).
  rm -rf "$WORK/root"/var/cache/apt/archives/*.deb "$WORK/root"/var/lib/apt/lists/* \
    "$WORK/root"/dev/*
  CONTAINER=$(buildah from scratch)
  local mnt
  mnt=$(buildah mount "$CONTAINER")
  tar -C "$WORK/root" --numeric-owner -cf - . | tar -C "$mnt" --numeric-owner -xpf - \
    || die "could not copy the root file system into $mnt"
  buildah umount "$CONTAINER" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd /bin/bash --label "org.opencontainers.image.description=Debian \
$SUITE minbase with $BASE_PACKAGES (tools/image.sh base)" "$CONTAINER"
  buildah commit --quiet --rm --format docker "$CONTAINER" "$BASE_IMAGE" >/dev/null \
    || die "buildah commit of $BASE_IMAGE failed"
  CONTAINER=""
  rm -rf "$WORK"
  trap - EXIT
  log "made $BASE_IMAGE in $((SECONDS - t0)) s ($(size "$BASE_IMAGE"))"
}

on_base_exit() {
  local rc=$?
  [[ -z ${CONTAINER:-} ]] || buildah rm "$CONTAINER" >/dev/null 2>&1 || true
  [[ -z ${WORK:-} ]] || rm -rf "$WORK"
  exit "$rc"
}

size() { buildah images --format '{{.Size}}' "$1" 2>/dev/null | head -n 1; }

# The image's default packages, pinned with their hashes: Pipfile.lock's default section as
# pipenv writes it (the project itself, `-e .`, left out: the Dockerfile copies src/), less
# XGBoost's NCCL (0.47 GB of GPU collectives for training; the service predicts on the CPU).
write_requirements() {
  local pipenv=(pipenv)
  command -v pipenv >/dev/null || pipenv=(python3 -m pipenv)
  (cd "$ROOT" && "${pipenv[@]}" requirements --hash) >"$1.all" 2>"$CONTEXT/pipenv.err" \
    || die "pipenv requirements failed (pipenv is missing? run make install)" \
      "$CONTEXT/pipenv.err"
  grep -v -e '^-e ' -e '^nvidia-nccl-cu12==' "$1.all" >"$1"
  rm -f "$1.all"
}

cmd_build() {
  (($# == 2 || $# == 3)) || usage
  local bundle=${1%/} tag=$2 base=${3:-$BASE_IMAGE} t0=$SECONDS
  need buildah
  [[ -d $bundle ]] || die "no bundle folder $bundle: fetch one with \
python -m cd4ml.registry fetch --version vX.Y.Z --out $bundle"
  [[ -f $bundle.json ]] || die "no sidecar $bundle.json next to the bundle: fetch the bundle with \
python -m cd4ml.registry fetch (it writes one)"
  [[ -f $bundle/model.sig ]] || die "$bundle is unsigned (no model.sig): the image serves signed \
releases only (python -m cd4ml.signing sign, the release job)"
  local key=${CD4ML_PUBLIC_KEY:-$ROOT/keys/release.pub}
  [[ -f $key ]] || die "no public key at $key to verify the bundle with: set CD4ML_PUBLIC_KEY"
  [[ -f $CA ]] || die "no CA bundle at $CA for pip in the build: set IMAGE_CA"
  # Another BASE (e.g. docker.io/library/python:3.11-slim) is buildah's to pull.
  [[ $base != "$BASE_IMAGE" ]] || image_exists "$base" || cmd_base

  CONTEXT=$(mktemp -d "${TMPDIR:-/tmp}/cd4ml-image.XXXXXX")
  trap 'rm -rf "$CONTEXT"' EXIT
  mkdir -p "$CONTEXT/src" "$CONTEXT/served"
  write_requirements "$CONTEXT/served/requirements.txt"
  cp -a "$ROOT/src/cd4ml" "$ROOT/src/kkbox" "$CONTEXT/src/"
  cp -a "$ROOT/params.yaml" "$CONTEXT/"
  # -L: a bundle's files may be links (into a DVC cache); the image gets the files.
  cp -RL "$bundle" "$CONTEXT/served/bundle"
  cp -L "$bundle.json" "$CONTEXT/served/bundle.json"
  cp -L "$key" "$CONTEXT/served/release.pub"

  local args=(--isolation chroot --format docker --file "$DOCKERFILE"
    --ignorefile "$DOCKERFILE.dockerignore" --build-arg "BASE=$base"
    --volume "$CA:/run/build-ca.crt:ro" --build-arg PIP_CERT=/run/build-ca.crt --tag "$tag")
  [[ $LAYERS == 0 ]] || args+=(--layers)
  log "building $tag FROM $base (bundle $bundle)"
  buildah bud "${args[@]}" "$CONTEXT" >"$CONTEXT/build.log" 2>&1 \
    || die "buildah bud of ci/serve.Dockerfile FROM $base failed (the end of its log below)" \
      "$CONTEXT/build.log"
  log "built $tag in $((SECONDS - t0)) s: $(size "$tag")"
}

cmd_run() {
  (($# == 2)) || usage
  local tag=$1 port=$2
  need buildah
  [[ $port =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
  image_exists "$tag" || die "no image $tag: build it with '$0 build BUNDLE $tag'"
  port_open "$port" && die "port $port on 127.0.0.1 is in use: choose another"
  local cmdline=()
  mapfile -t cmdline < <(buildah inspect --type image --format \
    '{{range .OCIv1.Config.Entrypoint}}{{println .}}{{end}}{{range .OCIv1.Config.Cmd}}{{println .}}{{end}}' \
    "$tag")
  ((${#cmdline[@]})) || die "image $tag has neither ENTRYPOINT nor CMD: rebuild it"
  CONTAINER=$(buildah from --quiet --pull-never "$tag") || die "buildah from $tag failed"
  trap on_run_exit EXIT
  # Without these, SIGTERM or Ctrl-C would end the script without running the EXIT trap.
  trap 'exit 143' TERM
  trap 'exit 130' INT
  log "serving $tag on http://127.0.0.1:$port (container $CONTAINER)"
  # The prediction log's key, when set: without it the service logs nothing private and refuses.
  local env=(--env HOST=127.0.0.1 --env "PORT=$port")
  [[ -z ${CD4ML_LOG_KEY:-} ]] || env+=(--env "CD4ML_LOG_KEY=$CD4ML_LOG_KEY")
  buildah run --isolation chroot "${env[@]}" "$CONTAINER" -- "${cmdline[@]}" &
  CHILD=$!
  wait "$CHILD"
}

# The processes of the service: what `buildah run` ($CHILD) started in the container. That is the
# descendants of its helper, the first descendant in the chroot (a root directory not ours); the
# helper kills the service (SIGKILL) when it gets a signal itself, so it is left out.
container_pids() {
  local stat line rest pid ppid own
  local -A children=()
  own=$(readlink /proc/$$/root)
  for stat in /proc/[0-9]*/stat; do
    read -r line <"$stat" 2>/dev/null || continue
    pid=${line%% *}
    rest=${line##*) }
    ppid=${rest#* }
    ppid=${ppid%% *}
    children[$ppid]+=" $pid"
  done
  local queue=("$CHILD:0") next inside
  while ((${#queue[@]})); do
    next=${queue[0]%:*} inside=${queue[0]#*:}
    queue=("${queue[@]:1}")
    for pid in ${children[$next]:-}; do
      ((inside)) && echo "$pid"
      if ((inside)) || [[ $(readlink "/proc/$pid/root" 2>/dev/null) != "$own" ]]; then
        queue+=("$pid:1")
      else
        queue+=("$pid:0")
      fi
    done
  done
}

# SIGTERM to the service (uvicorn stops gracefully, the prediction log is flushed), SIGKILL
# after STOP_S seconds, then the container is deleted.
on_run_exit() {
  local rc=$? pids i
  trap - EXIT TERM INT
  if [[ -n ${CHILD:-} ]]; then
    pids=$(container_pids)
    # shellcheck disable=SC2086  # one pid a word
    [[ -z $pids ]] || kill -TERM $pids 2>/dev/null || true
    for ((i = 0; i < STOP_S * 10; i++)); do
      kill -0 "$CHILD" 2>/dev/null || break
      sleep 0.1
    done
    pids=$(container_pids)
    # shellcheck disable=SC2086
    [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
    kill -TERM "$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || true
  fi
  buildah rm "$CONTAINER" >/dev/null 2>&1 || log "could not delete container $CONTAINER"
  log "stopped; container $CONTAINER deleted"
  exit "$rc"
}

usage() {
  echo "usage: $0 base | build BUNDLE TAG [BASE] | run TAG PORT" >&2
  exit 2
}

subcommand=${1:-}
(($#)) && shift
case $subcommand in
  base)
    (($# == 0)) || usage
    cmd_base
    ;;
  build) cmd_build "$@" ;;
  run) cmd_run "$@" ;;
  *) usage ;;
esac
