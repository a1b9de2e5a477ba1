"""Unit tests of molecule/shared/testkit.py, the scenarios' shared helpers (no containers)."""

import sys
from pathlib import Path

import pytest
import yaml

SHARED = Path(__file__).resolve().parents[1] / "molecule" / "shared"
if str(SHARED) not in sys.path:
    sys.path.insert(0, str(SHARED))

import testkit  # noqa: E402
from testkit import assert_unchanged, changed_hosts, diff_added_lines, metric_sum, parse_metrics, recap  # noqa: E402

# What ansible-core 2.19 prints for a --diff run on two hosts where only the
# second one changed (ANSIBLE_NOCOLOR=1), as a Molecule scenario's play would.
TWO_HOSTS_ONE_CHANGED = """
PLAY [alertmanager] ************************************************************

TASK [Template alertmanager.yml] ***********************************************
ok: [alertmanager-1]
--- before: /etc/prometheus/alertmanager.yml
+++ after: /root/.ansible/tmp/ansible-local-1912/tmpk3uoh8w1/alertmanager.yml.j2
@@ -1 +1 @@
-        - 'tenant=~"vip-.*|premium-.*"'
+        - 'tenant=~"gold-.*"'

changed: [alertmanager-2]

TASK [Look for the Slack CA bundle] ********************************************
skipping: [alertmanager-1]
skipping: [alertmanager-2]

PLAY RECAP *********************************************************************
alertmanager-1             : ok=1    changed=0    unreachable=0    failed=0    skipped=1    rescued=0    ignored=0   
alertmanager-2             : ok=1    changed=1    unreachable=0    failed=0    skipped=1    rescued=0    ignored=0   

"""

# The same run with colours forced on (ANSIBLE_FORCE_COLOR=1).
TWO_HOSTS_ONE_CHANGED_COLOUR = (
    "\nPLAY [alertmanager] ************************************************************\n\n"
    "TASK [Template alertmanager.yml] ***********************************************\n"
    "\x1b[0;32mok: [alertmanager-1]\x1b[0m\n"
    "\x1b[0;31m--- before: /etc/prometheus/alertmanager.yml\x1b[0m\n"
    "\x1b[0;31m\x1b[0m\x1b[0;32m+++ after: /root/.ansible/tmp/x/alertmanager.yml.j2\x1b[0m\n"
    "\x1b[0;32m\x1b[0m\x1b[0;36m@@ -1 +1 @@\x1b[0m\n"
    "\x1b[0;36m\x1b[0m\x1b[0;31m-        - 'tenant=~\"vip-.*|premium-.*\"'\x1b[0m\n"
    "\x1b[0;31m\x1b[0m\x1b[0;32m+        - 'tenant=~\"gold-.*\"'\x1b[0m\n"
    "\x1b[0;32m\x1b[0m\n"
    "\x1b[0;33mchanged: [alertmanager-2]\x1b[0m\n\n"
    "PLAY RECAP *********************************************************************\n"
    "\x1b[0;32malertmanager-1\x1b[0m             : \x1b[0;32mok=1   \x1b[0m changed=0    unreachable=0    "
    "failed=0    \x1b[0;36mskipped=1   \x1b[0m rescued=0    ignored=0   \n"
    "\x1b[0;33malertmanager-2\x1b[0m             : \x1b[0;32mok=1   \x1b[0m \x1b[0;33mchanged=1   \x1b[0m "
    "unreachable=0    failed=0    \x1b[0;36mskipped=1   \x1b[0m rescued=0    ignored=0   \n\n"
)

# A run of prometheus' converge.yml: a localhost play first, then the host;
# a warning on stderr after the recap (the tests append stderr to stdout).
LOCALHOST_AND_ONE_HOST = """
PLAY [Add scrape targets from the other groups] ********************************

TASK [Add an Alertmanager and an AetherLink host to the inventory] *************
ok: [localhost] => (item={'name': 'alertmanager-test', 'group': 'alertmanager'})
ok: [localhost] => (item={'name': 'aether-app-test', 'group': 'aether_app'})

PLAY [Converge] ****************************************************************

TASK [prometheus : Template the AetherLink recording rules and alerts] *********
ok: [prometheus-1] => (item=aetherlink.rules.yml)
ok: [prometheus-1] => (item=aetherlink.alerts.yml)

PLAY RECAP *********************************************************************
localhost                  : ok=1    changed=0    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0   
prometheus-1               : ok=31   changed=0    unreachable=0    failed=0    skipped=4    rescued=0    ignored=0   

[WARNING]: Collection community.docker does not support Ansible version 2.19.14
"""

# A run that failed on its only host.
ONE_HOST_FAILED = """
PLAY [Converge] ****************************************************************

TASK [aether_app : Check the settings] *****************************************
fatal: [aether-app-1]: FAILED! => {"changed": false, "msg": "aether_app_port must be an integer from 1024 to 65535"}

PLAY RECAP *********************************************************************
aether-app-1               : ok=2    changed=0    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0   
"""


# --- recap() ---------------------------------------------------------------------

def test_recap_reads_every_counter_of_every_host():
    assert recap(TWO_HOSTS_ONE_CHANGED) == {
        "alertmanager-1": {"ok": 1, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 1, "rescued": 0, "ignored": 0},
        "alertmanager-2": {"ok": 1, "changed": 1, "unreachable": 0, "failed": 0, "skipped": 1, "rescued": 0, "ignored": 0},
    }


def test_recap_ignores_colour_codes():
    assert recap(TWO_HOSTS_ONE_CHANGED_COLOUR) == recap(TWO_HOSTS_ONE_CHANGED)


def test_recap_stops_at_the_first_line_after_the_hosts():
    counters = recap(LOCALHOST_AND_ONE_HOST)
    assert set(counters) == {"localhost", "prometheus-1"}
    assert counters["prometheus-1"]["ok"] == 31
    assert counters["prometheus-1"]["skipped"] == 4


def test_recap_of_output_without_recap_is_empty():
    assert recap("ERROR! the playbook: converge.yml could not be found\n") == {}
    assert recap("") == {}


def test_recap_reads_the_last_recap():
    first = TWO_HOSTS_ONE_CHANGED
    second = TWO_HOSTS_ONE_CHANGED.replace("changed=1 ", "changed=0 ")
    assert recap(first + second)["alertmanager-2"]["changed"] == 0


def test_recap_fills_counters_an_older_ansible_does_not_print():
    old = "PLAY RECAP ***\nweb-1 : ok=3    changed=1    unreachable=0    failed=0\n"
    assert recap(old) == {"web-1": {"ok": 3, "changed": 1, "unreachable": 0, "failed": 0,
                                    "skipped": 0, "rescued": 0, "ignored": 0}}


# --- changed_hosts() and assert_unchanged() ----------------------------------------

def test_changed_hosts_names_only_the_host_that_changed():
    assert changed_hosts(TWO_HOSTS_ONE_CHANGED) == ["alertmanager-2"]
    assert changed_hosts(TWO_HOSTS_ONE_CHANGED_COLOUR) == ["alertmanager-2"]
    assert changed_hosts(LOCALHOST_AND_ONE_HOST) == []


def test_assert_unchanged_names_the_host_that_changed():
    # The output holds "changed=0" (for alertmanager-1): a substring check would pass.
    assert "changed=0" in TWO_HOSTS_ONE_CHANGED
    with pytest.raises(AssertionError) as error:
        assert_unchanged(TWO_HOSTS_ONE_CHANGED, ["alertmanager-1", "alertmanager-2"])
    message = str(error.value)
    assert "alertmanager-2: changed=1" in message
    assert "alertmanager-1:" not in message.split("\n")[0]


def test_assert_unchanged_names_a_host_missing_from_the_recap():
    with pytest.raises(AssertionError) as error:
        assert_unchanged(LOCALHOST_AND_ONE_HOST, ["prometheus-1", "prometheus-2"])
    assert "prometheus-2: missing from the PLAY RECAP" in str(error.value)
    assert "prometheus-1:" not in str(error.value).split("\n")[0]


def test_assert_unchanged_names_every_problem_host():
    with pytest.raises(AssertionError) as error:
        assert_unchanged(TWO_HOSTS_ONE_CHANGED, ["alertmanager-2", "alertmanager-3"])
    first_line = str(error.value).split("\n")[0]
    assert "alertmanager-2: changed=1" in first_line
    assert "alertmanager-3: missing from the PLAY RECAP" in first_line


def test_assert_unchanged_without_recap_names_every_host():
    with pytest.raises(AssertionError) as error:
        assert_unchanged("fatal: ansible-playbook was killed\n", ["aether-app-1"])
    assert "aether-app-1: missing from the PLAY RECAP" in str(error.value)


def test_assert_unchanged_does_not_count_a_failed_host_as_unchanged():
    with pytest.raises(AssertionError) as error:
        assert_unchanged(ONE_HOST_FAILED, ["aether-app-1"])
    assert "aether-app-1: failed=1" in str(error.value)


def test_assert_unchanged_passes_when_every_host_is_unchanged():
    assert_unchanged(LOCALHOST_AND_ONE_HOST, ["prometheus-1"])
    assert_unchanged(LOCALHOST_AND_ONE_HOST, ["localhost", "prometheus-1"])
    assert_unchanged(TWO_HOSTS_ONE_CHANGED, ["alertmanager-1"])
    assert_unchanged(TWO_HOSTS_ONE_CHANGED_COLOUR, ["alertmanager-1"])


# --- diff_added_lines() ----------------------------------------------------------

def test_diff_added_lines_without_headers():
    assert diff_added_lines(TWO_HOSTS_ONE_CHANGED) == ["+        - 'tenant=~\"gold-.*\"'"]
    assert diff_added_lines(TWO_HOSTS_ONE_CHANGED_COLOUR) == diff_added_lines(TWO_HOSTS_ONE_CHANGED)


def test_diff_added_lines_of_one_file():
    two_files = TWO_HOSTS_ONE_CHANGED + (
        "--- before: /etc/default/prometheus-alertmanager\n"
        "+++ after: /root/.ansible/tmp/y/alertmanager.default.j2\n"
        "@@ -1 +1 @@\n-ARGS=\"\"\n+ARGS=\"--cluster.peer-timeout=5s\"\n"
    )
    assert diff_added_lines(two_files, "/etc/prometheus/alertmanager.yml") == ["+        - 'tenant=~\"gold-.*\"'"]
    assert diff_added_lines(two_files, "alertmanager.yml") == ["+        - 'tenant=~\"gold-.*\"'"]
    assert diff_added_lines(two_files, "/etc/default/prometheus-alertmanager") == ['+ARGS="--cluster.peer-timeout=5s"']
    assert diff_added_lines(two_files, "/etc/aetherlink/settings.env") == []
    assert diff_added_lines(LOCALHOST_AND_ONE_HOST) == []


# --- parse_metrics() and metric_sum() --------------------------------------------

EXPOSITION = r"""# HELP aether_cache_requests_total Answer cache lookups.
# TYPE aether_cache_requests_total counter
aether_cache_requests_total{tenant="acme-corp"} 10.0
aether_cache_requests_total{tenant="globex"} 4
aether_http_requests_total{route="query",code="200",tenant="acme-corp"} 7
aether_http_requests_total{route="query",code="401",tenant="acme-corp"} 2
aether_http_requests_total{code="200",route="healthz",tenant=""} 3
aether_request_duration_seconds_bucket{route="query",le="+Inf"} 9
aether_errors_total{tenant="acme-corp",message="bad \"quoted\" input, {not} a label=\"x\""} 1
aether_errors_total{tenant="acme-corp",message="back\\slash\nnew line"} 2
aether_uptime_seconds 1.5e3
prometheus_config_last_reload_successful 1 1712345678901

"""


def test_parse_metrics_keys_and_values():
    samples = parse_metrics(EXPOSITION)
    assert samples[("aether_cache_requests_total", frozenset({("tenant", "acme-corp")}))] == 10
    assert samples[("aether_uptime_seconds", frozenset())] == 1500
    assert samples[("aether_request_duration_seconds_bucket", frozenset({("route", "query"), ("le", "+Inf")}))] == 9
    # A sample's timestamp is not its value.
    assert samples[("prometheus_config_last_reload_successful", frozenset())] == 1
    assert len(samples) == 10


def test_parse_metrics_unescapes_label_values_with_quotes():
    samples = parse_metrics(EXPOSITION)
    quoted = frozenset({("tenant", "acme-corp"), ("message", 'bad "quoted" input, {not} a label="x"')})
    assert samples[("aether_errors_total", quoted)] == 1
    other = frozenset({("tenant", "acme-corp"), ("message", "back\\slash\nnew line")})
    assert samples[("aether_errors_total", other)] == 2
    assert metric_sum(samples, "aether_errors_total", message='bad "quoted" input, {not} a label="x"') == 1


def test_parse_metrics_special_values():
    samples = parse_metrics('a{x="1"} +Inf\nb -Inf\nc NaN\n')
    assert samples[("a", frozenset({("x", "1")}))] == float("inf")
    assert samples[("b", frozenset())] == float("-inf")
    value = samples[("c", frozenset())]
    assert value != value  # NaN


def test_parse_metrics_rejects_a_line_that_is_no_sample():
    with pytest.raises(ValueError, match="not a metrics sample"):
        parse_metrics('aether_x{tenant="unterminated} 1\n')
    with pytest.raises(ValueError, match="not a metrics sample"):
        parse_metrics("<html>502 Bad Gateway</html>\n")


def test_metric_sum_matches_a_subset_of_the_labels():
    samples = parse_metrics(EXPOSITION)
    assert metric_sum(samples, "aether_cache_requests_total") == 14
    assert metric_sum(samples, "aether_cache_requests_total", tenant="globex") == 4
    assert metric_sum(samples, "aether_http_requests_total", tenant="acme-corp") == 9
    assert metric_sum(samples, "aether_http_requests_total", route="query", code="200") == 7
    assert metric_sum(samples, "aether_http_requests_total", tenant="") == 3
    assert metric_sum(samples, "aether_http_requests_total", tenant="no-such-tenant") == 0
    assert metric_sum(samples, "no_such_metric") == 0


# --- Variables and wait_until() ----------------------------------------------------

def test_shared_vars_merges_common_defaults_under_the_scenario_group_vars(tmp_path, monkeypatch):
    defaults = tmp_path / "defaults.yml"
    defaults.write_text("---\naetherlink_alert_cache_hit_ratio_min: 30\naetherlink_vip_tenant_pattern: vip-.*\n")
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"provisioner": {"inventory": {"group_vars": {"all": {
        "aetherlink_vip_tenant_pattern": "gold-.*", "aetherlink_environment": "unit"}}}}}))
    monkeypatch.setattr(testkit, "COMMON_DEFAULTS", defaults)
    monkeypatch.setattr(testkit, "MOLECULE_CONFIG", config)
    assert testkit.shared_vars() == {"aetherlink_alert_cache_hit_ratio_min": 30, "aetherlink_vip_tenant_pattern": "gold-.*",
                                     "aetherlink_environment": "unit"}
    config.write_text("---\n# no inventory settings\n")
    assert testkit.shared_vars() == {"aetherlink_alert_cache_hit_ratio_min": 30, "aetherlink_vip_tenant_pattern": "vip-.*"}


def test_shared_vars_of_the_repository_hold_what_the_scenarios_read():
    shared = testkit.shared_vars()
    for name in ("aetherlink_tenants", "aetherlink_vip_tenant_pattern", "aetherlink_alert_cache_hit_ratio_min",
                 "aetherlink_alert_cache_hit_ratio_for", "aetherlink_runbook_base_url"):
        assert name in shared, name
    assert shared["aetherlink_tenants"]


def test_scenario_env_prefers_the_environment(tmp_path, monkeypatch):
    (tmp_path / "molecule.yml").write_text(yaml.safe_dump({"provisioner": {"env": {"SLACK_WEBHOOK_URL": "from-file"}}}))
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "from-env")
    assert testkit.scenario_env(tmp_path, "SLACK_WEBHOOK_URL") == "from-env"
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "")
    assert testkit.scenario_env(tmp_path, "SLACK_WEBHOOK_URL") == "from-file"
    monkeypatch.delenv("SLACK_WEBHOOK_URL")
    assert testkit.scenario_env(tmp_path, "SLACK_WEBHOOK_URL") == "from-file"
    with pytest.raises(KeyError):
        testkit.scenario_env(tmp_path, "NO_SUCH_VARIABLE_IN_ANY_SCENARIO")


def test_wait_until_returns_the_first_true_result_or_the_last_one():
    calls = iter([None, [], {"status": "ready"}, "never reached"])
    assert testkit.wait_until(lambda: next(calls), timeout=5, interval=0) == {"status": "ready"}
    assert testkit.wait_until(lambda: 0, timeout=0.05, interval=0.01) == 0


def test_root_is_the_repository_root():
    assert (testkit.ROOT / "roles" / "prometheus").is_dir()
    assert (testkit.ROOT / "molecule" / "shared" / "testkit.py").is_file()
