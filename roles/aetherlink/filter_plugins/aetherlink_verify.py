"""Filters of playbooks/verify.yml: evaluate the live stack's API answers, report them.

Every check of the verify playbook is one *row*, a plain mapping::

    {"service": "prometheus", "check": "targets up", "status": "failed",
     "detail": "aether_app/aether-app-1 down (connection refused)"}

``service`` is the inventory group the check belongs to (prometheus,
alertmanager, aether_app, grafana), ``status`` one of ``ok``, ``failed`` or
``skipped``, ``detail`` one line of text. A row may also carry ``retry: true``:
the state is still settling (a target not scraped yet, a cluster still
joining), and the playbook's bounded ``until`` loop asks again.

The evaluators take the registered result of one task (``ansible.builtin.uri``,
``slurp``, ``command``) and return a list of rows. They read only the answer
(``status``, ``json``, ``content``, ``msg``, ``stdout``): never the request, its
headers or the module's arguments, so no credential can reach a row. After
the checks, ``aetherlink_verify_collect`` gathers the rows of every host,
``aetherlink_verify_table`` prints them and ``aetherlink_verify_failures`` /
``aetherlink_verify_summary`` name the failed ones. All are pure functions on
plain data (tests/test_verify_filters.py).
"""

import base64
import importlib.util
import math
import os
import re
from collections.abc import Mapping
from datetime import datetime, timezone

import yaml
from ansible.errors import AnsibleFilterError

OK = "ok"
FAILED = "failed"
SKIPPED = "skipped"
STATUSES = (OK, FAILED, SKIPPED)
SERVICES = ("prometheus", "alertmanager", "aether_app", "grafana")

# Shown in the table's result column.
_RESULT_LABEL = {OK: "ok", FAILED: "FAILED", SKIPPED: "skipped"}
_HEADER = ("host", "check", "result", "detail")
# A detail longer than this is cut (the table stays readable; the failure
# message names the check, the table row gives the start of the story).
DETAIL_MAX = 240
_WHITESPACE = re.compile(r"\s+")
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _sibling(name):
    """A module of this directory, loaded by path as Ansible loads filter plugins."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    spec = importlib.util.spec_from_file_location("aetherlink_verify_uses_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# One parser of the services' own metrics: the one the reload handlers use.
_metric_value = _sibling("aetherlink_service").metric_value


# --- Rows -----------------------------------------------------------------------


def _one_line(text):
    text = _WHITESPACE.sub(" ", str(text)).strip()
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 3] + "..."


def _row(service, check, status, detail, retry=False):
    row = {"service": service, "check": check, "status": status, "detail": _one_line(detail)}
    if retry:
        row["retry"] = True
    return row


def _mapping(filter_name, argument, value):
    if not isinstance(value, Mapping):
        raise AnsibleFilterError(
            "%s: %s must be a mapping (a registered task result), got %s"
            % (filter_name, argument, type(value).__name__)
        )
    return value


def _list(filter_name, argument, value):
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise AnsibleFilterError("%s: %s must be a list, got %s" % (filter_name, argument, type(value).__name__))
    return list(value)


def _status(result):
    try:
        return int(result.get("status", -1))
    except (TypeError, ValueError):
        return -1


def _no_answer(result):
    """Why a request got no usable answer, in one short line ('' when it got a 200)."""
    if result.get("unreachable"):
        return "host unreachable: %s" % (result.get("msg") or "no message")
    if result.get("skipped"):
        return "not run"
    status = _status(result)
    if status == 200:
        return ""
    if status < 0:
        message = str(result.get("msg") or "no answer")
        # uri: "Status code was -1 and not [200]: Request failed: <urlopen error ...>"
        message = message.split("Request failed: ", 1)[-1]
        return "no answer: %s" % message
    body = result.get("json")
    if isinstance(body, Mapping):
        reason = body.get("error") or body.get("message") or body.get("status") or ""
    else:
        reason = result.get("content") or ""
    reason = _one_line(reason)[:120]
    return "HTTP %d%s" % (status, (": " + reason) if reason else "")


def _json(result):
    body = result.get("json")
    return body if isinstance(body, (Mapping, list)) else None


def _names(values, limit=8):
    values = list(values)
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (" and %d more" % (len(values) - limit) if len(values) > limit else "")


def _prometheus_data(result):
    """``data`` of a Prometheus API answer with status success, else None."""
    body = _json(result)
    if isinstance(body, Mapping) and body.get("status") == "success":
        return body.get("data")
    return None


def _float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _epoch(text):
    """Seconds since the epoch of an RFC 3339 time as Prometheus writes it (nanoseconds allowed), or None."""
    match = _RFC3339.match(str(text or ""))
    if not match:
        return None
    base, fraction, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    try:
        moment = datetime.fromisoformat(base + zone)
    except ValueError:
        return None
    if moment.tzinfo is None:  # pragma: no cover - the pattern always has a zone
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp() + (float(fraction) if fraction else 0.0)


# --- Any service ----------------------------------------------------------------


def unreachable(result, service):
    """The row of a host that Ansible could not reach (``result``: the registered first task of the play)."""
    name = "aetherlink_verify_unreachable"
    result = _mapping(name, "result", result)
    return [_row(service, "host reachable", FAILED, result.get("msg") or "unreachable")]


def http(result, service, check):
    """One row: ``check`` passes when the request (``/-/ready``, ...) was answered with HTTP 200."""
    result = _mapping("aetherlink_verify_http", "result", result)
    problem = _no_answer(result)
    return [_row(service, check, FAILED if problem else OK, problem or "HTTP 200")]


def reload_status(result, service, check, metric):
    """One row: the service's own ``metric`` (``*_config_last_reload_successful``) is 1.

    ``result`` is the uri result of ``GET <api>/metrics`` with ``return_content``.
    """
    result = _mapping("aetherlink_verify_reload", "result", result)
    problem = _no_answer(result)
    if problem:
        return [_row(service, check, FAILED, "%s (GET /metrics)" % problem)]
    value = _metric_value(result.get("content") or "", metric)
    if value is None:
        return [_row(service, check, FAILED, "%s not found in /metrics" % metric)]
    if value != 1:
        return [
            _row(
                service,
                check,
                FAILED,
                "%s is %g: the last reload was refused, the service runs on an older config" % (metric, value),
            )
        ]
    return [_row(service, check, OK, "%s is 1" % metric)]


def settled(rows):
    """True unless a row asks to be checked again (``retry``): the condition of the bounded waits."""
    return not any(
        isinstance(row, Mapping) and row.get("retry") for row in _list("aetherlink_verify_settled", "rows", rows)
    )


# --- Prometheus -----------------------------------------------------------------


def _rule_file(result):
    """(path, problem, records, alerts) of one looped slurp result of a rule file."""
    path = str(result.get("source") or _item(result) or "?")
    if result.get("skipped"):
        return path, "not read", [], []
    if result.get("failed") or "content" not in result:
        message = str(result.get("msg") or "not readable")
        return path, "missing" if "not found" in message.lower() else message, [], []
    try:
        text = base64.b64decode(result["content"]).decode("utf-8")
        document = yaml.safe_load(text) or {}
    except (ValueError, UnicodeDecodeError, yaml.YAMLError) as error:
        return path, "not valid YAML (%s)" % _one_line(error)[:80], [], []
    groups = document.get("groups") if isinstance(document, Mapping) else None
    if not isinstance(groups, list):
        return path, "has no rule groups", [], []
    records, alerts = [], []
    for group in groups:
        for rule in (group or {}).get("rules") or []:
            if isinstance(rule, Mapping):
                if rule.get("record"):
                    records.append(str(rule["record"]))
                if rule.get("alert"):
                    alerts.append(str(rule["alert"]))
    return path, "", records, alerts


def _item(result):
    item = result.get("item")
    return item if isinstance(item, str) else ""


def rules(rules_result, rule_files, role_alerts):
    """Three rows about Prometheus' rules: deployed, loaded, healthy.

    ``rule_files`` is the ``.results`` of a looped ``slurp`` of the rule files
    the role manages (their content is parsed here: every ``record`` and
    ``alert`` in them is expected); ``role_alerts`` the alert names of the
    role's own definitions (``_prometheus_alert_groups``), which must be in
    those files. ``rules_result`` is the uri result of ``GET /api/v1/rules``.

    - rule files deployed: every file read and parsed, the role's alerts in them;
    - rules loaded: every record and alert of the files (and of the role) is
      loaded by Prometheus, by name and type;
    - rules healthy: no loaded rule (of any file) has health ``err``; rules
      not evaluated yet (health ``unknown``: slow groups) are counted, not failed.
    """
    name = "aetherlink_verify_rules"
    rules_result = _mapping(name, "rules_result", rules_result)
    files = [_rule_file(_mapping(name, "rule_files[]", r)) for r in _list(name, "rule_files", rule_files)]
    role_alerts = [str(a) for a in _list(name, "role_alerts", role_alerts)]
    rows = []

    records = sorted({r for f in files for r in f[2]})
    alerts = sorted({a for f in files for a in f[3]})
    problems = ["%s %s" % (path, problem) for path, problem, _, _ in files if problem]
    not_deployed = [a for a in role_alerts if a not in alerts]
    if not_deployed:
        problems.append("alerts of the role not in the files: %s" % _names(not_deployed))
    if not files:
        problems.append("no rule file to read")
    rows.append(
        _row(
            "prometheus",
            "rule files deployed",
            FAILED if problems else OK,
            "; ".join(problems) or "%d files: %d records, %d alerts" % (len(files), len(records), len(alerts)),
        )
    )

    data = _prometheus_data(rules_result)
    if not isinstance(data, Mapping):
        problem = _no_answer(rules_result) or "unexpected answer (no data.groups)"
        rows.append(_row("prometheus", "rules loaded", FAILED, "%s (GET /api/v1/rules)" % problem))
        rows.append(_row("prometheus", "rules healthy", FAILED, "%s (GET /api/v1/rules)" % problem))
        return rows
    loaded = {"recording": set(), "alerting": set()}
    errors, unknown, total = [], 0, 0
    for group in data.get("groups") or []:
        for rule in group.get("rules") or []:
            total += 1
            loaded.setdefault(rule.get("type"), set()).add(rule.get("name"))
            health = rule.get("health")
            if health == "err":
                errors.append(
                    "%s (%s): %s"
                    % (rule.get("name"), group.get("name"), _one_line(rule.get("lastError") or "error")[:100])
                )
            elif health != "ok":
                unknown += 1
    missing = [r for r in records if r not in loaded["recording"]]
    missing += [a for a in sorted(set(alerts) | set(role_alerts)) if a not in loaded["alerting"]]
    rows.append(
        _row(
            "prometheus",
            "rules loaded",
            FAILED if missing else OK,
            (
                ("not loaded: %s" % _names(missing))
                if missing
                else "%d records, %d alerts of the rule files loaded"
                % (len(records), len(set(alerts) | set(role_alerts)))
            ),
        )
    )
    rows.append(
        _row(
            "prometheus",
            "rules healthy",
            FAILED if errors else OK,
            (
                "; ".join(errors)
                if errors
                else "no rule in error (%d rules%s)" % (total, ", %d not evaluated yet" % unknown if unknown else "")
            ),
        )
    )
    return rows


def targets(result):
    """One row: every active scrape target is up (``GET /api/v1/targets?state=active``).

    Down targets are named ``job/instance`` with their last error. A target
    not scraped yet (health ``unknown``) makes the row ``retry``: the
    playbook asks again, within its bound, and reports it as not scraped.
    """
    result = _mapping("aetherlink_verify_targets", "result", result)
    data = _prometheus_data(result)
    if not isinstance(data, Mapping):
        problem = _no_answer(result) or "unexpected answer (no data.activeTargets)"
        return [_row("prometheus", "targets up", FAILED, "%s (GET /api/v1/targets)" % problem)]
    active = data.get("activeTargets") or []
    down, pending = [], []
    for target in active:
        labels = target.get("labels") or {}
        name = "%s/%s" % (labels.get("job", "?"), labels.get("instance", target.get("scrapeUrl", "?")))
        health = target.get("health")
        if health == "down":
            error = _one_line(target.get("lastError") or "")[:100]
            down.append("%s down%s" % (name, " (%s)" % error if error else ""))
        elif health != "up":
            pending.append("%s not scraped yet" % name)
    if not active:
        return [_row("prometheus", "targets up", FAILED, "no active scrape target")]
    problems = down + pending
    if problems:
        return [_row("prometheus", "targets up", FAILED, "; ".join(problems), retry=bool(pending))]
    return [_row("prometheus", "targets up", OK, "%d targets up" % len(active))]


def prometheus_time(result):
    """Prometheus' own clock (seconds) from ``GET /api/v1/query?query=time()``; None without an answer."""
    data = _prometheus_data(_mapping("aetherlink_verify_prometheus_time", "result", result))
    if isinstance(data, Mapping) and data.get("resultType") == "scalar":
        value = data.get("result") or []
        if len(value) == 2:
            return _float(value[0])
    return None


def evaluation(rules_result, records, since, delay=0):
    """One row: the rule groups holding ``records`` were evaluated ``delay`` seconds or more after ``since``.

    ``since`` is Prometheus' own clock (seconds) at the end of the traffic
    (``aetherlink_verify_prometheus_time``), None when it could not be read;
    ``delay`` the time the traffic needs to be scraped (one scrape interval
    and a margin). ``retry`` while some group was evaluated earlier.
    """
    name = "aetherlink_verify_evaluation"
    rules_result = _mapping(name, "rules_result", rules_result)
    records = [str(r) for r in _list(name, "records", records)]
    check = "rules evaluated after traffic"
    since, delay = _float(since), _float(delay)
    if since is None:
        return [_row("prometheus", check, FAILED, "could not read Prometheus' time after the traffic")]
    if delay is None:
        raise AnsibleFilterError("%s: delay must be a number of seconds" % name)
    since += delay
    data = _prometheus_data(rules_result)
    if not isinstance(data, Mapping):
        problem = _no_answer(rules_result) or "unexpected answer (no data.groups)"
        return [_row("prometheus", check, FAILED, "%s (GET /api/v1/rules)" % problem)]
    late, found = [], set()
    for group in data.get("groups") or []:
        names = {rule.get("name") for rule in group.get("rules") or []}
        if names & set(records):
            found |= names & set(records)
            evaluated = _epoch(group.get("lastEvaluation"))
            if evaluated is None or evaluated < since:
                late.append(str(group.get("name")))
    absent = [r for r in records if r not in found]
    if absent:
        return [_row("prometheus", check, FAILED, "rules not loaded: %s" % _names(absent))]
    if late:
        return [_row("prometheus", check, FAILED, "not evaluated since the traffic: %s" % _names(late), retry=True)]
    return [_row("prometheus", check, OK, "evaluated after the traffic's next scrape")]


def tenant_data(result, records, tenants, mode="checked", note=""):
    """One row per record of ``records``: a value per tenant of ``tenants``, none NaN.

    ``result`` is the uri result of an instant query of the records
    (``{__name__=~"<record>|..."}``). ``mode``: ``checked`` evaluates it;
    ``skipped`` gives every record the row ``not checked (<note>)``.
    ``note`` is appended to the detail of failed rows (e.g. why there was no
    traffic). ``retry`` while some value is missing or NaN.
    """
    name = "aetherlink_verify_tenant_data"
    records = [str(r) for r in _list(name, "records", records)]
    tenants = [str(t) for t in _list(name, "tenants", tenants)]
    if mode == "skipped":
        return [
            _row("prometheus", "data %s" % record, SKIPPED, "not checked (%s)" % (note or "not requested"))
            for record in records
        ]
    if mode != "checked":
        raise AnsibleFilterError("%s: mode must be checked or skipped, got %r" % (name, mode))
    result = _mapping(name, "result", result)
    data = _prometheus_data(result)
    suffix = " (%s)" % note if note else ""
    if not isinstance(data, Mapping):
        problem = _no_answer(result) or "unexpected answer (no data.result)"
        return [
            _row("prometheus", "data %s" % record, FAILED, "%s (GET /api/v1/query)%s" % (problem, suffix))
            for record in records
        ]
    values = {}
    for sample in data.get("result") or []:
        metric = sample.get("metric") or {}
        value = sample.get("value") or [None, None]
        values[(metric.get("__name__"), metric.get("tenant"))] = value[1] if len(value) == 2 else None
    rows = []
    for record in records:
        missing = [t for t in tenants if (record, t) not in values]
        nan = [
            t
            for t in tenants
            if (record, t) in values
            and (_float(values[(record, t)]) is None or math.isnan(_float(values[(record, t)])))
        ]
        check = "data %s" % record
        if not tenants:
            rows.append(_row("prometheus", check, FAILED, "no tenant in aetherlink_tenants"))
        elif missing or nan:
            problems = []
            if missing:
                problems.append("no value for %s" % _names(missing))
            if nan:
                problems.append("NaN for %s" % _names(nan))
            rows.append(_row("prometheus", check, FAILED, "; ".join(problems) + suffix, retry=True))
        else:
            shown = ", ".join("%s %s" % (t, _short_number(values[(record, t)])) for t in tenants)
            rows.append(_row("prometheus", check, OK, shown))
    return rows


def _short_number(text):
    value = _float(text)
    return text if value is None else ("%.1f" % value)


# --- Alertmanager ---------------------------------------------------------------


def am_cluster(result, expected_peers, clustered):
    """One row: the cluster as the inventory wants it (``GET /api/v2/status``).

    Clustered (``clustered`` true): status ``ready`` with ``expected_peers``
    peers (every host of the cluster group, itself included); ``retry`` until
    then. Not clustered (one host, or clustering off): status ``disabled``.
    """
    name = "aetherlink_verify_am_cluster"
    result = _mapping(name, "result", result)
    check = "alertmanager cluster"
    problem = _no_answer(result)
    body = _json(result)
    if problem or not isinstance(body, Mapping) or not isinstance(body.get("cluster"), Mapping):
        return [
            _row(
                "alertmanager", check, FAILED, "%s (GET /api/v2/status)" % (problem or "unexpected answer (no cluster)")
            )
        ]
    cluster = body["cluster"]
    status = cluster.get("status")
    peers = cluster.get("peers") or []
    try:
        expected = int(expected_peers)
    except (TypeError, ValueError):
        raise AnsibleFilterError("%s: expected_peers must be an integer, got %r" % (name, expected_peers))
    if not _truthy(clustered):
        if status == "disabled" or (status == "ready" and len(peers) <= 1):
            return [_row("alertmanager", check, OK, "not clustered (status %s)" % status)]
        return [
            _row(
                "alertmanager",
                check,
                FAILED,
                "not clustered in the inventory, but status %s with %d peers" % (status, len(peers)),
            )
        ]
    if status == "ready" and len(peers) == expected:
        return [_row("alertmanager", check, OK, "ready, %d peers" % expected)]
    return [
        _row("alertmanager", check, FAILED, "status %s, %d of %d peers" % (status, len(peers), expected), retry=True)
    ]


def _truthy(value):
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


# --- AetherLink API -------------------------------------------------------------


def app_health(result, tenants):
    """One row: ``GET /healthz`` answers status ok, db ok and as many tenants as ``tenants`` (a list or a count)."""
    name = "aetherlink_verify_app_health"
    result = _mapping(name, "result", result)
    expected = len(tenants) if isinstance(tenants, (list, tuple)) else tenants
    try:
        expected = int(expected)
    except (TypeError, ValueError):
        raise AnsibleFilterError("%s: tenants must be a list or a count, got %r" % (name, tenants))
    check = "api healthz"
    body = _json(result)
    problem = _no_answer(result)
    if problem:
        if isinstance(body, Mapping) and body.get("db"):
            problem += " (db %s)" % body.get("db")
        return [_row("aether_app", check, FAILED, problem)]
    if not isinstance(body, Mapping):
        return [_row("aether_app", check, FAILED, "unexpected answer (not JSON)")]
    problems = []
    if body.get("status") != "ok":
        problems.append("status %s" % body.get("status"))
    if body.get("db") != "ok":
        problems.append("db %s" % body.get("db"))
    if body.get("tenants") != expected:
        problems.append("%s tenants, expected %d (aetherlink_tenants)" % (body.get("tenants"), expected))
    if problems:
        return [_row("aether_app", check, FAILED, "; ".join(problems))]
    return [
        _row("aether_app", check, OK, "status ok, db ok, %d tenants, version %s" % (expected, body.get("version", "?")))
    ]


# --- Grafana --------------------------------------------------------------------


def grafana_installed(result, package, required=False):
    """One row: whether ``package`` is installed (``dpkg-query --show --showformat '${db:Status-Status} ${Version}'``).

    Not installed: ``skipped`` with ``not installed here``, or ``failed`` when
    ``required``. The Grafana checks run only where this row is ``ok``.
    """
    result = _mapping("aetherlink_verify_grafana_installed", "result", result)
    out = str(result.get("stdout") or "").strip()
    if out.startswith("installed "):
        return [_row("grafana", "grafana installed", OK, "%s %s" % (package, out.split(" ", 1)[1]))]
    detail = "not installed here (package %s)" % package
    if _truthy(required):
        return [_row("grafana", "grafana installed", FAILED, detail + "; verify_grafana_required is true")]
    return [_row("grafana", "grafana installed", SKIPPED, detail)]


def grafana_health(result):
    """One row: ``GET /api/health`` answers 200 with ``database: ok``."""
    result = _mapping("aetherlink_verify_grafana_health", "result", result)
    problem = _no_answer(result)
    body = _json(result)
    if problem:
        return [_row("grafana", "grafana health", FAILED, problem)]
    database = body.get("database") if isinstance(body, Mapping) else None
    if database != "ok":
        return [_row("grafana", "grafana health", FAILED, "database %s" % database)]
    return [_row("grafana", "grafana health", OK, "database ok, version %s" % body.get("version", "?"))]


def grafana_dashboards(result, expected_uids, folder_title):
    """One row: ``GET /api/search?folderUIDs=<folder uid>`` lists every uid of ``expected_uids`` in ``folder_title``."""
    name = "aetherlink_verify_grafana_dashboards"
    result = _mapping(name, "result", result)
    expected = [str(u) for u in _list(name, "expected_uids", expected_uids)]
    check = "grafana dashboards"
    problem = _no_answer(result)
    body = _json(result)
    if problem:
        return [_row("grafana", check, FAILED, problem)]
    if not isinstance(body, list):
        return [_row("grafana", check, FAILED, "unexpected answer (not a list)")]
    found = {str(d.get("uid")): d for d in body if isinstance(d, Mapping) and d.get("type", "dash-db") == "dash-db"}
    missing = [u for u in expected if u not in found]
    elsewhere = [
        "%s (folder %s)" % (u, found[u].get("folderTitle"))
        for u in expected
        if u in found and found[u].get("folderTitle") != folder_title
    ]
    problems = []
    if missing:
        problems.append("missing: %s" % _names(missing))
    if elsewhere:
        problems.append("not in %s: %s" % (folder_title, _names(elsewhere)))
    if problems:
        return [_row("grafana", check, FAILED, "; ".join(problems))]
    extra = sorted(set(found) - set(expected))
    return [
        _row(
            "grafana",
            check,
            OK,
            "%d dashboards in %s%s" % (len(expected), folder_title, "; also %s" % _names(extra) if extra else ""),
        )
    ]


def grafana_datasource(result, uid):
    """One row: ``GET /api/datasources/uid/<uid>/health`` answers 200 with status OK."""
    result = _mapping("aetherlink_verify_grafana_datasource", "result", result)
    check = "grafana datasource"
    problem = _no_answer(result)
    body = _json(result)
    if problem:
        return [_row("grafana", check, FAILED, "%s %s" % (uid, problem))]
    status = body.get("status") if isinstance(body, Mapping) else None
    if status != "OK":
        return [_row("grafana", check, FAILED, "%s: status %s: %s" % (uid, status, (body or {}).get("message", "")))]
    return [_row("grafana", check, OK, "%s: %s" % (uid, body.get("message") or "OK"))]


# --- Report ---------------------------------------------------------------------


def _rows(filter_name, rows):
    checked = []
    for index, row in enumerate(_list(filter_name, "rows", rows)):
        if not isinstance(row, Mapping) or row.get("status") not in STATUSES or not row.get("check"):
            raise AnsibleFilterError(
                "%s: rows[%d] must be a mapping with check and status (ok, failed or skipped)" % (filter_name, index)
            )
        checked.append(row)
    return checked


def collect(hostvars, groups, services=SERVICES, hosts=None, fact="_verify_results"):
    """Every host's rows, with its name, in inventory order; a row for each check play that left nothing.

    For each service of ``services`` (an inventory group name) and each host
    of ``groups[service]`` that is in ``hosts`` (the hosts of this run, under
    ``--limit``; None: all): the rows of ``hostvars[host][fact]`` for that
    service, or one failed row ``<service> checks: did not run`` when there
    are none (the host failed before its checks recorded anything).
    """
    name = "aetherlink_verify_collect"
    services = [str(s) for s in _list(name, "services", services)]
    in_run = None if hosts is None else set(str(h) for h in _list(name, "hosts", hosts))
    rows = []
    seen = set()
    for service in services:
        for host in groups.get(service, []) or []:
            if in_run is not None and host not in in_run:
                continue
            host_vars = hostvars[host] if host in hostvars else {}
            recorded = host_vars.get(fact) if isinstance(host_vars, Mapping) else None
            mine = [r for r in _rows(name, recorded or []) if r.get("service") == service]
            if not mine:
                mine = [
                    _row(
                        service,
                        "%s checks" % service,
                        FAILED,
                        "did not run: the host failed before its checks (see above)",
                    )
                ]
            for row in mine:
                key = (host, service, row.get("check"), row.get("detail"))
                if key in seen:
                    continue
                seen.add(key)
                rows.append(
                    {
                        "host": str(host),
                        "service": service,
                        "check": str(row["check"]),
                        "status": row["status"],
                        "detail": _one_line(row.get("detail", "")),
                    }
                )
    return rows


def table(rows):
    """The rows as one text table, columns host, check, result, detail aligned; no trailing spaces.

    An empty list gives the header and a line saying no check ran.
    """
    rows = _rows("aetherlink_verify_table", rows)
    cells = [
        (str(r.get("host", "")), str(r["check"]), _RESULT_LABEL[r["status"]], _one_line(r.get("detail", "")))
        for r in rows
    ]
    widths = [max([len(_HEADER[i])] + [len(c[i]) for c in cells]) for i in range(3)]

    def line(values):
        return ("  ".join(v.ljust(w) for v, w in zip(values[:3], widths)) + "  " + values[3]).rstrip()

    lines = [line(_HEADER), line(tuple("-" * w for w in widths) + ("-" * len(_HEADER[3]),))]
    lines += [line(c) for c in cells]
    if not cells:
        lines.append("(no check ran: no host of the groups %s in this inventory)" % ", ".join(SERVICES))
    return "\n".join(lines)


def failures(rows):
    """``"<host> <check>: <detail>"`` for every failed row, in table order."""
    return [
        "%s %s: %s" % (r.get("host", "?"), r["check"], _one_line(r.get("detail", "")))
        for r in _rows("aetherlink_verify_failures", rows)
        if r["status"] == FAILED
    ]


def summary(rows):
    """``verify: N checks failed: a; b`` when any failed, else ``verify: all N checks passed (M not checked)``.

    ``a``, ``b``: the lines of ``aetherlink_verify_failures``.
    """
    rows = _rows("aetherlink_verify_summary", rows)
    failed = failures(rows)
    if failed:
        return "verify: %d check%s failed: %s" % (len(failed), "" if len(failed) == 1 else "s", "; ".join(failed))
    skipped = sum(1 for r in rows if r["status"] == SKIPPED)
    passed = len(rows) - skipped
    if not rows:
        return "verify: no check ran"
    if not passed:
        return "verify: no check failed, none passed: %d not checked" % skipped
    return "verify: all %d check%s passed%s" % (
        passed,
        "" if passed == 1 else "s",
        " (%d not checked)" % skipped if skipped else "",
    )


class FilterModule:
    def filters(self):
        return {
            "aetherlink_verify_unreachable": unreachable,
            "aetherlink_verify_http": http,
            "aetherlink_verify_reload": reload_status,
            "aetherlink_verify_settled": settled,
            "aetherlink_verify_rules": rules,
            "aetherlink_verify_targets": targets,
            "aetherlink_verify_prometheus_time": prometheus_time,
            "aetherlink_verify_evaluation": evaluation,
            "aetherlink_verify_tenant_data": tenant_data,
            "aetherlink_verify_am_cluster": am_cluster,
            "aetherlink_verify_app_health": app_health,
            "aetherlink_verify_grafana_installed": grafana_installed,
            "aetherlink_verify_grafana_health": grafana_health,
            "aetherlink_verify_grafana_dashboards": grafana_dashboards,
            "aetherlink_verify_grafana_datasource": grafana_datasource,
            "aetherlink_verify_collect": collect,
            "aetherlink_verify_table": table,
            "aetherlink_verify_failures": failures,
            "aetherlink_verify_summary": summary,
        }
