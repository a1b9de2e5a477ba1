"""Staging and production refuse demo or weak secrets (no containers needed).

The filter aetherlink_secret_problems (roles/aetherlink/filter_plugins/
aetherlink_checks.py) is unit-tested with the repository's own deny list
(roles/aetherlink/defaults/main.yml); then the real check, the last task of
the aetherlink role's tasks/main.yml, runs through ansible-playbook
(tests/secrets/preflight.yml) with the staging and production inventories and
the secrets in the environment variables the shared defaults read. Every
message must name the variable and the rule and never show a value.
"""

import re
import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from conftest import ROOT, run, tool
from test_filters import load_plugin

checks = load_plugin("aetherlink_checks")
DEFAULTS = yaml.safe_load((ROOT / "roles" / "aetherlink" / "defaults" / "main.yml").read_text())
DENY = DEFAULTS["aetherlink_secret_deny_list"]
MIN = DEFAULTS["aetherlink_secret_min_length"]
SECRET_VARIABLES = [
    "aetherlink_admin_key",
    "aetherlink_tenant_key_seed",
    "aetherlink_web_password",
    "aetherlink_app_metrics_token",
    "aetherlink_grafana_admin_password",
    "aetherlink_slack_webhook_url",
]
REQUIRED = SECRET_VARIABLES[:4]
URLS = ["aetherlink_slack_webhook_url"]


def strong(label):
    """A strong random secret, new at every call."""
    return "%s-%s" % (label, secrets.token_urlsafe(18))


def strong_secrets():
    values = {name: strong(name.split("_", 1)[1][:5]) for name in SECRET_VARIABLES}
    values["aetherlink_slack_webhook_url"] = "https://hooks.slack.com/services/T0%s/B0%s/%s" % (
        secrets.token_hex(4).upper(), secrets.token_hex(4).upper(), secrets.token_urlsafe(18))
    return values


def problems(values, deny=None, min_length=None):
    return checks.secret_problems(values, DENY if deny is None else deny, MIN if min_length is None else min_length,
                                  required=REQUIRED, urls=URLS)


def assert_not_shown(value, text, piece=4):
    """Neither the value nor any piece of it (``piece`` characters) is in ``text`` (case-insensitive)."""
    low, text = value.lower(), text.lower()
    assert low not in text
    pieces = {low[i:i + piece] for i in range(len(low) - piece + 1)}
    shown = sorted(p for p in pieces if p in text)
    assert not shown, "pieces of the secret are shown: %s" % shown


# --- The shared defaults -----------------------------------------------------------


def test_defaults_are_the_documented_ones():
    assert DEFAULTS["aetherlink_secrets_strict_environments"] == ["staging", "production"]
    assert MIN == 16
    # The seed's demo key, the usual weak words, the app README's examples (API_ADMIN_KEY=change-me...).
    assert {"admin-secret-123", "changeme", "change-me", "change-me-0123456789", "password", "admin", "secret"} <= set(DENY)
    assert all(isinstance(entry, str) and entry for entry in DENY)
    assert len({entry.casefold() for entry in DENY}) == len(DENY), "duplicate entries"


def published_test_secrets():
    """The secret values the Molecule configurations of this repository publish."""
    names = {"AETHER_ADMIN_KEY", "AETHER_TENANT_KEY_SEED", "AETHER_WEB_PASSWORD", "AETHER_METRICS_TOKEN",
             "GRAFANA_ADMIN_PASSWORD", "SLACK_WEBHOOK_URL"}
    paths = [ROOT / ".config" / "molecule" / "config.yml", *ROOT.glob("molecule/*/molecule.yml"),
             *ROOT.glob("roles/*/molecule/*/molecule.yml")]
    for path in paths:
        env = ((yaml.safe_load(path.read_text()) or {}).get("provisioner") or {}).get("env") or {}
        for name, value in env.items():
            if name in names and isinstance(value, str) and value and "${" not in value:
                yield path.relative_to(ROOT), name, value


def test_every_test_secret_published_in_the_repository_is_refused():
    found = list(published_test_secrets())
    assert found, "no Molecule secrets found: has their place changed?"
    for path, name, value in found:
        variable = "aetherlink_slack_webhook_url" if name == "SLACK_WEBHOOK_URL" else "aetherlink_admin_key"
        messages = problems({variable: value})
        assert any("deny list" in m for m in messages), "%s %s of %s is not refused" % (name, value, path)


# --- The filter ----------------------------------------------------------------------


def test_strong_unique_secrets_pass():
    assert problems(strong_secrets()) == []


def test_optional_secrets_may_be_empty_and_a_short_slack_url_is_no_weakness():
    values = strong_secrets()
    values["aetherlink_grafana_admin_password"] = ""
    values["aetherlink_slack_webhook_url"] = None
    assert problems(values) == []
    values["aetherlink_slack_webhook_url"] = "https://hooks.example/x"
    assert problems(values) == []


@pytest.mark.parametrize("value, rule", [
    ("admin-secret-123", "is in the deny list of demo secrets (aetherlink_secret_deny_list)"),
    ("ADMIN-Secret-123", "is in the deny list of demo secrets"),
    ("  changeme ", "is in the deny list of demo secrets"),
    ("Admin-Secret-2024!", "is made of deny-listed demo words"),
    ("P@ssw0rd1P@ssw0rd1", "is made of deny-listed demo words"),
    ("changeme_2024_changeme", "is made of deny-listed demo words"),
    ("W3lc0me!Adm1n#Key", "is made of deny-listed demo words"),
    ("Secret.Password.Admin", "is made of deny-listed demo words"),
    ("1234567890123456", "is made of deny-listed demo words"),
    ("molecule-admin-e2ekq7vnr4slp9", "is in the deny list of demo secrets"),
    ("Kq8-vX2", "is shorter than 16 characters (aetherlink_secret_min_length), got 7"),
    ("aaaaaaaaaaaaaaaaaaaa", "has fewer than 6 distinct characters (a repeated character or pattern), got 1"),
    ("Ab1Ab1Ab1Ab1Ab1Ab1Ab1", "has fewer than 6 distinct characters (a repeated character or pattern), got 3"),
    ("<API_ADMIN_KEY>-placeholder", "is a placeholder copied from documentation"),
    ("replace-me-with-the-key...", "is a placeholder copied from documentation"),
])
def test_weak_values_are_refused_naming_the_variable_and_the_rule(value, rule):
    values = strong_secrets()
    values["aetherlink_tenant_key_seed"] = value
    messages = problems(values)
    assert any(m.startswith("aetherlink_tenant_key_seed ") and rule in m for m in messages), messages
    assert all(m.startswith("aetherlink_tenant_key_seed ") for m in messages), messages
    assert value.strip().lower() not in " ".join(messages).lower()


def test_a_value_that_merely_contains_a_word_passes():
    values = strong_secrets()
    values["aetherlink_admin_key"] = "Kq8-admin-Zx4vLm2Rt9-secret"
    assert problems(values) == []


def test_required_secrets_must_be_set():
    values = strong_secrets()
    values["aetherlink_admin_key"] = ""
    values["aetherlink_web_password"] = "   "
    del values["aetherlink_app_metrics_token"]
    assert problems(values) == [
        "aetherlink_admin_key is empty (a required secret)",
        "aetherlink_web_password is empty (a required secret)",
        "aetherlink_app_metrics_token is empty (a required secret)",
    ]


def test_secrets_sharing_a_value_are_named_together():
    values = strong_secrets()
    values["aetherlink_web_password"] = values["aetherlink_admin_key"]
    values["aetherlink_grafana_admin_password"] = values["aetherlink_admin_key"].upper()
    assert problems(values) == [
        "aetherlink_admin_key and aetherlink_web_password and aetherlink_grafana_admin_password have the same value: "
        "every secret must be different"
    ]


def test_the_slack_url_only_meets_the_deny_list_placeholder_and_same_value_rules():
    values = strong_secrets()
    values["aetherlink_slack_webhook_url"] = "https://hooks.slack.com/services/..."
    assert problems(values) == [
        "aetherlink_slack_webhook_url is a placeholder copied from documentation (it contains '...' or '<...>')"]
    values["aetherlink_slack_webhook_url"] = next(e for e in DENY if e.startswith("https://"))
    assert problems(values) == ["aetherlink_slack_webhook_url is in the deny list of demo secrets (aetherlink_secret_deny_list)"]
    values["aetherlink_slack_webhook_url"] = values["aetherlink_admin_key"]
    assert problems(values) == [
        "aetherlink_admin_key and aetherlink_slack_webhook_url have the same value: every secret must be different"]


def test_settings_given_as_strings_and_bad_arguments():
    values = {"aetherlink_admin_key": "Kq8vX2mZ4tLr9wYp"}
    assert checks.secret_problems(values, "admin, secret", "20") == [
        "aetherlink_admin_key is shorter than 20 characters (aetherlink_secret_min_length), got 16"]
    for bad in (["Kq8vX2mZ4tLr9wYp"], "Kq8vX2mZ4tLr9wYp", None):
        with pytest.raises(AnsibleFilterError, match="secrets must be a mapping") as info:
            checks.secret_problems(bad, DENY, MIN)
        assert "Kq8v" not in str(info.value)
    for bad in (True, "many", 0):
        with pytest.raises(AnsibleFilterError, match="min_length must be an integer"):
            checks.secret_problems(values, DENY, bad)
    with pytest.raises(AnsibleFilterError, match="deny_list must be a list of strings"):
        checks.secret_problems(values, {"admin": 1}, MIN)


@pytest.mark.parametrize("value, body", [
    ("Admin-Secret-2024!", "adminsecret"),
    ("P@ssw0rd1", "passw0rd"),
    ("$3cr3t!", "s3cr3t"),
    ("123-456", "123456"),
    ("Kq8-admin", "kq8admin"),
])
def test_secret_body(value, body):
    assert checks.secret_body(value) == body


def test_no_message_contains_the_secret_or_a_piece_of_it():
    # Weak in every way at once, and unlike any word of the messages.
    short, repeated, shared = "QZ7XJ9", "QQQQQQQQQQQQQQQQQQQQ", "QZXJ7W9KV3YPM8RTQZ"
    values = {
        "aetherlink_admin_key": short,
        "aetherlink_tenant_key_seed": repeated,
        "aetherlink_web_password": shared,
        "aetherlink_app_metrics_token": shared,
        "aetherlink_grafana_admin_password": "admin-secret-123",
        "aetherlink_slack_webhook_url": "https://hooks.slack.com/services/QZXJ/...",
    }
    messages = problems(values)
    assert len(messages) == 5, messages
    text = "\n".join(messages)
    for value in (short, repeated, shared):
        assert_not_shown(value, text)
    # The URL's and the demo value's words are those of the variable names.
    assert values["aetherlink_slack_webhook_url"] not in text and "qzxj" not in text.lower()
    assert "admin-secret-123" not in text


# --- The real check, through ansible-playbook ----------------------------------------------
#
# One ansible-playbook run per case (about 3 s of CPU each), all started at
# once; a case breaking several rules expects one message per rule (the check
# reports them all in one failure).

PLAYBOOK = "tests/secrets/preflight.yml"
ENV_OF = {
    "aetherlink_admin_key": "AETHER_ADMIN_KEY",
    "aetherlink_tenant_key_seed": "AETHER_TENANT_KEY_SEED",
    "aetherlink_web_password": "AETHER_WEB_PASSWORD",
    "aetherlink_app_metrics_token": "AETHER_METRICS_TOKEN",
    "aetherlink_grafana_admin_password": "GRAFANA_ADMIN_PASSWORD",
    "aetherlink_slack_webhook_url": "SLACK_WEBHOOK_URL",
}
TWIN = strong("twin")
WEAK = {
    "aetherlink_admin_key": "admin-secret-123",
    "aetherlink_tenant_key_seed": "Vq8-Kz3mW",
    "aetherlink_app_metrics_token": "ZZZZZZZZZZZZZZZZZZZZ",
    "aetherlink_web_password": TWIN,
    "aetherlink_grafana_admin_password": TWIN,
}
# name: (inventory, secrets replacing the strong ones, extra args, messages expected; [] = the run passes)
CASES = {
    "strong-secrets-pass-in-production": ("production", {}, [], []),
    "demo-admin-key-and-empty-token-fail-in-staging": (
        "staging",
        {"aetherlink_admin_key": "admin-secret-123", "aetherlink_app_metrics_token": "",
         "aetherlink_grafana_admin_password": "", "aetherlink_slack_webhook_url": ""},
        [],
        ["aetherlink_admin_key is in the deny list of demo secrets (aetherlink_secret_deny_list)",
         "aetherlink_app_metrics_token is empty (a required secret)"],
    ),
    "short-repeated-and-shared-fail-in-production": (
        "production",
        {name: WEAK[name] for name in ("aetherlink_tenant_key_seed", "aetherlink_app_metrics_token",
                                       "aetherlink_web_password", "aetherlink_grafana_admin_password")},
        [],
        ["aetherlink_tenant_key_seed is shorter than 16 characters (aetherlink_secret_min_length), got 9",
         "aetherlink_app_metrics_token has fewer than 6 distinct characters",
         "aetherlink_web_password and aetherlink_grafana_admin_password have the same value"],
    ),
    "web-auth-off-fails-in-production": (
        "production", {}, ["-e", '{"aetherlink_web_auth_enabled": false}'],
        ["aetherlink_web_auth_enabled must be true"],
    ),
    # Not a strict environment: the same weak values are accepted.
    "weak-secrets-accepted-in-molecule": ("staging", WEAK, ["-e", "aetherlink_environment=molecule"], []),
}


def run_case(case):
    inventory, overrides, extra, _ = case
    values = dict(strong_secrets(), **overrides)
    proc = run([tool("ansible-playbook"), PLAYBOOK, "-i", "inventories/%s" % inventory, *extra],
               env_extra={ENV_OF[name]: value for name, value in values.items()})
    return proc, values


@pytest.fixture(scope="module")
def outcomes():
    with ThreadPoolExecutor(max_workers=len(CASES)) as pool:
        futures = {name: pool.submit(run_case, case) for name, case in CASES.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_preflight_refuses_weak_secrets_in_staging_and_production(outcomes, name):
    """The check fails naming every variable and rule broken (and passes where
    expected), and the output shows no secret."""
    proc, values = outcomes[name]
    out = proc.stdout + proc.stderr
    expected = CASES[name][3]
    if not expected:
        assert proc.returncode == 0, out
    else:
        assert proc.returncode != 0, out
        error = re.search(r"^\[ERROR\]: .*$", out, re.M)
        assert error, out
        assert "refuses demo or weak secrets (aetherlink_secrets_strict_environments)" in error.group(0), out
        for message in expected:
            assert message in error.group(0), out
    # No value anywhere in the output (which wraps long lines: also compared
    # without its line breaks), nor an 8-character piece of a weak one.
    flat = re.sub(r"\s+", " ", out)
    for value in values.values():
        if value:
            assert value not in out and value not in flat, "a secret is shown"
    for value in CASES[name][1].values():
        if len(value) >= 8 and value not in DENY:
            assert_not_shown(value, flat, piece=8)
