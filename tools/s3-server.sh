#!/usr/bin/env bash
# Loopback S3 server for the DVC remote: a one-node Ceph cluster (1 monitor, 1 memstore OSD and
# radosgw) on 127.0.0.1 only, every file under S3_SERVER_DIR. Data lives in RAM, gone on stop.
#
#   tools/s3-server.sh start            start it (no-op when running; restarts a stopped gateway)
#   tools/s3-server.sh stop             stop it and delete S3_SERVER_DIR (no-op when stopped)
#   tools/s3-server.sh status           exit 0 when it serves S3, 3 when stopped, 1 when broken
#   tools/s3-server.sh env              print `export` lines for the endpoint, keys and bucket
#   tools/s3-server.sh stop-gateway     stop radosgw only (an outage for tests; `start` ends it)
#
# Settings (environment): S3_SERVER_DIR (default ${TMPDIR:-/tmp}/cd4ml-kkbox-s3), S3_PORT (7480),
# S3_MON_PORT (6789), S3_BUCKET (cd4ml-kkbox), AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (the keys
# of the S3 user it creates; test keys by default), S3_STORE_MB (memstore size, 2048), S3_PYTHON
# (a Python with boto3, default .venv/bin/python), S3_WAIT_S (start-up time-out per daemon, 60).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${S3_SERVER_DIR:-${TMPDIR:-/tmp}/cd4ml-kkbox-s3}
PORT=${S3_PORT:-7480}
MON_PORT=${S3_MON_PORT:-6789}
BUCKET=${S3_BUCKET:-cd4ml-kkbox}
ACCESS_KEY=${AWS_ACCESS_KEY_ID:-cd4ml-test}
SECRET_KEY=${AWS_SECRET_ACCESS_KEY:-cd4ml-test-secret-do-not-use-elsewhere}
STORE_MB=${S3_STORE_MB:-2048}
PYTHON=${S3_PYTHON:-$ROOT/.venv/bin/python}
WAIT_S=${S3_WAIT_S:-60}

CONF=$DIR/ceph.conf
MARKER=$DIR/.cd4ml-s3-server
# The daemons in stop order: the OSD waits for a monitor that is gone, so the monitor goes last.
DAEMONS=(radosgw osd mon)

TOOL=s3-server
# shellcheck source=tools/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ceph_() { ceph -c "$CONF" --connect-timeout 5 "$@"; }

# A client that talks to the monitor before it has the cluster's fsid gets EPERM ("wrong fsid"),
# more often on a busy machine. Every command retried here is idempotent.
retry() {
  local i
  for ((i = 1; i < 5; i++)); do
    "$@" 2>>"$DIR/log/retries.err" && return 0
    sleep 0.5
  done
  "$@"
}

pid_of() { cat "$DIR/run/$1.pid" 2>/dev/null || true; }

# True when the pid file of daemon $1 names a live process of the expected program. A zombie counts
# as gone: the daemons outlive this script, and whoever inherits them may reap them seconds later.
alive() {
  local pid comm stat
  pid=$(pid_of "$1")
  [[ -n $pid ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ ${stat##*) } != Z* ]] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  case $1 in
    radosgw) [[ $comm == radosgw ]] ;;
    osd) [[ $comm == ceph-osd ]] ;;
    mon) [[ $comm == ceph-mon ]] ;;
  esac
}

osd_up() { [[ $(ceph_ osd stat 2>/dev/null) == *"1 up"* ]]; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

http_ok() {
  local line
  exec 3<>"/dev/tcp/127.0.0.1/$PORT" || return 1
  printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  read -r -t 5 line <&3 || true
  exec 3>&-
  [[ $line == "HTTP/1."?" 200"* ]]
}

# Waits up to WAIT_S seconds for "$@" to succeed; returns 1 when daemon $1 exits, 2 on time-out.
wait_until() {
  local daemon=$1 deadline=$((SECONDS + WAIT_S))
  shift
  until "$@" >/dev/null 2>&1; do
    alive "$daemon" || return 1
    ((SECONDS < deadline)) || return 2
    sleep 0.2
  done
}

# Ends the script when wait_until returned $1 != 0: message $2, then the tail of log $3.
check_wait() {
  ((${1} != 1)) || die "$2: the process exited" "$3"
  ((${1} != 2)) || die "$2: not ready after ${WAIT_S} s" "$3"
}

wait_for() {
  local daemon=$1 what=$2 logfile=$3 rc=0
  shift 3
  wait_until "$daemon" "$@" || rc=$?
  check_wait "$rc" "$what" "$logfile"
}

# Starts a daemon in the foreground of its own session, detached from the caller's terminal and
# pipes. Returns once the forked shell has become the daemon, so that `alive` can tell "still
# starting" from "exited" (or once it is gone).
launch() {
  local name=$1 pid i
  shift
  setsid "$@" -c "$CONF" -f </dev/null >>"$DIR/log/$name.out" 2>&1 &
  pid=$!
  echo "$pid" >"$DIR/run/$name.pid"
  for ((i = 0; i < 200; i++)); do
    alive "$name" && return 0
    [[ -e /proc/$pid && $(cat "/proc/$pid/stat" 2>/dev/null) != *") Z"* ]] || return 0
    sleep 0.05
  done
}

stop_daemon() {
  local name=$1 pid i
  alive "$name" || return 0
  pid=$(pid_of "$name")
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    alive "$name" || return 0
    sleep 0.1
  done
  log "$name (pid $pid) ignored SIGTERM for 10 s: killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

write_conf() {
  local fsid=$1
  cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$MON_PORT
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr2 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
# The monitor refuses to start below 5 % free disk by default (seen on a 252 GB CI disk with 12 GB
# free); its store is a few MB and the OSD keeps objects in memory, so only a full disk matters.
mon data avail crit = 0
# At boot the OSD would put itself into the CRUSH map, and one boot in ten sends that command
# before it knows the cluster fsid and dies ("wrong fsid"); this script places it in the map.
osd crush update on start = false
osd class update on start = false
mon warn on insecure global id reclaim allowed = false
# A one-node cluster has nothing to batch: propose map changes at once (pool creation is faster).
paxos propose interval = 0.05
paxos min wait = 0.01
run dir = $DIR/run
log file = $DIR/log/\$name.log
admin socket = $DIR/run/\$name.asok
mon data = $DIR/mon/\$cluster-\$id
osd data = $DIR/osd/\$cluster-\$id
keyring = $DIR/keyring
osd objectstore = memstore
memstore device bytes = $((STORE_MB * 1024 * 1024))

[client]
admin socket = $DIR/run/\$name.\$pid.asok

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $DIR/rgw
# A deleted object's data is reclaimed within seconds (by default after 2 h): the store is RAM,
# and a full OSD blocks every write, so what a bench or test deletes must make room again.
rgw gc obj min wait = 0
rgw gc processor period = 2
EOF
}

# The `env` command prints this file; values are shell-quoted so that `eval` reads them back.
write_env() {
  (
    umask 077
    printf 'export %s=%q\n' \
      S3_ENDPOINT "http://127.0.0.1:$PORT" \
      S3_BUCKET "$BUCKET" \
      AWS_ACCESS_KEY_ID "$ACCESS_KEY" \
      AWS_SECRET_ACCESS_KEY "$SECRET_KEY" >"$DIR/server.env"
  )
}

# On a busy machine radosgw sometimes gives up while it sets up its pools; a second try works.
start_gateway() {
  local rc=0
  launch radosgw radosgw -n client.rgw.a
  wait_until radosgw http_ok || rc=$?
  if ((rc == 1)); then
    log "radosgw exited while starting: trying once more"
    rc=0
    launch radosgw radosgw -n client.rgw.a
    wait_until radosgw http_ok || rc=$?
  fi
  check_wait "$rc" "radosgw did not serve http://127.0.0.1:$PORT" "$DIR/log/client.rgw.a.log"
}

create_user() {
  radosgw-admin -c "$CONF" user info --uid cd4ml >/dev/null 2>&1 \
    || radosgw-admin -c "$CONF" user create --uid cd4ml --display-name "cd4ml-kkbox tests" \
      --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" >/dev/null
}

create_user_and_bucket() {
  retry create_user 2>"$DIR/log/user-create.err" \
    || die "radosgw-admin could not create the S3 user" "$DIR/log/user-create.err"
  [[ -x $PYTHON ]] || die "no Python with boto3 at $PYTHON to create the bucket: run make install"
  AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY "$PYTHON" -c '
import sys

import boto3

s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
s3.create_bucket(Bucket=sys.argv[2])
' "http://127.0.0.1:$PORT" "$BUCKET" 2>"$DIR/log/bucket.err" \
    || die "could not create bucket $BUCKET" "$DIR/log/bucket.err"
}

# Removes the server directory, refusing anything this script did not create.
remove_dir() {
  [[ -e $DIR ]] || return 0
  [[ -f $MARKER ]] || die "$DIR was not made by this script: not deleting it"
  rm -rf -- "$DIR"
}

stop_all() {
  local name
  for name in "${DAEMONS[@]}"; do
    stop_daemon "$name"
  done
  remove_dir
}

on_start_failure() {
  local rc=$?
  trap - EXIT
  if ((rc != 0)); then
    log "start failed: stopping what was started and deleting $DIR"
    stop_all || true
  fi
  exit "$rc"
}

cmd_start() {
  local t0=$SECONDS
  if alive mon && alive osd; then
    if alive radosgw; then
      log "already running on http://127.0.0.1:$PORT ($DIR)"
      return 0
    fi
    log "restarting radosgw on 127.0.0.1:$PORT"
    start_gateway
    log "radosgw is back on http://127.0.0.1:$PORT"
    return 0
  fi
  if [[ -f $MARKER ]]; then
    log "found a stopped or broken server in $DIR: cleaning it up"
    stop_all
  elif [[ -e $DIR && -n $(ls -A "$DIR" 2>/dev/null) ]]; then
    die "$DIR exists and was not made by this script: set S3_SERVER_DIR to a new directory"
  fi
  # Unix sockets take at most 107 bytes of path; Ceph's admin sockets live under $DIR/run.
  ((${#DIR} <= 70)) || die "S3_SERVER_DIR is too long for Ceph's unix sockets (>70 chars): $DIR"
  local cmd
  for cmd in ceph ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph-authtool setsid; do
    command -v "$cmd" >/dev/null || die "$cmd not found: run make system-deps"
  done
  port_open "$PORT" && die "port $PORT on 127.0.0.1 is in use: set S3_PORT"
  port_open "$MON_PORT" && die "port $MON_PORT on 127.0.0.1 is in use: set S3_MON_PORT"

  mkdir -p "$DIR"
  touch "$MARKER"
  trap on_start_failure EXIT
  # Without these, an interrupted start would exit without running the EXIT trap.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  mkdir -p "$DIR"/{run,log,mon,osd,rgw}
  local fsid osd_uuid osd_id
  fsid=$(cat /proc/sys/kernel/random/uuid)
  write_conf "$fsid"
  write_env

  log "starting the monitor on 127.0.0.1:$MON_PORT"
  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' \
    >"$DIR/log/mkfs.out" 2>&1 || die "ceph-authtool failed" "$DIR/log/mkfs.out"
  # --addv with v1: monmaptool --add would assume msgr2 for any port but 6789.
  monmaptool --create --addv a "[v1:127.0.0.1:$MON_PORT]" --fsid "$fsid" "$DIR/monmap" \
    >>"$DIR/log/mkfs.out" 2>&1 || die "monmaptool failed" "$DIR/log/mkfs.out"
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring" \
    >"$DIR/log/mon-mkfs.out" 2>&1 || die "ceph-mon --mkfs failed" "$DIR/log/mon-mkfs.out"
  launch mon ceph-mon -i a
  wait_for mon "the monitor did not answer on 127.0.0.1:$MON_PORT" "$DIR/log/mon.a.log" ceph_ -s

  log "starting the OSD (memstore, ${STORE_MB} MiB of RAM at most)"
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  osd_id=$(retry ceph_ osd new "$osd_uuid") || die "ceph osd new failed" "$DIR/log/retries.err"
  retry ceph_ osd crush add "osd.$osd_id" 1.0 root=default >/dev/null \
    || die "ceph osd crush add failed" "$DIR/log/retries.err"
  mkdir -p "$DIR/osd/ceph-$osd_id"
  ceph-osd -c "$CONF" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" \
    >"$DIR/log/osd-mkfs.out" 2>&1 || die "ceph-osd --mkfs failed" "$DIR/log/osd-mkfs.out"
  launch osd ceph-osd -i "$osd_id"
  wait_for osd "the OSD did not come up" "$DIR/log/osd.$osd_id.log" osd_up

  log "starting radosgw on 127.0.0.1:$PORT"
  start_gateway
  create_user_and_bucket
  trap - EXIT INT TERM
  log "ready in $((SECONDS - t0)) s: http://127.0.0.1:$PORT, bucket $BUCKET ($DIR)"
}

cmd_stop() {
  if [[ ! -e $DIR ]]; then
    log "not running ($DIR does not exist)"
    return 0
  fi
  local t0=$SECONDS
  stop_all
  log "stopped in $((SECONDS - t0)) s and deleted $DIR"
}

cmd_status() {
  local name state=0
  if [[ ! -e $DIR ]]; then
    log "stopped"
    return 3
  fi
  for name in "${DAEMONS[@]}"; do
    if alive "$name"; then
      log "$name: running (pid $(pid_of "$name"))"
    else
      log "$name: not running"
      state=1
    fi
  done
  if ((state == 0)) && http_ok 2>/dev/null; then
    log "serving S3 on http://127.0.0.1:$PORT"
    return 0
  fi
  log "broken: '$0 start' restarts a stopped gateway; else run '$0 stop', then '$0 start'"
  return 1
}

cmd_env() {
  [[ -f $DIR/server.env ]] || die "not running: start it with '$0 start'"
  cat "$DIR/server.env"
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  stop-gateway)
    stop_daemon radosgw
    log "radosgw stopped (the cluster keeps running; '$0 start' restarts it)"
    ;;
  *)
    echo "usage: $0 start|stop|status|env|stop-gateway" >&2
    exit 2
    ;;
esac
