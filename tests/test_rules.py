"""Unit tests of the AetherLink recording rules and alerts with promtool.

The rule files are rendered from the prometheus role's templates exactly as
the role renders them, then checked with `promtool test rules` (values, alert
timing, labels and annotation text) and `promtool check rules`.
"""

import shutil

import pytest
import yaml

from conftest import ROOT, run, shared_vars

RULES_DIR = ROOT / "tests" / "rules"
FIXTURE = "@" + str(RULES_DIR / "fixture_vars.yml")


def promtool_test(promtool, rendered):
    shutil.copy(RULES_DIR / "aetherlink_test.yml", rendered / "aetherlink_test.yml")
    return run([promtool, "test", "rules", str(rendered / "aetherlink_test.yml")])


def test_rules_unit_tests_pass(promtool, render_rules, tmp_path):
    rendered = render_rules(tmp_path, "-e", FIXTURE)
    proc = promtool_test(promtool, rendered)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize(
    "override, broken_alert",
    [
        # globex and vip-initech sit at 25%: a threshold of 24 must silence them.
        ("aetherlink_alert_cache_hit_ratio_min=24", "CacheEffectivenessDrop"),
        # vip-initech sits at 18%: a VIP threshold of 19 must silence it.
        ("aetherlink_alert_lowconfidence_vip_max=19", "LowConfidenceSpikeVIP"),
        # A longer hold must delay the VIP alert past 7m.
        ("aetherlink_alert_cache_hit_ratio_vip_for=10m", "CacheEffectivenessDropVIP"),
        # A pattern that no longer covers premium- tenants.
        ("aetherlink_vip_tenant_pattern=vip-.*", "CacheEffectivenessDropVIP"),
    ],
)
def test_unit_tests_catch_a_changed_rule(promtool, render_rules, tmp_path, override, broken_alert):
    """The unit tests are sensitive: render with one input changed and they must fail."""
    rendered = render_rules(tmp_path, "-e", FIXTURE, "-e", override)
    proc = promtool_test(promtool, rendered)
    assert proc.returncode != 0
    assert "alertname: %s" % broken_alert in proc.stdout + proc.stderr


@pytest.mark.parametrize("env", ["local", "staging", "production"])
def test_every_environment_renders_valid_rules(promtool, render_rules, tmp_path, env):
    rendered = render_rules(tmp_path, "-i", str(ROOT / "inventories" / env))
    proc = run([promtool, "check", "rules", str(rendered / "aetherlink.rules.yml"), str(rendered / "aetherlink.alerts.yml")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shared = shared_vars(env)
    assert shared["aetherlink_environment"] == env
    alerts = {r["alert"]: r for r in yaml.safe_load((rendered / "aetherlink.alerts.yml").read_text())["groups"][0]["rules"]}
    assert alerts["CacheEffectivenessDrop"]["expr"].endswith("< %s" % shared["aetherlink_alert_cache_hit_ratio_min"])
    assert alerts["LowConfidenceSpikeVIP"]["expr"].endswith("> %s" % shared["aetherlink_alert_lowconfidence_vip_max"])
    assert alerts["LowConfidenceSpikeVIP"]["for"] == shared["aetherlink_alert_lowconfidence_vip_for"]
