"""The sandbox's web pages as a person sees them, read in headless Chromium.

Playwright drives Debian's chromium. Every page is reached the way a person
reaches it: the home page, then the links of the navigation bar. What the
checks read is what the page renders (the DOM after its scripts ran), never the
JSON API behind it. A screenshot of every page goes to .cache/screenshots/
before anything is checked.

Readers return plain data (lists and dicts). Checks take that data and raise
AssertionError naming the page, what it did not find, and the screenshot. The
tests can therefore point a check at something the page does not show and see
it fail.

What Debian's packages serve, as deployed by the roles:
- Prometheus 2.42: the classic UI only. `/` leads to /classic/graph, and the
  React pages at /rules, /alerts and /targets answer 404, because Debian does
  not build the React UI.
- Alertmanager 0.25: no web UI. `/` shows a notice that the package has none,
  because Debian does not build the Elm UI. The Alertmanager readers below
  follow the upstream Elm UI (ui/app/src/Views/AlertList of 0.25), for hosts
  that serve one.
- Grafana: only where its package source answers (never on this machine).
"""

import calendar
import os
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".cache" / "screenshots"
CHROMIUM = os.environ.get("AETHER_CHROMIUM", "/usr/bin/chromium")
# Flags for headless Chromium on a machine with no screen and a closed network.
# Without the background-networking flags, Chromium keeps trying Google's hosts.
# As root, Playwright adds --no-sandbox itself (chromium_sandbox is off).
CHROMIUM_ARGS = [
    "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
# Milliseconds Playwright waits for a navigation or an element.
TIMEOUT_MS = 20000
# Debian's Alertmanager serves this notice instead of a UI.
NO_AM_UI = "does not include a web application"


def screenshot(page, name):
    """Keep what the page shows now as .cache/screenshots/<name>.png; return the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / ("%s.png" % re.sub(r"[^A-Za-z0-9_.-]+", "_", name))
    page.screenshot(path=str(path), full_page=True)
    return path


def fail(page_name, shot, message):
    raise AssertionError("%s: %s (screenshot: %s)" % (page_name, message, shot))


# --- Login --------------------------------------------------------------------------

def visit(page, url):
    """Go to url as a person typing the address; return the server's answer to it.

    A browser with no credentials, or with wrong ones, meets a login prompt it
    cannot answer. Chromium then gives up on the page (Playwright raises
    net::ERR_INVALID_AUTH_CREDENTIALS), but the 401 it received is kept and
    returned."""
    from playwright.sync_api import Error as PlaywrightError
    answers = []
    page.on("response", lambda response: answers.append(response) if response.url == url else None)
    try:
        return page.goto(url)
    except PlaywrightError as error:
        if "ERR_INVALID_AUTH_CREDENTIALS" not in str(error) or not answers:
            raise
        return answers[-1]


def check_login_prompt(response, shot, page_name):
    """The server answered with a login prompt: 401 and a Basic challenge."""
    challenge = (response.headers.get("www-authenticate") or "") if response else ""
    status = response.status if response else None
    if status != 401 or not challenge.lower().startswith("basic"):
        fail(page_name, shot, "expected the login prompt (401 with a Basic challenge), got %s %r" % (status, challenge))


# --- Prometheus (classic UI) ------------------------------------------------------

def prometheus_page(page, base_url, link):
    """Open Prometheus' home page, then follow a link of its navigation bar.

    The links are "Alerts", or "Rules" and "Targets" under the "Status" menu."""
    page.goto(base_url + "/")
    if link == "Alerts":
        page.get_by_role("link", name="Alerts", exact=True).click()
    else:
        page.get_by_role("button", name="Status").click()
        page.get_by_role("link", name=link, exact=True).click()
    page.wait_for_load_state("load")


# One table; each group is a <thead> with its name, then a <tbody> with its rules.
_READ_RULES = """() => Array.from(document.querySelectorAll("thead")).map(head => ({
  name: (head.querySelector("h2 a") || {}).innerText,
  rules: Array.from(head.nextElementSibling ? head.nextElementSibling.querySelectorAll("td.rule_cell") : []).map(cell => {
    const row = cell.closest("tr");
    const head = cell.innerText.match(/^(alert|record):\\s*(\\S+)/);
    return {
      kind: head ? head[1] : null,
      name: head ? head[2] : cell.innerText.split("\\n")[0],
      state: (row.querySelector("td.state") || {innerText: ""}).innerText.trim().toLowerCase(),
      error: (row.querySelector("td.errors") || {innerText: ""}).innerText.trim(),
    };
  }),
})).filter(group => group.name)"""


def read_rules(page):
    """The rule groups the Rules page shows:
    [{"name", "rules": [{"kind": "record"|"alert", "name", "state", "error"}]}]."""
    page.wait_for_selector("td.rule_cell", timeout=TIMEOUT_MS)
    return [{**group, "name": group["name"].strip()} for group in page.evaluate(_READ_RULES)]


def check_rules(groups, shot, want_groups=(), records=(), alerts=(), page_name="Prometheus Rules page"):
    """The page shows every group of want_groups, every recording rule of records
    and every alert of alerts, and no AetherLink rule in error."""
    shown = [group["name"] for group in groups]
    missing = [name for name in want_groups if name not in shown]
    if missing:
        fail(page_name, shot, "no rule group %s (groups shown: %s)" % (", ".join(missing), ", ".join(shown) or "none"))
    rules = [(group["name"], rule) for group in groups for rule in group["rules"]]
    for kind, names in (("record", records), ("alert", alerts)):
        shown_names = {rule["name"] for _, rule in rules if rule["kind"] == kind}
        for name in names:
            if name not in shown_names:
                fail(page_name, shot, "no %s rule named %s" % ("recording" if kind == "record" else "alerting", name))
    broken = ["%s/%s: %s %s" % (group, rule["name"], rule["state"], rule["error"]) for group, rule in rules
              if group.startswith("aetherlink") and (rule["state"] == "err" or rule["error"])]
    if broken:
        fail(page_name, shot, "rules in error: %s" % "; ".join(broken))


_READ_ALERTS = """() => Array.from(document.querySelectorAll("tr.alert_header")).map(header => {
  const details = header.nextElementSibling;
  const code = details.querySelector("pre code");
  const state = ["danger", "warning", "success"].find(c => header.classList.contains("alert-" + c));
  return {
    name: header.querySelector("b").innerText.trim(),
    header: header.innerText.trim(),
    state: {danger: "firing", warning: "pending", success: "inactive"}[state] || "unknown",
    visible: details.offsetParent !== null,
    definition: code ? code.innerText : "",
    active: Array.from(details.querySelectorAll("table.alert_elements_table tr")).filter(row => row.querySelector("td"))
      .map(row => ({
        labels: Array.from(row.querySelectorAll("td:first-child .badge")).map(badge => badge.innerText.trim()),
        state: (row.querySelector("td:nth-child(2)") || {innerText: ""}).innerText.trim().toLowerCase(),
        since: (row.querySelector("td:nth-child(3)") || {innerText: ""}).innerText.trim(),
      })),
  };
})"""


def read_alerts(page):
    """The alerting rules the Alerts page lists, after a click on each to open it,
    as a person does: [{"name", "header", "state", "visible", "definition",
    "severity", "active": [{"labels": ['k="v"', ...], "state", "since",
    "since_ts"}]}]. since is the "Active Since" column as shown (UTC), since_ts
    the same in seconds since the epoch."""
    page.wait_for_selector("tr.alert_header", timeout=TIMEOUT_MS)
    headers = page.locator("tr.alert_header")
    for index in range(headers.count()):
        headers.nth(index).click()
    alerts = page.evaluate(_READ_ALERTS)
    for alert in alerts:
        found = re.search(r"^labels:\n(?:\s+.*\n)*?\s+severity:\s*(\S+)", alert["definition"], re.M)
        alert["severity"] = found.group(1) if found else None
        for row in alert["active"]:
            shown = re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["since"])
            row["since_ts"] = calendar.timegm(time.strptime(shown.group(0), "%Y-%m-%d %H:%M:%S")) if shown else None
    return alerts


def active_rows(alerts, name, tenant):
    """The rows of alert name's active alerts that carry tenant."""
    return [row for alert in alerts if alert["name"] == name
            for row in alert["active"] if 'tenant="%s"' % tenant in row["labels"]]


def check_alert_severities(alerts, shot, severities, page_name="Prometheus Alerts page"):
    """Every alert of severities ({name: severity}) is listed and, once opened,
    shows that severity label."""
    by_name = {alert["name"]: alert for alert in alerts}
    for name, severity in severities.items():
        if name not in by_name:
            fail(page_name, shot, "no alert %s (alerts listed: %s)" % (name, ", ".join(by_name) or "none"))
        alert = by_name[name]
        if not alert["visible"]:
            fail(page_name, shot, "alert %s did not open when clicked" % name)
        if alert["severity"] != severity:
            fail(page_name, shot, "alert %s shows severity %s, not %s" % (name, alert["severity"], severity))


def check_alert_firing(alerts, shot, name, tenant, since=None, page_name="Prometheus Alerts page"):
    """Alert name is shown firing, with an active row for tenant in state firing,
    active since `since` (seconds since the epoch) or later when given."""
    alert = next((alert for alert in alerts if alert["name"] == name), None)
    if alert is None:
        fail(page_name, shot, "no alert %s" % name)
    rows = active_rows(alerts, name, tenant)
    if not rows or rows[0]["state"] != "firing" or alert["state"] != "firing":
        fail(page_name, shot, "%s is not firing for tenant %s (header %r shown as %s; active rows: %s)" % (
            name, tenant, alert["header"], alert["state"],
            "; ".join("%s %s" % (" ".join(row["labels"]), row["state"]) for row in alert["active"]) or "none"))
    if since is not None and (rows[0]["since_ts"] is None or rows[0]["since_ts"] < int(since)):
        fail(page_name, shot, "%s for tenant %s is active since %s, before %s" % (
            name, tenant, rows[0]["since"], time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since))))


_READ_TARGETS = """() => Array.from(document.querySelectorAll("h2.job_header")).map(header => {
  const container = header.closest(".table-container");
  return {
    header: header.querySelector("a").innerText.trim(),
    targets: Array.from(container.querySelectorAll("tbody tr")).map(row => ({
      endpoint: row.querySelector("td.endpoint").innerText.trim(),
      state: row.querySelector("td.state").innerText.trim().toLowerCase(),
      labels: Array.from(row.querySelectorAll("td.labels .badge")).map(badge => badge.innerText.trim()),
      error: row.querySelector("td.errors").innerText.trim(),
    })),
  };
})"""


def read_targets(page):
    """The scrape pools the Targets page shows:
    [{"job", "header": "job (n/m up)", "targets": [{"endpoint", "state", "instance", "error"}]}]."""
    page.wait_for_selector("h2.job_header", timeout=TIMEOUT_MS)
    pools = page.evaluate(_READ_TARGETS)
    for pool in pools:
        pool["job"] = pool["header"].split(" (")[0]
        for target in pool["targets"]:
            instance = [label for label in target["labels"] if label.startswith("instance=")]
            target["instance"] = instance[0].split("=", 1)[1].strip('"') if instance else target["endpoint"]
    return pools


def check_targets(pools, shot, want, page_name="Prometheus Targets page"):
    """The page shows a pool per job of want ({job: [instance, ...]}) with exactly
    those instances, and every target of every pool up with no error."""
    by_job = {pool["job"]: pool for pool in pools}
    for job, instances in want.items():
        if job not in by_job:
            fail(page_name, shot, "no scrape pool %s (pools shown: %s)" % (job, ", ".join(by_job) or "none"))
        shown = sorted(target["instance"] for target in by_job[job]["targets"])
        if shown != sorted(instances):
            fail(page_name, shot, "pool %s shows instances %s, not %s" % (job, shown, sorted(instances)))
    down = ["%s %s: %s %s" % (pool["job"], target["endpoint"], target["state"], target["error"])
            for pool in pools for target in pool["targets"] if target["state"] != "up" or target["error"]]
    if down:
        fail(page_name, shot, "targets not up: %s" % "; ".join(down))
    headers = [pool["header"] for pool in pools if not re.search(r"\((\d+)/\1 up\)$", pool["header"])]
    if headers:
        fail(page_name, shot, "pools not all up: %s" % ", ".join(headers))


# --- Alertmanager (upstream Elm UI, where a host serves one) ----------------------

def alertmanager_has_ui(page):
    """False when the page is Debian's notice that the package has no web UI."""
    return NO_AM_UI not in page.inner_text("body")


_READ_AM_GROUPS = """() => Array.from(document.querySelectorAll("div.mb-3")).filter(
  div => div.querySelector(".btn-group")).map(div => ({
    labels: Array.from(div.querySelectorAll(".btn-group span.btn")).map(span => span.innerText.trim()),
  }))"""


def read_alertmanager_groups(page, inhibited=False):
    """The alert groups of Alertmanager's alert list, as their header labels:
    [{"labels": ['alertname="X"', 'tenant="t"']}]. With
    inhibited, the "Inhibited" box is ticked first, as a person would do to see
    the inhibited alerts too."""
    page.wait_for_selector("text=Inhibited", timeout=TIMEOUT_MS)
    box = page.get_by_label("Inhibited")
    if box.is_checked() != inhibited:
        box.set_checked(inhibited, force=True)
    page.wait_for_timeout(1000)
    return page.evaluate(_READ_AM_GROUPS)


def has_group(groups, alertname, tenant):
    return any('alertname="%s"' % alertname in group["labels"] and 'tenant="%s"' % tenant in group["labels"]
               for group in groups)


def check_alertmanager_group(groups, shot, alertname, tenant, present=True, page_name="Alertmanager alert list"):
    """A group of exactly alertname + tenant is listed (present) or is not."""
    if has_group(groups, alertname, tenant) != present:
        fail(page_name, shot, "the group alertname=%s tenant=%s is %s (groups: %s)" % (
            alertname, tenant, "missing" if present else "shown as active",
            "; ".join(" ".join(group["labels"]) for group in groups) or "none"))


# --- Grafana ----------------------------------------------------------------------

def grafana_login(page, base_url, user, password):
    """Log in through Grafana's login form."""
    page.goto(base_url + "/login")
    page.get_by_label(re.compile("Email or username", re.I)).fill(user)
    page.get_by_label(re.compile("^Password", re.I)).fill(password)
    page.get_by_role("button", name=re.compile("Log in", re.I)).click()
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"), timeout=TIMEOUT_MS)


def read_grafana_folder(page, base_url, folder):
    """The dashboard titles the folder's page lists, reached from the Dashboards page."""
    page.goto(base_url + "/dashboards")
    page.get_by_role("link", name=folder, exact=True).first.click()
    page.wait_for_load_state("networkidle")
    return [link.inner_text().strip() for link in page.locator("a[href*='/d/']").all()]


def read_grafana_dashboard(page, base_url, uid, tenant):
    """Open a dashboard with the tenant variable set; once its queries settle,
    return {panel title: problem} for the panels that show "No data" or an error."""
    page.goto("%s/d/%s?var-tenant=%s" % (base_url, uid, tenant))
    page.wait_for_load_state("networkidle")
    deadline = time.time() + TIMEOUT_MS / 1000
    while time.time() < deadline and page.locator("[data-testid*='Panel status loading']").count():
        page.wait_for_timeout(500)
    problems = {}
    for panel in page.locator("[data-viz-panel-key], [data-panelid]").all():
        title = (panel.locator("h2").first.inner_text() if panel.locator("h2").count() else "?").strip()
        if panel.locator("[data-testid*='Panel status error']").count():
            problems[title] = "error"
        elif "No data" in panel.inner_text():
            problems[title] = "No data"
    return problems

