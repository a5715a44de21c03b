#!/usr/bin/env bash
# The suite as other machines would run it, on this one (2 cores):
#   bash tests/other_machines/run.sh fast    # the engine 2-4x faster than the UI and tests
#   bash tests/other_machines/run.sh loaded  # both cores busy with other work
# Tests must pass on both: none may depend on how fast the engine or the terminal is.
set -u
cd "$(dirname "$0")/../.."
hog() { taskset -c "$1" nice -n "${2:-0}" sh -c 'while :; do :; done' & hogs+=($!); }
hogs=()
trap 'kill "${hogs[@]}" 2>/dev/null' EXIT
case "${1:-}" in
  fast)
    hog 0
    PYTHONPATH="$PWD/tests/other_machines" taskset -c 0 python -m pytest -q -p no:cacheprovider "${@:2}" ;;
  loaded)
    hog 0; hog 1
    python -m pytest -q -p no:cacheprovider "${@:2}" ;;
  *) echo "usage: $0 fast|loaded [pytest args]"; exit 2 ;;
esac
