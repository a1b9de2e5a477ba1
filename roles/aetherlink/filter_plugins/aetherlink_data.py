"""Data filters of the AetherLink playbooks and templates.

Program logic that used to be written as Jinja inside YAML (loops that build
lists, encodings, report lines) lives here, where it can be unit tested
(tests/test_filters.py). Every filter keeps the exact output of the Jinja it
replaced (aetherlink_smoke_summary now reads the smoke sender's report and adds
a line for all tenants); a wrong input type raises an AnsibleFilterError naming
the filter and the argument.
"""

import json
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

# Punctuation standing for the hex digits of a number: a degraded-cache smoke
# question carries the (run, request) number in punctuation only, so it is
# unique while its words, and therefore its confidence, stay the same.
_HEX_MARKS = dict(zip("0123456789abcdef", "!?.,;:~^*+=#%&@/"))

_INTEGER = re.compile(r"^\s*-?[0-9]+\s*$")


# --- Input checks -------------------------------------------------------------


def _describe(value):
    """The type of a wrong value, and the value itself when it is a short scalar.

    Containers are never printed: a registered result may hold request data
    of a no_log task.
    """
    if isinstance(value, (Mapping, list, tuple, set)):
        return "a %s" % type(value).__name__
    text = repr(value)
    return "%s %s" % (type(value).__name__, text if len(text) <= 80 else text[:77] + "...")


def _fail(filter_name, argument, expected, value):
    raise AnsibleFilterError("%s: %s must be %s, got %s" % (filter_name, argument, expected, _describe(value)))


def _is_list(value):
    return isinstance(value, (list, tuple))


def _list_arg(filter_name, argument, value):
    if not _is_list(value):
        _fail(filter_name, argument, "a list", value)
    return list(value)


def _results_arg(filter_name, results):
    """The ``results`` of a looped register: a list of mappings."""
    results = _list_arg(filter_name, "results", results)
    for index, result in enumerate(results):
        if not isinstance(result, Mapping):
            _fail(filter_name, "results[%d]" % index, "a mapping (one loop result of a registered task)", result)
    return results


def _int_arg(filter_name, argument, value, minimum=None):
    """An integer given as an int or a string of digits (as it comes from -e)."""
    if isinstance(value, bool):
        _fail(filter_name, argument, "an integer", value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INTEGER.match(value):
        number = int(value)
    else:
        _fail(filter_name, argument, "an integer", value)
    if minimum is not None and number < minimum:
        _fail(filter_name, argument, "an integer >= %d" % minimum, value)
    return number


def _str_arg(filter_name, argument, value):
    if not isinstance(value, str) or not value:
        _fail(filter_name, argument, "a non-empty string", value)
    return value


def _skipped(result):
    return bool(result.get("skipped", False))


def _answered(filter_name, results):
    """(result, decoded JSON body) of every result of a looped uri task that ran (not skipped)."""
    return [(result, _json_of(result)) for result in _results_arg(filter_name, results) if not _skipped(result)]


def _json_of(result):
    """The decoded JSON body of a uri result, {} when there is none."""
    body = result.get("json")
    return body if isinstance(body, Mapping) else {}


def _item_label(item, key):
    """``item[key]`` when the loop item is a mapping (and has it), else the item itself."""
    if key is not None and isinstance(item, Mapping) and key in item:
        return item[key]
    return item


# --- Lists from -e ------------------------------------------------------------


def as_list(value, name="value"):
    """A list of trimmed, non-empty strings from a list or a comma-separated string.

    Extra vars given as ``-e smoke_tenants=a,b`` arrive as one string; a list
    (from YAML or ``-e '{"smoke_tenants": [...]}'``) is taken item by item.
    Items are converted to strings and trimmed; empty ones are dropped:
    ``" a, ,b"`` -> ``["a", "b"]``. ``name`` only names the variable in the
    error raised for any other type.
    """
    if isinstance(value, str):
        items = value.split(",")
    elif _is_list(value):
        items = value
    else:
        _fail("aetherlink_as_list", name, "a list or a comma-separated string", value)
    trimmed = (str(item).strip() for item in items)
    return [item for item in trimmed if item]


# --- Smoke traffic ------------------------------------------------------------


def smoke_plan(tenants, requests_per_tenant, degrade_cache, degrade_confidence, questions, offtopic_questions, run_id):
    """The smoke requests: a list of ``{tenant, question, rerank}``, tenant by tenant.

    Request ``i`` (0-based) of the ``t``-th tenant:

    - ``rerank`` is true on even ``i``;
    - the question comes from ``offtopic_questions`` when the tenant is in
      ``degrade_confidence`` or on every 10th request (``i % 10 == 9``), else
      from ``questions``: entry ``(t + (i // 2) % 2) % len(pool)``, so each
      tenant asks two questions, each with rerank on and off, and repeats hit
      the answer cache;
    - for a tenant in ``degrade_cache`` the question gets a space and the hex
      digits of ``run_id * 1000 + i`` written in punctuation
      (``0123456789abcdef`` -> ``!?.,;:~^*+=#%&@/``): every request is unique,
      across requests and across runs, with unchanged words.

    ``run_id`` is a non-negative integer that differs between runs (the
    playbook passes ``now(utc=true).timestamp() | int``).
    """
    name = "aetherlink_smoke_plan"
    tenants = _list_arg(name, "tenants", tenants)
    count = _int_arg(name, "requests_per_tenant", requests_per_tenant)
    degrade_cache = _list_arg(name, "degrade_cache", degrade_cache)
    degrade_confidence = _list_arg(name, "degrade_confidence", degrade_confidence)
    pools = {}
    for argument, pool in (("questions", questions), ("offtopic_questions", offtopic_questions)):
        pools[argument] = _list_arg(name, argument, pool)
        if not pools[argument]:
            _fail(name, argument, "a non-empty list", pool)
    run = _int_arg(name, "run_id", run_id, minimum=0)

    plan = []
    for t, tenant in enumerate(tenants):
        for i in range(count):
            offtopic = tenant in degrade_confidence or i % 10 == 9
            pool = pools["offtopic_questions" if offtopic else "questions"]
            question = pool[(t + (i // 2) % 2) % len(pool)]
            if tenant in degrade_cache:
                question = "%s %s" % (question, "".join(_HEX_MARKS[digit] for digit in "%x" % (run * 1000 + i)))
            plan.append({"tenant": tenant, "question": question, "rerank": i % 2 == 0})
    return plan


def _percent(part, whole):
    return round(100 * part / whole, 1) if whole else 0.0


def _count(filter_name, argument, value):
    """A count of the smoke sender's report: a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail(filter_name, argument, "a non-negative integer", value)
    return value


def smoke_summary(report, tenants, degrade_cache, degrade_confidence):
    """One line per tenant about its smoke traffic, then one about all of it, from the smoke sender's report.

    ``report`` is the JSON document that ``roles/aether_app/files/aetherlink_smoke.py``
    prints (decoded): ``report.tenants.<tenant>`` holds ``sent``, ``cached``,
    ``low_confidence`` and ``reranked``. Per tenant of ``tenants``:
    ``"<tenant>: <n> queries, cache hits <h> (<h%>%), low confidence <l> (<l%>%),
    reranked <r>"`` plus `` [cache degraded]`` / `` [confidence degraded]`` for
    the degraded tenants; ``n`` counts every request sent, answered or not, and a
    tenant missing from the report reports 0 queries and 0.0%. The last line:
    ``"all tenants: <n> queries in <s> s (<r> requests/s, concurrency <c>),
    HTTP <code>: <count>, ..."`` from the report's ``totals``, ``elapsed_seconds``,
    ``requests_per_second`` and ``concurrency``.
    """
    name = "aetherlink_smoke_summary"
    if not isinstance(report, Mapping) or not isinstance(report.get("tenants"), Mapping):
        _fail(name, "report", "the smoke sender's report (a mapping with 'tenants')", report)
    tenants = _list_arg(name, "tenants", tenants)
    degrade_cache = _list_arg(name, "degrade_cache", degrade_cache)
    degrade_confidence = _list_arg(name, "degrade_confidence", degrade_confidence)

    lines = []
    for tenant in tenants:
        stats = report["tenants"].get(tenant, {})
        if not isinstance(stats, Mapping):
            _fail(name, "report.tenants[%s]" % json.dumps(tenant), "a mapping", stats)
        counts = {}
        for field in ("sent", "cached", "low_confidence", "reranked"):
            counts[field] = _count(name, "report.tenants[%s].%s" % (json.dumps(tenant), field), stats.get(field, 0))
        n, hits, low = counts["sent"], counts["cached"], counts["low_confidence"]
        lines.append(
            "%s: %d queries, cache hits %d (%s%%), low confidence %d (%s%%), reranked %d%s%s"
            % (
                tenant,
                n,
                hits,
                _percent(hits, n),
                low,
                _percent(low, n),
                counts["reranked"],
                " [cache degraded]" if tenant in degrade_cache else "",
                " [confidence degraded]" if tenant in degrade_confidence else "",
            )
        )

    totals = report.get("totals", {})
    if not isinstance(totals, Mapping):
        _fail(name, "report.totals", "a mapping", totals)
    codes = totals.get("codes", {})
    if not isinstance(codes, Mapping):
        _fail(name, "report.totals.codes", "a mapping", codes)
    answers = ", ".join("HTTP %s: %s" % (code, count) for code, count in codes.items()) or "no answers"
    lines.append(
        "all tenants: %d queries in %s s (%s requests/s, concurrency %s), %s"
        % (
            _count(name, "report.totals.sent", totals.get("sent", 0)),
            report.get("elapsed_seconds", 0),
            report.get("requests_per_second", 0),
            report.get("concurrency", "?"),
            answers,
        )
    )
    return lines


# --- HTTP results of looped uri tasks ------------------------------------------


def http_failures(results, ok_statuses, label=None):
    """``"<label>: HTTP <status> <message>"`` for every failed request of a looped uri task.

    ``results`` is the register's ``.results``. A result fails when it is not
    skipped and its ``status`` (-1 when absent: no answer) is not in
    ``ok_statuses`` (a list of integers, or one integer). The label is
    ``item[label]`` when the loop item is a mapping and ``label`` is given,
    else the item itself. The message is the API's ``json.error.message``,
    else the task's ``msg``, else ``no answer``. Request bodies and headers
    are never part of the line, so it is safe after a no_log task.
    """
    name = "aetherlink_http_failures"
    results = _results_arg(name, results)
    statuses = ok_statuses if _is_list(ok_statuses) else [ok_statuses]
    statuses = [_int_arg(name, "ok_statuses", status) for status in statuses]
    if label is not None:
        _str_arg(name, "label", label)

    failures = []
    for result in results:
        if _skipped(result):
            continue
        status = result.get("status", -1)
        if status in statuses:
            continue
        error = _json_of(result).get("error")
        if isinstance(error, Mapping) and "message" in error:
            message = error["message"]
        else:
            message = result.get("msg", "no answer")
        failures.append("%s: HTTP %s %s" % (_item_label(result.get("item"), label), status, message))
    return failures


# --- Tenant provisioning (aether_app role) ------------------------------------


def _join(values, separator):
    """Jinja's ``join`` of a list; None is empty, any other value is printed as is."""
    if values is None:
        return ""
    if _is_list(values):
        return separator.join(str(value) for value in values)
    return str(values)


def tenant_upsert_summary(results):
    """``"<tenant> created|updated <field>+<field>|unchanged"`` for every non-skipped tenant upsert.

    ``results`` is the ``.results`` of the looped admin API call whose loop
    items are the tenants (mappings with ``name``).
    """
    lines = []
    for result, body in _answered("aetherlink_tenant_upsert_summary", results):
        if body.get("created", False):
            what = "created"
        elif body.get("changed", False):
            what = "updated " + _join(body.get("changed_fields", []), "+")
        else:
            what = "unchanged"
        lines.append("%s %s" % (_item_label(result.get("item"), "name"), what))
    return lines


def ingest_summary(results):
    """``"<tenant> <n> documents (<i> inserted, <u> updated)"`` for every non-skipped ingest.

    ``results`` is the ``.results`` of the looped document ingest whose loop
    items are tenant names; a missing count reads ``?`` (documents) or 0.
    """
    return [
        "%s %s documents (%s inserted, %s updated)"
        % (result.get("item"), body.get("documents", "?"), body.get("inserted", 0), body.get("updated", 0))
        for result, body in _answered("aetherlink_ingest_summary", results)
    ]


# --- Alertmanager ---------------------------------------------------------------


def alertmanager_peers(cluster_hosts, inventory_hostname, hostvars, port):
    """``host:port`` of every member of ``cluster_hosts`` but ``inventory_hostname``.

    The address is the member's ``ansible_host`` when it has one, else its
    inventory name; ``hostvars`` is Ansible's ``hostvars`` (any mapping of
    host name to variables).
    """
    name = "aetherlink_alertmanager_peers"
    cluster_hosts = _list_arg(name, "cluster_hosts", cluster_hosts)
    _str_arg(name, "inventory_hostname", inventory_hostname)
    if not isinstance(hostvars, Mapping):
        _fail(name, "hostvars", "a mapping (Ansible's hostvars)", hostvars)
    if isinstance(port, bool) or not isinstance(port, (int, str)) or port == "":
        _fail(name, "port", "a port number", port)

    peers = []
    for host in cluster_hosts:
        if host == inventory_hostname:
            continue
        address = host
        if host in hostvars:
            host_vars = hostvars[host]
            if isinstance(host_vars, Mapping) and "ansible_host" in host_vars:
                address = host_vars["ansible_host"]
        peers.append("%s:%s" % (address, port))
    return peers


def _tenant_matcher(filter_name, vip_pattern):
    # The pattern is JSON-escaped, as `to_json` does, inside the matcher's quotes.
    return "tenant=~" + json.dumps(_str_arg(filter_name, "vip_pattern", vip_pattern))


def _alertname_matcher(filter_name, argument, value):
    return "alertname=" + json.dumps(_str_arg(filter_name, argument, value))


def alertmanager_inhibit_rules(twins, vip_pattern):
    """Inhibit rules: a critical VIP alert silences its warning twin for the same tenant.

    ``twins`` is a list of ``{critical: <alertname>, warning: <alertname>}``;
    ``vip_pattern`` the VIP tenant regex. One rule per twin, in Alertmanager's
    syntax: source ``alertname="<critical>"``, ``severity="critical"``,
    ``tenant=~"<vip_pattern>"``; target ``alertname="<warning>"``,
    ``severity="warning"``; ``equal: [tenant]``.
    """
    name = "aetherlink_alertmanager_inhibit_rules"
    twins = _list_arg(name, "twins", twins)
    vip_tenants = _tenant_matcher(name, vip_pattern)
    rules = []
    for index, twin in enumerate(twins):
        if not isinstance(twin, Mapping):
            _fail(name, "twins[%d]" % index, "a mapping with 'critical' and 'warning'", twin)
        rules.append(
            {
                "source_matchers": [
                    _alertname_matcher(name, "twins[%d].critical" % index, twin.get("critical")),
                    'severity="critical"',
                    vip_tenants,
                ],
                "target_matchers": [
                    _alertname_matcher(name, "twins[%d].warning" % index, twin.get("warning")),
                    'severity="warning"',
                ],
                "equal": ["tenant"],
            }
        )
    return rules


def alertmanager_vip_route(receiver, vip_pattern):
    """The route of the critical alerts of VIP tenants to ``receiver``.

    ``{receiver: <receiver>, matchers: ['severity="critical"', 'tenant=~"<vip_pattern>"']}``.
    """
    name = "aetherlink_alertmanager_vip_route"
    return {
        "receiver": _str_arg(name, "receiver", receiver),
        "matchers": ['severity="critical"', _tenant_matcher(name, vip_pattern)],
    }


class FilterModule:
    def filters(self):
        return {
            "aetherlink_as_list": as_list,
            "aetherlink_smoke_plan": smoke_plan,
            "aetherlink_smoke_summary": smoke_summary,
            "aetherlink_http_failures": http_failures,
            "aetherlink_tenant_upsert_summary": tenant_upsert_summary,
            "aetherlink_ingest_summary": ingest_summary,
            "aetherlink_alertmanager_peers": alertmanager_peers,
            "aetherlink_alertmanager_inhibit_rules": alertmanager_inhibit_rules,
            "aetherlink_alertmanager_vip_route": alertmanager_vip_route,
        }
