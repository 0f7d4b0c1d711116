#!/usr/bin/env bash
# `dvc repro` that leaves the workspace usable when it fails: DVC deletes a stage's outputs before
# it runs the stage, so a rejected input would leave models/ or clean_data/ gone. After a failure
# the outputs that dvc.lock records (the last good run of each stage) are checked out again from
# the DVC cache, and the last line says so. Arguments go to `dvc repro`.
#
# ENGINE=local|dask (make repro ENGINE=dask) runs preprocess and train on that engine even when
# DVC finds them up to date: the engine is where a stage runs, not a parameter (cd4ml.engine).
set -uo pipefail
DVC=${DVC:-dvc}
ENGINE=${ENGINE:-}

run() {
  if [[ -z $ENGINE ]]; then
    "$DVC" repro "$@"
    return
  fi
  case $ENGINE in
    local | dask) ;;
    *)
      echo "error: ENGINE=$ENGINE: use local or dask" >&2
      return 2
      ;;
  esac
  export CD4ML_ENGINE=$ENGINE
  "$DVC" repro split && "$DVC" repro --force --single-item preprocess train && "$DVC" repro "$@"
}

run "$@"
status=$?
((status == 0 || status == 2)) && exit "$status"

mapfile -t stages < <("$DVC" stage list --name-only 2>/dev/null)
failed="error: dvc repro failed (exit $status; the stage's error is above)"
# DVC restores what its cache holds and lists the rest after "Checkout failed for following targets".
if ! missing=$("$DVC" checkout "${stages[@]}" 2>&1 >/dev/null); then
  missing=$(sed -n '/following targets:/,/cache up to date/p' <<<"$missing" | sed '1d;$d' | xargs)
  echo "$failed; the last good outputs of dvc.lock are back in place except ${missing:-some}," \
    "which the DVC cache lacks: \`make pull\` fetches them" >&2
else
  echo "$failed; the last good outputs recorded in dvc.lock are back in place (dvc checkout)" >&2
fi
exit "$status"
