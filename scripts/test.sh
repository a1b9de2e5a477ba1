#!/usr/bin/env bash
# Run every test suite of the project (called by `make test`): lint, the
# controller-side pytest suites, then every Molecule scenario. All suites run
# even when one fails; the last line counts them and the exit code is non-zero
# when any failed. Output of each Molecule scenario is also kept in
# .cache/logs/<scenario>.log.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-0}" PY_COLORS="${PY_COLORS:-0}"
mkdir -p .cache/logs

passed=0 failed=0 failures=()
suite() { # name command...
  local name="$1"; shift
  local start=$SECONDS
  printf '\n=== %s ===\n' "$name"
  if "$@"; then
    passed=$((passed + 1)); printf '=== %s: passed in %ss ===\n' "$name" $((SECONDS - start))
  else
    failed=$((failed + 1)); failures+=("$name"); printf '=== %s: FAILED after %ss ===\n' "$name" $((SECONDS - start))
  fi
}

molecule_scenario() { # directory-containing-molecule scenario
  (cd "$1" && molecule test --scenario-name "$2") 2>&1 | tee ".cache/logs/$(basename "$1")-$2.log"
}

suite yamllint yamllint --strict .
suite ansible-lint ansible-lint
suite "pytest tests" python -m pytest tests -q -p no:cacheprovider
if [[ -f app/pyproject.toml ]]; then
  suite "pytest app" python -m pytest app/tests -q -p no:cacheprovider
fi

scenarios=()
for dir in roles/*/molecule/*/ molecule/*/; do
  [[ -f "$dir/molecule.yml" ]] || continue
  scenarios+=("$dir")
done
for dir in "${scenarios[@]}"; do
  dir="${dir%/}"
  scenario="$(basename "$dir")"
  project="$(dirname "$(dirname "$dir")")"
  suite "molecule ${project}:${scenario}" molecule_scenario "$project" "$scenario"
done

printf '\n'
((failed)) && printf 'failed suites: %s\n' "${failures[*]}"
printf 'suites: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
