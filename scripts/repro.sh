#!/usr/bin/env bash
# `dvc repro` that leaves the workspace usable when it fails: DVC deletes a stage's outputs before
# it runs the stage, so a rejected input would leave models/ or clean_data/ gone. After a failure
# the outputs that dvc.lock records (the last good run of each stage) are checked out again from
# the DVC cache, and the last line says so. Arguments go to `dvc repro`.
set -uo pipefail
DVC=${DVC:-dvc}

"$DVC" repro "$@"
status=$?
((status == 0)) && exit 0

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
