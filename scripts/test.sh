#!/usr/bin/env bash
# Run every test suite of the project (called by `make test`): lint, then the
# controller-side pytest suites and every Molecule scenario, TEST_JOBS of them
# at a time (default 2). All suites run even when one fails; the last line
# counts them and the exit code is non-zero when any failed.
#
# Running two at a time is safe: every scenario has its own container names
# and Docker network, molecule keeps each scenario's state apart, the browser
# suite (scripts/browser.sh) uses the local sandbox's containers, network and
# loopback ports, which no scenario uses, and the pytest suites touch no
# container. It pays because a scenario spends much of
# its time waiting (systemd, alert `for` durations, group_wait) rather than
# computing. Each suite's output goes to .cache/logs/<suite>.log and is printed
# whole when the suite ends, so two suites never interleave on the screen.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-0}" PY_COLORS="${PY_COLORS:-0}"
jobs="${TEST_JOBS:-2}"
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
  printf 'TEST_JOBS must be a whole number >= 1, got %q\n' "$jobs" >&2
  exit 2
fi
logs=.cache/logs
run="$logs/run"                 # this run's bookkeeping: claims and results
rm -rf "$run" && mkdir -p "$run/claims"
: > "$run/results"

# suite NAME COMMAND...: run one suite, its output into its log, then print
# the log and record "passed|failed <seconds> <name>".
suite() {
  local name="$1"; shift
  local log="$logs/${name//[^A-Za-z0-9_.-]/_}.log" start=$SECONDS status
  if "$@" > "$log" 2>&1; then status=passed; else status=failed; fi
  local took=$((SECONDS - start))
  {
    flock 9
    printf '\n=== %s ===\n' "$name"
    cat "$log"
    printf '=== %s: %s in %ss ===\n' "$name" "$status" "$took"
    printf '%s %s %s\n' "$status" "$took" "$name" >> "$run/results"
  } 9> "$run/print.lock"
}

molecule_scenario() { # directory-containing-molecule scenario
  (cd "$1" && molecule test --scenario-name "$2")
}

# Lint first and alone: a syntax error should not wait for the scenarios.
suite yamllint yamllint --strict .
suite ansible-lint ansible-lint

# The queue, longest first (measured times in benchmarks/README.md), so that
# the short ones fill the gaps at the end.
names=() commands=()
add() { names+=("$1"); shift; commands+=("$*"); }
for dir in molecule/*/ roles/*/molecule/*/; do
  [[ -f "$dir/molecule.yml" ]] || continue
  dir="${dir%/}"
  scenario="$(basename "$dir")"
  project="$(dirname "$(dirname "$dir")")"
  add "molecule ${project}:${scenario}" molecule_scenario "$project" "$scenario"
done
add "pytest tests" python -m pytest tests -q -p no:cacheprovider --ignore=tests/browser
add "browser" bash scripts/browser.sh
if [[ -f app/pyproject.toml ]]; then
  add "pytest app" python -m pytest app/tests -q -p no:cacheprovider
fi
order=("molecule .:default" "molecule roles/alertmanager:default" "molecule roles/aether_app:default"
       "browser" "pytest tests" "molecule roles/grafana:default" "molecule roles/prometheus:default" "pytest app")
queue=()
for name in "${order[@]}"; do
  for i in "${!names[@]}"; do [[ "${names[$i]}" == "$name" ]] && queue+=("$i"); done
done
for i in "${!names[@]}"; do   # anything new goes last
  [[ " ${queue[*]} " == *" $i "* ]] || queue+=("$i")
done

# A worker takes the next suite nobody has claimed (mkdir is atomic).
worker() {
  local i
  for i in "${queue[@]}"; do
    mkdir "$run/claims/$i" 2>/dev/null || continue
    # shellcheck disable=SC2086  # the command is a list of words
    suite "${names[$i]}" ${commands[$i]}
  done
}
pids=()
for ((w = 0; w < jobs; w++)); do
  worker & pids+=($!)
done
wait "${pids[@]}"

passed=$(grep -c '^passed ' "$run/results")
failed=$(grep -c '^failed ' "$run/results")
printf '\nsuite times (s): %s\n' "$(awk '{ $1 = ""; t = $2; $2 = ""; sub(/^ +/, ""); printf "%s %s; ", $0, t }' "$run/results")"
((failed)) && printf 'failed suites: %s\n' "$(grep '^failed ' "$run/results" | cut -d' ' -f3- | paste -sd, -)"
printf 'suites: %d passed, %d failed (%d at a time, %d s)\n' "$passed" "$failed" "$jobs" "$SECONDS"
((failed == 0))
