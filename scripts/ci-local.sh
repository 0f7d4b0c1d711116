#!/usr/bin/env bash
# Runs the pipeline of .gitlab-ci.yml on this machine with gitlab-ci-local: the jobs of a branch
# pipeline, test → train → evaluate (release only runs on the default branch: CI_LOCAL_BRANCH=main;
# train-gpu is manual), and the manual train-dask against a loopback Dask cluster (a scheduler and
# two workers, tools/daskcluster.py) whose address the job gets as DASK_SCHEDULER_ADDRESS.
# Each job runs in the shell (no Docker) in its own copy of a git snapshot of the working tree, so
# artifacts and the DVC remote carry the results between jobs, as on GitLab. The working tree itself
# is left alone. The DVC remote is a loopback S3 server (tools/s3-server.sh), empty at the start:
# the train job generates data/ at SCALE, pushes, and evaluate pulls.
#
#   scripts/ci-local.sh                 run the pipeline
#   scripts/ci-local.sh JOB...          run only these jobs (artifacts of an earlier run are reused)
#   scripts/ci-local.sh --list          list the jobs a branch pipeline runs (no server, no data)
#
# Settings (environment):
#   SCALE                 data size of the snapshot (tiny by default): its data.dvc is remade with it
#   CI_LOCAL_DIR          keep the snapshot in this folder (default: a temporary folder, deleted)
#   CI_LOCAL_REUSE=1      run in the snapshot already in CI_LOCAL_DIR, as it is (no new copy)
#   CI_LOCAL_BRANCH=main  run a default-branch pipeline: release too, which pushes its commit and
#                         tag to the snapshot's origin (a bare repository next to it), and deploy,
#                         whose rollout runs nginx and the service in <dir>/deploy (stopped at exit)
#   CI_LOCAL_S3=external  use the S3 server named by S3_ENDPOINT, S3_BUCKET and AWS_ACCESS_KEY_ID /
#                         AWS_SECRET_ACCESS_KEY instead of starting one
#   CI_LOCAL_GCL_ARGS     more gitlab-ci-local options, e.g. "--timestamps"
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=$ROOT/.tools/node_modules/.bin
SCALE=${SCALE:-tiny}
S3_MODE=${CI_LOCAL_S3:-loopback}
REUSE=${CI_LOCAL_REUSE:-0}
BRANCH=${CI_LOCAL_BRANCH:-ci-local}
RUNS_JOBS=1
for arg in "$@"; do
  case $arg in --list* | --preview | --validate-dependency-chain) RUNS_JOBS=0 ;; esac
done
# gitlab-ci-local derives CI_PROJECT_PATH, CI_SERVER_HOST… from this remote; git never contacts it.
GCL_ORIGIN=https://gitlab.example.com/cd4ml/cd4ml-kkbox.git
# The release job pushes to this URL (made from those variables); git sends it to the bare origin.
PUSH_TOKEN=ci-local-token
# The deploy job's services hash member ids in their prediction logs with a key: a throwaway one.
LOG_KEY=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
PUSH_URL=https://oauth2:$PUSH_TOKEN@gitlab.example.com:443/cd4ml/cd4ml-kkbox.git

log() { echo "ci-local: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

[[ -x $TOOLS/gitlab-ci-local && -x $TOOLS/node ]] || die "no gitlab-ci-local: run make system-deps"
command -v rsync >/dev/null || die "rsync is missing: run make system-deps"
[[ -x $ROOT/.venv/bin/dvc ]] || die "no environment in $ROOT/.venv: run make install"
# The jobs share the project's environment; `make install` in a job must find it up to date.
for f in Pipfile Pipfile.lock; do
  [[ $ROOT/.venv/.installed -nt $ROOT/$f ]] || die "$f is newer than the environment: make install"
done

# Jobs get the caller's environment too: keep make's and the virtualenv's settings out of it.
unset MAKEFLAGS MFLAGS MAKELEVEL VIRTUAL_ENV
PATH=${PATH//"$ROOT/.venv/bin:"/}
export PATH=$TOOLS:$PATH
# The snapshot's commits need an identity, which a CI machine may lack.
export GIT_AUTHOR_NAME=${GIT_AUTHOR_NAME:-ci-local}
export GIT_AUTHOR_EMAIL=${GIT_AUTHOR_EMAIL:-ci-local@localhost}
export GIT_COMMITTER_NAME=${GIT_COMMITTER_NAME:-ci-local}
export GIT_COMMITTER_EMAIL=${GIT_COMMITTER_EMAIL:-ci-local@localhost}

if [[ -n ${CI_LOCAL_DIR:-} ]]; then
  WORK=$(mkdir -p "$CI_LOCAL_DIR" && cd "$CI_LOCAL_DIR" && pwd)
  KEEP=1
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/cd4ml-ci-local.XXXXXX")
  KEEP=0
fi
PROJECT=$WORK/project
# Ceph's unix sockets need a short path: the server's folder is a temporary one of its own.
S3_DIR=
DASK_PID=
DEPLOY_HOME=

cleanup() {
  local rc=$?
  if [[ -n $DEPLOY_HOME && -f $DEPLOY_HOME/state.json ]]; then
    (cd "$PROJECT" && "$ROOT/.venv/bin/python" -m cd4ml.rollout --home "$DEPLOY_HOME" stop) \
      >/dev/null || log "could not stop nginx and the services of $DEPLOY_HOME"
  fi
  if [[ -n $S3_DIR ]]; then
    scripts_s3 stop || log "could not stop the S3 server in $S3_DIR"
  fi
  if [[ -n $DASK_PID ]]; then
    kill "$DASK_PID" 2>/dev/null && wait "$DASK_PID" 2>/dev/null || true
  fi
  if ((KEEP)); then
    log "snapshot kept in $PROJECT (job logs in .gitlab-ci-local/output/)"
  else
    rm -rf -- "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

scripts_s3() { S3_SERVER_DIR=$S3_DIR "$ROOT/tools/s3-server.sh" "$@"; }

# Prints two free TCP ports on 127.0.0.1.
free_ports() {
  "$ROOT/.venv/bin/python" -c '
import socket

socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
'
}

# Copies the working tree (tracked and untracked, not ignored) into a new git repository whose
# `origin` is a bare repository holding its default branch (main), and checks out BRANCH.
make_snapshot() {
  [[ ! -e $PROJECT ]] || die "$PROJECT exists: remove it or set CI_LOCAL_REUSE=1"
  log "snapshot of $ROOT in $PROJECT (SCALE=$SCALE)"
  mkdir -p "$PROJECT"
  # -a keeps modification times: make then sees the shared environment as up to date.
  # .venv and .tools are excluded by name too: as links (a `.venv/` pattern misses them) they would
  # be listed, and the environment is linked below anyway.
  (cd "$ROOT" && git ls-files -co --exclude-standard -z -- . ':!/.venv' ':!/.tools') \
    | rsync -a --from0 --files-from=- --ignore-missing-args "$ROOT/" "$PROJECT/"
  cd "$PROJECT"
  git init --quiet --initial-branch=main
  # The shared environment: a link, which .gitignore's `.venv/` (a folder) does not match.
  ln -sn "$ROOT/.venv" .venv
  echo /.venv >>.git/info/exclude
  # The snapshot's data is generated at SCALE; its data.dvc is what the train job must reproduce.
  if ((RUNS_JOBS)); then
    if ! make --no-print-directory data SCALE="$SCALE" >"$WORK/make-data.log" 2>&1; then
      tail -n 30 "$WORK/make-data.log" >&2
      die "make data SCALE=$SCALE failed in the snapshot"
    fi
  fi
  git add --all
  git commit --quiet --no-verify -m "ci-local snapshot of $ROOT"
  git init --quiet --bare "$WORK/origin.git"
  git -C "$WORK/origin.git" config receive.advertisePushOptions true # GitLab takes -o ci.skip
  git remote add origin "$WORK/origin.git"
  git push --quiet origin main
  git remote set-head origin main
  git remote add gcl-origin "$GCL_ORIGIN"
  git config "url.$WORK/origin.git.insteadOf" "$PUSH_URL"
  [[ $BRANCH == main ]] || git switch --quiet -c "$BRANCH"
}

if [[ $REUSE == 1 ]]; then
  [[ -d $PROJECT/.git ]] || die "CI_LOCAL_REUSE=1 but there is no snapshot in $PROJECT"
  cd "$PROJECT"
else
  make_snapshot
fi

if ((!RUNS_JOBS)); then
  S3_MODE=none
fi
case $S3_MODE in
  none) ;;
  external)
    [[ -n ${S3_ENDPOINT:-} && -n ${AWS_ACCESS_KEY_ID:-} && -n ${AWS_SECRET_ACCESS_KEY:-} ]] \
      || die "CI_LOCAL_S3=external needs S3_ENDPOINT, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    ;;
  loopback)
    # Own folder, ports and test keys: a server or keys the developer has are left alone.
    unset S3_ENDPOINT S3_BUCKET AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    read -r s3_port mon_port < <(free_ports)
    S3_DIR=$(mktemp -d "${TMPDIR:-/tmp}/cd4ml-ci-s3.XXXXXX")
    S3_PORT=$s3_port S3_MON_PORT=$mon_port scripts_s3 start
    eval "$(scripts_s3 env)"
    ;;
  *) die "CI_LOCAL_S3 must be loopback or external, not $S3_MODE" ;;
esac

# The Dask cluster of train-dask: started when the jobs to run include it (the whole pipeline, or
# train-dask named); its processes run from the project's environment, on 127.0.0.1 only.
dask_jobs=0
if ((RUNS_JOBS)); then
  dask_jobs=1
  if (($#)); then
    dask_jobs=0
    for arg in "$@"; do [[ $arg == train-dask ]] && dask_jobs=1; done
  fi
fi
if ((dask_jobs)); then
  mkdir -p "$WORK/dask"
  PYTHONPATH=$ROOT "$ROOT/.venv/bin/python" -m tools.daskcluster --workers 2 --dir "$WORK/dask" \
    >"$WORK/dask/address" 2>"$WORK/dask/cluster.log" &
  DASK_PID=$!
  for _ in $(seq 180); do
    grep -q '^DASK_SCHEDULER_ADDRESS=' "$WORK/dask/address" && break
    kill -0 "$DASK_PID" 2>/dev/null || die "the Dask cluster did not start: $(tail -n 20 "$WORK/dask/cluster.log")"
    sleep 0.5
  done
  DASK_ADDRESS=$(sed -n 's/^DASK_SCHEDULER_ADDRESS=//p' "$WORK/dask/address")
  [[ -n $DASK_ADDRESS ]] || die "the Dask cluster did not start within 90 s (logs in $WORK/dask)"
  log "Dask cluster at $DASK_ADDRESS (logs in $WORK/dask)"
fi

# The deploy job's "production host": nginx and the versions it serves, on a free loopback port.
DEPLOY_HOME=$WORK/deploy
read -r ROLLOUT_PORT _ < <(free_ports)
# The release key of this run: the release job signs with the private half (a masked CI variable
# on GitLab), fetch and the services verify with the public half (keys/release.pub on GitLab).
KEYS=$WORK/keys
[[ -f $KEYS/release.pem ]] || "$ROOT/.venv/bin/python" -m cd4ml.signing keygen \
  --private-key "$KEYS/release.pem" --public-key "$KEYS/release.pub" >/dev/null
args=(--force-shell-executor --shell-isolation
  --variable "CD4ML_SIGNING_KEY=$(base64 -w0 "$KEYS/release.pem")"
  --variable "CD4ML_PUBLIC_KEY=$KEYS/release.pub"
  --variable "DEPLOY_HOME=$DEPLOY_HOME"
  --variable "ROLLOUT_PORT=$ROLLOUT_PORT"
  --variable "CD4ML_VENV=$ROOT/.venv"
  --variable "SCALE=$SCALE"
  --variable "CD4ML_PUSH_TOKEN=$PUSH_TOKEN"
  --variable "CD4ML_LOG_KEY=$LOG_KEY")
if [[ $S3_MODE != none ]]; then
  args+=(--variable "S3_ENDPOINT=$S3_ENDPOINT"
    --variable "S3_BUCKET=${S3_BUCKET:-cd4ml-kkbox}"
    --variable "AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID"
    --variable "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY")
fi
if ((dask_jobs)); then
  args+=(--variable "DASK_SCHEDULER_ADDRESS=$DASK_ADDRESS")
  (($#)) || args+=(--manual train-dask)
fi
[[ -t 1 ]] || args+=(--no-color)
# shellcheck disable=SC2206 # CI_LOCAL_GCL_ARGS is a list of options
args+=(${CI_LOCAL_GCL_ARGS:-})

shown=("${args[@]//AWS_SECRET_ACCESS_KEY=*/AWS_SECRET_ACCESS_KEY=***}")
shown=("${shown[@]//CD4ML_SIGNING_KEY=*/CD4ML_SIGNING_KEY=***}")
log "gitlab-ci-local ${shown[*]//CD4ML_LOG_KEY=*/CD4ML_LOG_KEY=***} $*"
gitlab-ci-local "${args[@]}" "$@"
