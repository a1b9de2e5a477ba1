"""Unit tests of the AetherLink recording rules and alerts with promtool.

The rule files are rendered from the prometheus role's templates exactly as
the role renders them, then checked with `promtool test rules` (values, alert
timing, labels and annotation text) and `promtool check rules`.

One test file per evaluation interval and topic: promtool evaluates every
group at every step of a file's evaluation_interval, so the 30-day rules
(hourly increases) are tested in files evaluated every hour.
"""

import json
import re
import shutil

import pytest
import yaml

from conftest import ROOT, run, shared_vars

RULES_DIR = ROOT / "tests" / "rules"
FIXTURE = "@" + str(RULES_DIR / "fixture_vars.yml")
TEST_FILES = (
    "aetherlink_test.yml",  # the seed's rules and alerts, the alert thresholds (every 30s)
    "health_test.yml",  # health score and its components (every 30s)
    "slo_test.yml",  # SLO ratios, objectives, burn-rate alerts (every 30s)
    "billing_test.yml",  # 30-day billing against the seed's raw form (every 1h, 31 days)
    "sla_30d_test.yml",  # 30-day SLIs and error budgets (every 1h, 30 days)
)
RULE_GROUPS = {  # name -> interval
    "aetherlink_recording": "30s",
    "aetherlink_slo": "30s",
    "aetherlink_slo_long": "2m",
    "aetherlink_billing_hourly": "1h",
    "aetherlink_sla_hourly": "1h",
    "aetherlink_billing": "5m",
    "aetherlink_sla": "5m",
    "aetherlink_thresholds": "30s",
}
SEED_ALERTS = {  # alert -> its threshold variable
    "CacheEffectivenessDrop": "aetherlink_alert_cache_hit_ratio_min",
    "LowConfidenceSpike": "aetherlink_alert_lowconfidence_max",
    "LowConfidenceSpikeVIP": "aetherlink_alert_lowconfidence_vip_max",
    "CacheEffectivenessDropVIP": "aetherlink_alert_cache_hit_ratio_vip_min",
}
SLO_ALERTS = {  # alert -> its burn factor variable
    "SLOAvailabilityFastBurn": "aetherlink_slo_fast_burn_factor",
    "SLOAvailabilitySlowBurn": "aetherlink_slo_slow_burn_factor",
    "SLOLatencyFastBurn": "aetherlink_slo_fast_burn_factor",
    "SLOLatencySlowBurn": "aetherlink_slo_slow_burn_factor",
}


def promtool_test(promtool, rendered, test_file="aetherlink_test.yml"):
    shutil.copy(RULES_DIR / test_file, rendered / test_file)
    return run([promtool, "test", "rules", str(rendered / test_file)])


@pytest.fixture(scope="module")
def rendered_fixture(render_rules, tmp_path_factory):
    """The rule files rendered once with the fixture's inputs."""
    return render_rules(tmp_path_factory.mktemp("rules"), "-e", FIXTURE)


def test_every_test_file_runs():
    assert sorted(p.name for p in RULES_DIR.glob("*_test.yml")) == sorted(TEST_FILES)


@pytest.mark.parametrize("test_file", TEST_FILES)
def test_rules_unit_tests_pass(promtool, rendered_fixture, test_file):
    proc = promtool_test(promtool, rendered_fixture, test_file)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize(
    "test_file, override, broken",
    [
        # globex and vip-initech sit at 25%: a threshold of 24 must silence them.
        ("aetherlink_test.yml", "aetherlink_alert_cache_hit_ratio_min=24", "alertname: CacheEffectivenessDrop"),
        # vip-initech sits at 18%: a VIP threshold of 19 must silence it.
        ("aetherlink_test.yml", "aetherlink_alert_lowconfidence_vip_max=19", "alertname: LowConfidenceSpikeVIP"),
        # A longer hold must delay the VIP alert past 7m.
        ("aetherlink_test.yml", "aetherlink_alert_cache_hit_ratio_vip_for=10m", "alertname: CacheEffectivenessDropVIP"),
        # A pattern that no longer covers premium- tenants.
        ("aetherlink_test.yml", "aetherlink_vip_tenant_pattern=vip-.*", "alertname: CacheEffectivenessDropVIP"),
        # Other weights: the partly bad tenants score differently.
        ("health_test.yml", {"aetherlink_health_weights": {"cache": 2, "confidence": 1, "errors": 3, "latency": 4}},
         "aether:health_score:5m"),
        # A p99 objective of 2.5 s: slow-co (p99 2.485 s) is no longer bad.
        ("health_test.yml", {"aetherlink_health_objectives": {"cache_hit_ratio_pct": 80, "lowconfidence_pct": 10,
                                                              "error_pct": 5, "p99_seconds": 2.5}},
         "aether:health_score:5m"),
        # VIP tenants with the ordinary objective fire as late as the others.
        ("slo_test.yml", "aetherlink_sla_availability_objective_vip_pct=99.5", "alertname: SLOAvailabilityFastBurn"),
        ("slo_test.yml", "aetherlink_slo_fast_burn_factor=20", "alertname: SLOLatencyFastBurn"),
        # Another bucket: the 1.0 s bucket is no longer the objective.
        ("slo_test.yml", "aetherlink_sla_latency_threshold_seconds=0.5", "alertname: SLOLatencyFastBurn"),
        ("billing_test.yml", "aetherlink_billing_price_usd_per_reranked_answer=0.007", "aether:billing_cost_usd:30d"),
        ("sla_30d_test.yml", "aetherlink_sla_latency_objective_vip_pct=99.9",
         "aether:sla_latency_error_budget_remaining_pct:30d"),
    ],
)
def test_unit_tests_catch_a_changed_rule(promtool, render_rules, tmp_path, test_file, override, broken):
    """The unit tests are sensitive: render with one input changed and they must fail."""
    override = json.dumps(override) if isinstance(override, dict) else override
    rendered = render_rules(tmp_path, "-e", FIXTURE, "-e", override)
    proc = promtool_test(promtool, rendered, test_file)
    assert proc.returncode != 0
    assert broken in proc.stdout + proc.stderr


@pytest.mark.parametrize("env", ["local", "staging", "production"])
def test_every_environment_renders_valid_rules(promtool, render_rules, tmp_path, env):
    rendered = render_rules(tmp_path, "-i", str(ROOT / "inventories" / env))
    proc = run([promtool, "check", "rules", str(rendered / "aetherlink.rules.yml"), str(rendered / "aetherlink.alerts.yml")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shared = shared_vars(env)
    assert shared["aetherlink_environment"] == env
    alert_groups = yaml.safe_load((rendered / "aetherlink.alerts.yml").read_text())["groups"]
    assert [g["name"] for g in alert_groups] == ["aetherlink_alerts", "aetherlink_slo_alerts"]
    alerts = {r["alert"]: r for r in alert_groups[0]["rules"]}
    assert set(alerts) == set(SEED_ALERTS)
    assert alerts["CacheEffectivenessDrop"]["expr"].endswith("< %s" % shared["aetherlink_alert_cache_hit_ratio_min"])
    assert alerts["LowConfidenceSpikeVIP"]["expr"].endswith("> %s" % shared["aetherlink_alert_lowconfidence_vip_max"])
    assert alerts["LowConfidenceSpikeVIP"]["for"] == shared["aetherlink_alert_lowconfidence_vip_for"]
    slo_alerts = {r["alert"]: r for r in alert_groups[1]["rules"]}
    assert set(slo_alerts) == set(SLO_ALERTS)
    for name, factor in SLO_ALERTS.items():
        # long window AND short window, each against the factor
        assert re.findall(r"> (\S+)$", slo_alerts[name]["expr"], re.M) == [str(shared[factor])] * 2, slo_alerts[name]["expr"]
        assert set(slo_alerts[name]["annotations"]) == set(alerts["CacheEffectivenessDrop"]["annotations"])
    groups = yaml.safe_load((rendered / "aetherlink.rules.yml").read_text())["groups"]
    assert {g["name"]: g["interval"] for g in groups} == RULE_GROUPS
    thresholds = {r["labels"]["alertname"]: r["expr"] for g in groups if g["name"] == "aetherlink_thresholds" for r in g["rules"]}
    assert thresholds == {name: "vector(%s)" % shared[var] for name, var in SEED_ALERTS.items()}
