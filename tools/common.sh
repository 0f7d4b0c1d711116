# shellcheck shell=bash
# Sourced by the tools' shell scripts (after they set TOOL): `log` and `die` with its name.

log() { echo "$TOOL: $*" >&2; }

# Prints the error line, then the tail of a log file when one is named; exits 1.
die() {
  log "error: $1"
  if [[ -n ${2:-} && -s $2 ]]; then
    echo "--- last lines of $2:" >&2
    tail -n 20 "$2" >&2
  fi
  exit 1
}
