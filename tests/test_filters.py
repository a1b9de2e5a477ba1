"""Unit tests of the AetherLink filter plugins (controller only, no containers).

The plugin modules of roles/aetherlink/filter_plugins are imported by
path, as Ansible loads them. The last tests render the alertmanager role's
alertmanager.yml through Ansible (tests/alertmanager/render.yml), check it with
`amtool check-config` and compare its routes and inhibit rules with the
expected data.
"""

import importlib.util
import json

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from conftest import ROOT, run, tool

PLUGIN_DIR = ROOT / "roles" / "aetherlink" / "filter_plugins"


def load_plugin(name):
    spec = importlib.util.spec_from_file_location("aetherlink_filter_%s" % name, PLUGIN_DIR / ("%s.py" % name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


data = load_plugin("aetherlink_data")

QUESTIONS = ["q-warranty", "q-reset", "q-firmware"]
OFFTOPIC = ["off-volcano", "off-pasta"]
MARKS = dict(zip("!?.,;:~^*+=#%&@/", "0123456789abcdef"))


def plan(tenants=("a", "b"), count=20, cache=(), confidence=(), run_id=1_700_000_000):
    return data.smoke_plan(list(tenants), count, list(cache), list(confidence), QUESTIONS, OFFTOPIC, run_id)


def decode_suffix(question):
    """The number a degraded-cache question carries in punctuation."""
    return int("".join(MARKS[c] for c in question.rsplit(" ", 1)[1]), 16)


# --- Plugin modules ---------------------------------------------------------------


def test_every_plugin_module_loads_with_prefixed_unique_filter_names():
    seen = {}
    for path in sorted(PLUGIN_DIR.glob("*.py")):
        names = load_plugin(path.stem).FilterModule().filters()
        for name, function in names.items():
            assert name.startswith("aetherlink_"), name
            assert callable(function)
            assert name not in seen, "%s is defined in %s and %s" % (name, seen.get(name), path.name)
            seen[name] = path.name
    assert {"aetherlink_regex_error", "aetherlink_is_duration"} <= set(seen)
    assert set(data.FilterModule().filters()) == {
        "aetherlink_as_list",
        "aetherlink_smoke_plan",
        "aetherlink_smoke_summary",
        "aetherlink_http_failures",
        "aetherlink_tenant_upsert_summary",
        "aetherlink_ingest_summary",
        "aetherlink_alertmanager_peers",
        "aetherlink_alertmanager_inhibit_rules",
        "aetherlink_alertmanager_vip_route",
    }


def test_every_filter_has_a_docstring():
    for name, function in data.FilterModule().filters().items():
        assert (function.__doc__ or "").strip(), name


def test_the_checks_plugin_still_works():
    checks = load_plugin("aetherlink_checks")
    assert checks.is_duration("1h30m") and not checks.is_duration("5 minutes")
    assert checks.regex_error("vip-.*") == ""
    assert "look-around" in checks.regex_error("(?=vip)")


@pytest.mark.parametrize("pattern", [
    "(?=vip)-.*", "(?<!x)vip", r"(vip)-\1", "(?>vip)-.*", r"vip-.*\Z", "(?<tier>vip)-.*", "(?(1)a|b)"])
def test_regex_error_refuses_what_re2_does_not_support(pattern):
    # Each compiles in Python's re (3.11), so only the explicit RE2 check can refuse it.
    checks = load_plugin("aetherlink_checks")
    assert "which Prometheus (RE2) does not support" in checks.regex_error(pattern)


@pytest.mark.parametrize("pattern", ["vip-.*|premium-.*", "(?P<tier>vip)-.*", r"vip-.*\\Z", "(?i)VIP-.*"])
def test_regex_error_accepts_re2_patterns(pattern):
    assert load_plugin("aetherlink_checks").regex_error(pattern) == ""


# --- aetherlink_as_list ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (["acme-corp", "globex"], ["acme-corp", "globex"]),
        ([" acme-corp ", "", "  ", "globex"], ["acme-corp", "globex"]),
        ("acme-corp,globex", ["acme-corp", "globex"]),
        (" acme-corp, ,globex ,", ["acme-corp", "globex"]),
        ("acme-corp", ["acme-corp"]),
        ("", []),
        ([], []),
        (("a", 5), ["a", "5"]),
    ],
)
def test_as_list(value, expected):
    assert data.as_list(value) == expected


@pytest.mark.parametrize("value", [None, 5, {"a": 1}, True])
def test_as_list_names_the_argument_on_a_wrong_type(value):
    with pytest.raises(
        AnsibleFilterError, match="aetherlink_as_list: smoke_tenants must be a list or a comma-separated string"
    ):
        data.as_list(value, "smoke_tenants")
    with pytest.raises(AnsibleFilterError, match="aetherlink_as_list: value must be"):
        data.as_list(value)


# --- aetherlink_smoke_plan ------------------------------------------------------------


def test_plan_has_n_requests_per_tenant_in_tenant_order():
    result = plan(tenants=["a", "b", "c"], count=7)
    assert len(result) == 3 * 7
    assert [r["tenant"] for r in result] == ["a"] * 7 + ["b"] * 7 + ["c"] * 7
    assert all(set(r) == {"tenant", "question", "rerank"} for r in result)


def test_plan_accepts_the_count_as_a_string_from_extra_vars():
    assert plan(count="12") == plan(count=12)


def test_plan_reranks_on_even_requests():
    result = plan(tenants=["a"], count=20)
    assert [r["rerank"] for r in result] == [i % 2 == 0 for i in range(20)]


def test_plan_asks_off_topic_on_every_10th_request():
    result = plan(tenants=["a", "b"], count=30)
    for tenant in ("a", "b"):
        questions = [r["question"] for r in result if r["tenant"] == tenant]
        assert [i for i, q in enumerate(questions) if q in OFFTOPIC] == [9, 19, 29]


def test_plan_asks_two_questions_per_tenant_with_rerank_on_and_off():
    result = plan(tenants=["a", "b"], count=8)
    a = [r["question"] for r in result if r["tenant"] == "a"]
    b = [r["question"] for r in result if r["tenant"] == "b"]
    # Entry (t + (i // 2) % 2) % len(pool): pairs of requests alternate between two questions.
    assert a == ["q-warranty", "q-warranty", "q-reset", "q-reset"] * 2
    assert b == ["q-reset", "q-reset", "q-firmware", "q-firmware"] * 2
    assert {(r["question"], r["rerank"]) for r in result if r["tenant"] == "a"} == {
        ("q-warranty", True),
        ("q-warranty", False),
        ("q-reset", True),
        ("q-reset", False),
    }


def test_plan_repeats_the_questions_of_healthy_tenants():
    """Without degradation the same (question, rerank) recurs: cache hits are possible."""
    result = plan(tenants=["a", "b"], count=20, cache=["b"])
    asked = [(r["question"], r["rerank"]) for r in result if r["tenant"] == "a"]
    assert len(set(asked)) < len(asked)
    assert all(q in QUESTIONS + OFFTOPIC for q, _ in asked)
    # The same tenant gets the same questions in every run.
    assert [r for r in result if r["tenant"] == "a"] == [r for r in plan(cache=["b"], run_id=42) if r["tenant"] == "a"]


def test_plan_degraded_confidence_tenant_asks_only_off_topic():
    result = plan(tenants=["a", "b"], count=20, confidence=["b"])
    assert all(r["question"] in OFFTOPIC for r in result if r["tenant"] == "b")
    assert any(r["question"] in QUESTIONS for r in result if r["tenant"] == "a")
    # Rerank is unaffected by the degradation.
    assert [r["rerank"] for r in result if r["tenant"] == "b"] == [i % 2 == 0 for i in range(20)]


def test_plan_degraded_cache_questions_are_unique_across_requests_and_runs():
    first = [
        r["question"]
        for r in plan(tenants=["a", "b"], count=500, cache=["b"], run_id=1_700_000_000)
        if r["tenant"] == "b"
    ]
    second = [
        r["question"]
        for r in plan(tenants=["a", "b"], count=500, cache=["b"], run_id=1_700_000_001)
        if r["tenant"] == "b"
    ]
    assert len(set(first)) == 500
    assert len(set(second)) == 500
    assert not set(first) & set(second)


def test_plan_degraded_cache_suffix_encodes_run_and_request_in_punctuation():
    run_id = 1_700_000_000
    result = [r for r in plan(tenants=["a"], count=12, cache=["a"], run_id=run_id)]
    healthy = plan(tenants=["a"], count=12, run_id=run_id)
    for i, (degraded, plain) in enumerate(zip(result, healthy)):
        words, suffix = degraded["question"].rsplit(" ", 1)
        # Same words (so the same confidence), a suffix of punctuation only.
        assert words == plain["question"]
        assert set(suffix) <= set("!?.,;:~^*+=#%&@/")
        assert decode_suffix(degraded["question"]) == run_id * 1000 + i
        assert degraded["rerank"] == plain["rerank"]


def test_plan_encoding_matches_the_hex_digit_table():
    # 1 * 1000 + 0 = 0x3e8 -> '3' ',', 'e' '@', '8' '*'; 0x3e9 -> ',@+'.
    result = plan(tenants=["a"], count=2, cache=["a"], run_id=1)
    assert result[0] == {"tenant": "a", "question": "q-warranty ,@*", "rerank": True}
    assert result[1] == {"tenant": "a", "question": "q-warranty ,@+", "rerank": False}
    # 0..15 map one to one onto the table, in order.
    assert [data._HEX_MARKS[c] for c in "0123456789abcdef"] == list("!?.,;:~^*+=#%&@/")


def test_plan_combines_both_degradations():
    result = plan(tenants=["a"], count=3, cache=["a"], confidence=["a"], run_id=0)
    assert [r["question"] for r in result] == ["off-volcano !", "off-volcano ?", "off-pasta ."]


def test_plan_with_no_requests_is_empty():
    assert plan(count=0) == []


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"tenants": "a,b"}, "tenants"),
        ({"requests_per_tenant": "ten"}, "requests_per_tenant"),
        ({"requests_per_tenant": None}, "requests_per_tenant"),
        ({"degrade_cache": "a"}, "degrade_cache"),
        ({"degrade_confidence": None}, "degrade_confidence"),
        ({"questions": []}, "questions"),
        ({"offtopic_questions": "x"}, "offtopic_questions"),
        ({"run_id": -1}, "run_id"),
        ({"run_id": 1.5}, "run_id"),
    ],
)
def test_plan_names_the_wrong_argument(kwargs, argument):
    arguments = dict(
        tenants=["a"],
        requests_per_tenant=3,
        degrade_cache=[],
        degrade_confidence=[],
        questions=QUESTIONS,
        offtopic_questions=OFFTOPIC,
        run_id=1,
    )
    arguments.update(kwargs)
    with pytest.raises(AnsibleFilterError, match=r"^aetherlink_smoke_plan: %s must be" % argument):
        data.smoke_plan(**arguments)


# --- aetherlink_http_failures ---------------------------------------------------------


def uri_result(item, status=None, json_body=None, msg=None, skipped=False):
    result = {"item": item, "changed": False}
    if status is not None:
        result["status"] = status
    if json_body is not None:
        result["json"] = json_body
    if msg is not None:
        result["msg"] = msg
    if skipped:
        result.update(skipped=True, skip_reason="check mode")
    return result


def test_http_failures_skips_skipped_results_and_ok_statuses():
    results = [
        uri_result({"name": "a"}, 200, {"changed": False}),
        uri_result({"name": "b"}, 201, {"created": True}),
        uri_result({"name": "c"}, skipped=True),
        uri_result({"name": "d"}, 500, {"error": {"message": "boom"}}),
    ]
    assert data.http_failures(results, [200, 201], "name") == ["d: HTTP 500 boom"]
    assert data.http_failures(results, [200], "name") == ["b: HTTP 201 no answer", "d: HTTP 500 boom"]
    assert data.http_failures(results, 201, "name") == ["a: HTTP 200 no answer", "d: HTTP 500 boom"]


def test_http_failures_message_is_api_error_then_msg_then_no_answer():
    results = [
        uri_result({"tenant": "a"}, 401, {"error": {"message": "invalid API key"}}, msg="Status code was 401"),
        uri_result({"tenant": "b"}, -1, msg="Status code was -1 and not [200]: Request failed"),
        uri_result({"tenant": "c"}, 502, {"error": "not a mapping"}, msg="Status code was 502"),
        uri_result({"tenant": "d"}, 503, "not json"),
        uri_result({"tenant": "e"}),
        uri_result({"tenant": "f"}, 500, {"error": {"message": ""}}, msg="unused"),
    ]
    assert data.http_failures(results, [200], "tenant") == [
        "a: HTTP 401 invalid API key",
        "b: HTTP -1 Status code was -1 and not [200]: Request failed",
        "c: HTTP 502 Status code was 502",
        "d: HTTP 503 no answer",
        "e: HTTP -1 no answer",
        "f: HTTP 500 ",
    ]


def test_http_failures_label_is_the_item_when_it_is_not_a_mapping_or_no_label_is_given():
    results = [uri_result("acme-corp", 422, {"error": {"message": "bad document"}}), uri_result({"name": "x"}, 500)]
    assert data.http_failures(results, [200]) == [
        "acme-corp: HTTP 422 bad document",
        "{'name': 'x'}: HTTP 500 no answer",
    ]
    assert data.http_failures(results, [200], "name") == ["acme-corp: HTTP 422 bad document", "x: HTTP 500 no answer"]


def test_http_failures_of_nothing_is_empty():
    assert data.http_failures([], [200]) == []


@pytest.mark.parametrize(
    "args, argument",
    [
        ((None, [200]), "results"),
        (({"results": []}, [200]), "results"),
        ((["x"], [200]), r"results\[0\]"),
        (([], ["ok"]), "ok_statuses"),
        (([], [200], 5), "label"),
    ],
)
def test_http_failures_names_the_wrong_argument(args, argument):
    with pytest.raises(AnsibleFilterError, match=r"^aetherlink_http_failures: %s must be" % argument):
        data.http_failures(*args)


# --- Summaries ----------------------------------------------------------------


def sender_report(tenants, codes=None, elapsed=0.25, concurrency=8):
    """A smoke sender report (roles/aether_app/files/aetherlink_smoke.py) with the given per-tenant counts."""
    report = {"tenants": {}, "totals": {"sent": 0, "codes": codes or {}}, "failures": [], "stopped": None,
              "concurrency": concurrency, "timeout": 600.0, "elapsed_seconds": elapsed}
    for tenant, (sent, cached, low, reranked) in tenants.items():
        report["tenants"][tenant] = {"planned": sent, "sent": sent, "codes": {"200": sent} if sent else {},
                                     "cached": cached, "low_confidence": low, "reranked": reranked,
                                     "invalid_answers": 0, "errors": []}
        report["totals"]["sent"] += sent
    if codes is None:
        report["totals"]["codes"] = {"200": report["totals"]["sent"]} if report["totals"]["sent"] else {}
    report["requests_per_second"] = round(report["totals"]["sent"] / elapsed, 1)
    return report


def test_smoke_summary_text_per_tenant():
    report = sender_report({"a": (3, 2, 1, 1), "b": (4, 0, 4, 0), "c": (1, 1, 0, 1)})
    assert data.smoke_summary(report, ["a", "b", "c"], ["a"], ["b"]) == [
        "a: 3 queries, cache hits 2 (66.7%), low confidence 1 (33.3%), reranked 1 [cache degraded]",
        "b: 4 queries, cache hits 0 (0.0%), low confidence 4 (100.0%), reranked 0 [confidence degraded]",
        "c: 1 queries, cache hits 1 (100.0%), low confidence 0 (0.0%), reranked 1",
        "all tenants: 8 queries in 0.25 s (32.0 requests/s, concurrency 8), HTTP 200: 8",
    ]


def test_smoke_summary_marks_both_degradations_and_guards_no_answers():
    # b is missing from the report (no request of its was planned or sent).
    report = sender_report({"a": (1, 1, 0, 0)})
    assert data.smoke_summary(report, ["a", "b"], ["b"], ["b"]) == [
        "a: 1 queries, cache hits 1 (100.0%), low confidence 0 (0.0%), reranked 0",
        "b: 0 queries, cache hits 0 (0.0%), low confidence 0 (0.0%), reranked 0 [cache degraded] [confidence degraded]",
        "all tenants: 1 queries in 0.25 s (4.0 requests/s, concurrency 8), HTTP 200: 1",
    ]
    assert data.smoke_summary(sender_report({}), ["a"], [], [])[-1] == (
        "all tenants: 0 queries in 0.25 s (0.0 requests/s, concurrency 8), no answers"
    )


def test_smoke_summary_counts_every_request_sent_and_lists_the_codes():
    """A request without an answer (code -1) or with an error status is a query too."""
    report = sender_report({"a": (3, 1, 0, 0)}, codes={"-1": 1, "200": 1, "401": 1})
    assert data.smoke_summary(report, ["a"], [], []) == [
        "a: 3 queries, cache hits 1 (33.3%), low confidence 0 (0.0%), reranked 0",
        "all tenants: 3 queries in 0.25 s (12.0 requests/s, concurrency 8), HTTP -1: 1, HTTP 200: 1, HTTP 401: 1",
    ]


def test_smoke_summary_names_the_wrong_argument():
    with pytest.raises(AnsibleFilterError, match="^aetherlink_smoke_summary: report must be the smoke sender's report"):
        data.smoke_summary([], ["a"], [], [])
    with pytest.raises(AnsibleFilterError, match="^aetherlink_smoke_summary: report must be"):
        data.smoke_summary({"totals": {}}, ["a"], [], [])
    with pytest.raises(AnsibleFilterError, match="^aetherlink_smoke_summary: tenants must be a list"):
        data.smoke_summary(sender_report({}), "a,b", [], [])
    with pytest.raises(AnsibleFilterError, match="^aetherlink_smoke_summary: degrade_confidence must be a list"):
        data.smoke_summary(sender_report({}), [], [], None)
    with pytest.raises(AnsibleFilterError, match=r'^aetherlink_smoke_summary: report.tenants\["a"\].cached must be'):
        data.smoke_summary({"tenants": {"a": {"sent": 1, "cached": "1"}}}, ["a"], [], [])
    with pytest.raises(AnsibleFilterError, match=r'^aetherlink_smoke_summary: report.tenants\["a"\] must be a mapping'):
        data.smoke_summary({"tenants": {"a": [1]}}, ["a"], [], [])


def test_tenant_upsert_summary():
    results = [
        uri_result({"name": "a"}, 201, {"created": True, "changed": True}),
        uri_result(
            {"name": "b"}, 200, {"created": False, "changed": True, "changed_fields": ["vip", "lowconf_threshold"]}
        ),
        uri_result({"name": "c"}, 200, {"created": False, "changed": False}),
        uri_result({"name": "d"}, skipped=True),
        uri_result({"name": "e"}, 200, {"changed": True}),
        uri_result({"name": "f"}, -1, msg="refused"),
    ]
    assert data.tenant_upsert_summary(results) == [
        "a created",
        "b updated vip+lowconf_threshold",
        "c unchanged",
        "e updated ",
        "f unchanged",
    ]


def test_ingest_summary():
    results = [
        uri_result("a", 200, {"documents": 6, "inserted": 2, "updated": 1}),
        uri_result("b", 200, {"documents": 3, "inserted": 0, "updated": 0}),
        uri_result("c", skipped=True),
        uri_result("d", 500, {"error": {"message": "boom"}}),
    ]
    assert data.ingest_summary(results) == [
        "a 6 documents (2 inserted, 1 updated)",
        "b 3 documents (0 inserted, 0 updated)",
        "d ? documents (0 inserted, 0 updated)",
    ]
    assert data.ingest_summary([]) == []


@pytest.mark.parametrize("function", [data.tenant_upsert_summary, data.ingest_summary])
def test_provisioning_summaries_name_the_wrong_argument(function):
    with pytest.raises(AnsibleFilterError, match="results must be a list"):
        function({"results": []})


# --- aetherlink_alertmanager_peers --------------------------------------------------


HOSTVARS = {
    "am-1": {"ansible_host": "10.0.0.1"},
    "am-2": {},
    "am-3": {"ansible_host": "am-3.internal", "ansible_user": "deploy"},
}


@pytest.mark.parametrize(
    "me, expected",
    [
        ("am-1", ["am-2:9094", "am-3.internal:9094"]),
        ("am-2", ["10.0.0.1:9094", "am-3.internal:9094"]),
        ("am-3", ["10.0.0.1:9094", "am-2:9094"]),
    ],
)
def test_peers_exclude_self_and_use_ansible_host(me, expected):
    assert data.alertmanager_peers(["am-1", "am-2", "am-3"], me, HOSTVARS, 9094) == expected


def test_peers_of_a_host_outside_the_cluster_and_of_a_single_member():
    assert data.alertmanager_peers(["am-1", "am-2"], "prom-1", HOSTVARS, "9095") == ["10.0.0.1:9095", "am-2:9095"]
    assert data.alertmanager_peers(["am-1"], "am-1", HOSTVARS, 9094) == []
    assert data.alertmanager_peers([], "am-1", HOSTVARS, 9094) == []
    # A member without host variables is reached by its inventory name.
    assert data.alertmanager_peers(["am-1", "am-9"], "am-1", HOSTVARS, 9094) == ["am-9:9094"]


@pytest.mark.parametrize(
    "args, argument",
    [
        (("am-1,am-2", "am-1", HOSTVARS, 9094), "cluster_hosts"),
        ((["am-1"], None, HOSTVARS, 9094), "inventory_hostname"),
        ((["am-1"], "am-1", ["am-1"], 9094), "hostvars"),
        ((["am-1"], "am-1", HOSTVARS, None), "port"),
    ],
)
def test_peers_name_the_wrong_argument(args, argument):
    with pytest.raises(AnsibleFilterError, match="^aetherlink_alertmanager_peers: %s must be" % argument):
        data.alertmanager_peers(*args)


# --- Alertmanager inhibit rules and VIP route ---------------------------------------

VIP_TWINS = [
    {"critical": "CacheEffectivenessDropVIP", "warning": "CacheEffectivenessDrop"},
    {"critical": "LowConfidenceSpikeVIP", "warning": "LowConfidenceSpike"},
]


def expected_inhibit_rules(tenant_matcher):
    return [
        {
            "source_matchers": ['alertname="CacheEffectivenessDropVIP"', 'severity="critical"', tenant_matcher],
            "target_matchers": ['alertname="CacheEffectivenessDrop"', 'severity="warning"'],
            "equal": ["tenant"],
        },
        {
            "source_matchers": ['alertname="LowConfidenceSpikeVIP"', 'severity="critical"', tenant_matcher],
            "target_matchers": ['alertname="LowConfidenceSpike"', 'severity="warning"'],
            "equal": ["tenant"],
        },
    ]


def test_inhibit_rules_for_the_two_vip_twins():
    assert data.alertmanager_inhibit_rules(VIP_TWINS, "vip-.*|premium-.*") == expected_inhibit_rules(
        'tenant=~"vip-.*|premium-.*"'
    )


def test_inhibit_rules_escape_the_pattern_as_json():
    rules = data.alertmanager_inhibit_rules(VIP_TWINS[:1], 'vip-\\d+|"q"')
    assert rules[0]["source_matchers"][2] == 'tenant=~"vip-\\\\d+|\\"q\\""'
    assert rules[0]["source_matchers"][2] == "tenant=~" + json.dumps('vip-\\d+|"q"')
    assert data.alertmanager_inhibit_rules([], "vip-.*") == []


@pytest.mark.parametrize(
    "args, argument",
    [
        (({"critical": "A", "warning": "B"}, "vip-.*"), "twins"),
        ((["A"], "vip-.*"), r"twins\[0\]"),
        (([{"critical": "A"}], "vip-.*"), r"twins\[0\].warning"),
        ((VIP_TWINS, None), "vip_pattern"),
        ((VIP_TWINS, ""), "vip_pattern"),
    ],
)
def test_inhibit_rules_name_the_wrong_argument(args, argument):
    with pytest.raises(AnsibleFilterError, match="^aetherlink_alertmanager_inhibit_rules: %s must be" % argument):
        data.alertmanager_inhibit_rules(*args)


def test_vip_route():
    assert data.alertmanager_vip_route("slack-vip", "vip-.*|premium-.*") == {
        "receiver": "slack-vip",
        "matchers": ['severity="critical"', 'tenant=~"vip-.*|premium-.*"'],
    }
    with pytest.raises(AnsibleFilterError, match="^aetherlink_alertmanager_vip_route: receiver must be"):
        data.alertmanager_vip_route("", "vip-.*")
    with pytest.raises(AnsibleFilterError, match="^aetherlink_alertmanager_vip_route: vip_pattern must be"):
        data.alertmanager_vip_route("slack-vip", 5)


# --- alertmanager.yml rendered through Ansible, checked by amtool --------------------


@pytest.fixture(scope="session")
def amtool():
    path = tool("amtool")
    if not path:
        reason = "amtool is not installed (Debian package 'prometheus-alertmanager'; `make setup` puts it in .venv/bin)"
        print("SKIP: " + reason)
        pytest.skip(reason)
    return path


EXTRA_ROUTE = {"receiver": "blackhole", "matchers": ['alertname="Watchdog"']}
EXTRA_INHIBIT_RULE = {"source_matchers": ['alertname="A"'], "target_matchers": ['alertname="B"'], "equal": ["tenant"]}


@pytest.mark.parametrize(
    "case, overrides, receiver, routes",
    [
        (
            "slack-enabled",
            {
                "alertmanager_slack_webhook_url": "https://hooks.slack.com/services/T000/B000/XXXX",
                "alertmanager_slack_vip_channel": "#aetherlink-vip",
                "aetherlink_vip_tenant_pattern": "vip-\\d+|premium-.*",
                "alertmanager_extra_routes": [EXTRA_ROUTE],
                "alertmanager_extra_inhibit_rules": [EXTRA_INHIBIT_RULE],
            },
            "slack",
            [
                EXTRA_ROUTE,
                {"receiver": "slack-vip", "matchers": ['severity="critical"', 'tenant=~"vip-\\\\d+|premium-.*"']},
            ],
        ),
        (
            "slack-disabled",
            {"alertmanager_slack_webhook_url": "", "alertmanager_slack_vip_channel": "#aetherlink-vip"},
            "blackhole",
            None,
        ),
    ],
)
def test_rendered_alertmanager_config(amtool, tmp_path, case, overrides, receiver, routes):
    extra_vars = dict(
        overrides,
        aetherlink_environment="unit-test",
        alertmanager_templates_dir=str(tmp_path / "templates"),
        out_file=str(tmp_path / "alertmanager.yml"),
    )
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps(extra_vars))
    proc = run([tool("ansible-playbook"), "tests/alertmanager/render.yml", "-e", "@%s" % vars_file])
    assert proc.returncode == 0, proc.stdout + proc.stderr

    check = run([amtool, "check-config", extra_vars["out_file"]])
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout

    config = yaml.safe_load((tmp_path / "alertmanager.yml").read_text())
    pattern = overrides.get("aetherlink_vip_tenant_pattern", "vip-.*|premium-.*")
    assert config["inhibit_rules"] == expected_inhibit_rules("tenant=~" + json.dumps(pattern)) + overrides.get(
        "alertmanager_extra_inhibit_rules", []
    )
    assert config["route"]["receiver"] == receiver
    assert config["route"].get("routes") == routes
    receivers = [r["name"] for r in config["receivers"]]
    assert receivers == (["blackhole", "slack", "slack-vip"] if receiver == "slack" else ["blackhole"])


# --- aetherlink_bcrypt (web.yml of Prometheus and Alertmanager) -----------------------


def test_bcrypt_hash_is_deterministic_per_seed_and_checks_the_password():
    from passlib.hash import bcrypt

    web = load_plugin("aetherlink_web")
    first = web.bcrypt_hash("correct horse battery staple", "Prometheus@prom-1")
    assert first == web.bcrypt_hash("correct horse battery staple", "Prometheus@prom-1")  # idempotent reruns
    assert first.startswith("$2b$10$") and len(first) == 60
    assert bcrypt.verify("correct horse battery staple", first)
    assert not bcrypt.verify("correct horse battery stapler", first)
    # The same password on another host or service: another salt, another hash.
    assert web.bcrypt_hash("correct horse battery staple", "Prometheus@prom-2") != first
    assert web.bcrypt_hash("correct horse battery staple", "Alertmanager@prom-1") != first
    # The salt is derived from the seed, never from the password.
    assert web.bcrypt_hash("another password entirely", "Prometheus@prom-1")[7:29] == first[7:29]


@pytest.mark.parametrize("password, message", [
    ("", "the password is empty"),
    (None, "the password is empty or not a string"),
    ("x" * 73, "bcrypt only reads the first 72 bytes"),
])
def test_bcrypt_hash_refuses_what_it_cannot_hash_without_showing_it(password, message):
    web = load_plugin("aetherlink_web")
    with pytest.raises(AnsibleFilterError) as error:
        web.bcrypt_hash(password, "Prometheus@prom-1")
    assert message in str(error.value)
    if password:
        assert password not in str(error.value)
