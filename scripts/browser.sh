#!/usr/bin/env bash
# The browser checks of the sandbox (`make browser`; `make test` runs it as one
# of its suites): the pages of Prometheus, Alertmanager and Grafana read in
# headless Chromium (tests/browser/).
#   1. deploys the sandbox as `make up` does (playbooks/sandbox_up.yml: the
#      stack, smoke traffic, verify), with the alert durations shortened
#      (tests/browser/sandbox_vars.yml) so that a degraded tenant's alert fires
#      within a minute;
#   2. runs tests/browser with AETHER_BROWSER=1; a screenshot of every page it
#      reads is kept in .cache/screenshots/;
#   3. leaves the machine as it found it: a sandbox that was not running before
#      is removed (`make down`); one that was running is deployed again without
#      the shortened durations. BROWSER_KEEP=1 leaves the sandbox as the checks
#      left it, for a person to look at.
# The exit code is that of the checks (or of the deploy, when it failed).
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
up=(ansible-playbook -i inventories/local playbooks/sandbox_up.yml)
log() { printf 'browser: %s\n' "$*"; }

if [[ ! -x /usr/bin/chromium ]]; then
  log "/usr/bin/chromium is missing: run \`make setup\` (it installs Debian's chromium)"
  exit 2
fi
# The sandbox was running before when its containers carry its owner label.
existed="$(docker ps -aq --filter label=owner=aetherlink-sandbox | head -1)"
start=$SECONDS

deploy_log=.cache/logs/browser-sandbox.log
mkdir -p .cache/logs
log "deploying the sandbox with shortened alert durations (tests/browser/sandbox_vars.yml); output in $deploy_log"
"${up[@]}" -e @tests/browser/sandbox_vars.yml > "$deploy_log" 2>&1
status=$?
deployed=$((SECONDS - start))
if ((status != 0)); then
  log "deploying the sandbox failed (exit ${status}); the end of its output:"
  tail -n 80 "$deploy_log"
else
  log "sandbox up in ${deployed} s; reading its pages"
  AETHER_BROWSER=1 python -m pytest tests/browser -p no:cacheprovider -v -s -rs
  status=$?
  log "browser checks: exit ${status} after $((SECONDS - start - deployed)) s; screenshots in .cache/screenshots/"
fi

if [[ -n "${BROWSER_KEEP:-}" ]]; then
  log "BROWSER_KEEP is set: the sandbox stays as the checks left it"
elif [[ -n "$existed" ]]; then
  log "the sandbox was running before: deploying it again without the shortened durations"
  "${up[@]}" >/dev/null || { log "redeploying the sandbox failed: run \`make up\`"; status=1; }
else
  ansible-playbook -i inventories/local playbooks/sandbox_down.yml >/dev/null \
    || { log "removing the sandbox failed: run \`make down\`"; status=1; }
fi
log "done in $((SECONDS - start)) s"
exit "$status"
