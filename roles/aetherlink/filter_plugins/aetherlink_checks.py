"""Validation helpers for the checks of the AetherLink shared variables."""

import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

# Prometheus uses Go's RE2: no look-around, no back-references, no atomic
# groups or conditionals, no \Z (RE2 has \z), and (Prometheus 2.x's Go) no
# (?<name>...) groups. Python's re accepts those, so they are rejected here.
_RE2_UNSUPPORTED = re.compile(r"\(\?<?[=!]|\\[1-9]|\(\?>|\(\?\(|\(\?<[A-Za-z_]|(?<!\\)(?:\\\\)*\\Z")

# Prometheus/Alertmanager duration: one or more <number><unit>, e.g. 30s, 1h30m.
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def is_duration(value):
    """True when ``value`` (a string or anything printable) is a Prometheus duration."""
    return bool(_DURATION.match(str(value)))


_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(value):
    """Seconds of a Prometheus duration (``1h30m`` -> 5400); a ValueError names what is wrong."""
    if not is_duration(value):
        raise ValueError("not a Prometheus duration: %r" % (value,))
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", str(value)))


def regex_error(pattern):
    """Return why ``pattern`` is not a usable Prometheus (RE2) regex, or ''."""
    if not isinstance(pattern, str) or not pattern:
        return "must be a non-empty string"
    if _RE2_UNSUPPORTED.search(pattern):
        return ("uses look-around, a back-reference, an atomic group, a conditional, \\Z or a (?<name>) group,"
                " which Prometheus (RE2) does not support")
    try:
        re.compile(pattern)
    except re.error as exc:
        return "is not a valid regular expression: %s" % exc
    return ""


# --- Secrets ------------------------------------------------------------------
# The checks of the secrets in the strict environments (tasks/main.yml, last
# task). A message names the variable and the rule it breaks, never the value
# nor any part of it (only its length or its number of distinct characters).

# '@' and '$' read as the letters they stand for (before the ends are trimmed).
_LOOKALIKE_SYMBOLS = str.maketrans({"@": "a", "$": "s"})
# Digits that may stand for a letter of a deny-listed word.
_LOOKALIKE_DIGITS = {"0": "o", "1": "il", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b"}
# Placeholders copied from documentation: "https://hooks.slack.com/services/...", "<API_ADMIN_KEY>".
_PLACEHOLDER = re.compile(r"\.\.\.|\u2026|<[^<>]*>")
MIN_DISTINCT_CHARACTERS = 6


def secret_body(value):
    """The "body" of a secret: what is compared with the deny list's words.

    Lower case, ``@`` and ``$`` read as ``a`` and ``s``, the digits and
    punctuation at both ends dropped, then every character other than a letter
    or a digit dropped: ``"Admin-Secret-2024!"`` -> ``"adminsecret"``,
    ``"P@ssw0rd1"`` -> ``"passw0rd"``. A value without a letter keeps all its
    digits (``"123-456"`` -> ``"123456"``).
    """
    text = str(value).strip().lower().translate(_LOOKALIKE_SYMBOLS)
    if re.search(r"[a-z]", text):
        text = re.sub(r"^[^a-z]+|[^a-z]+$", "", text)
    return re.sub(r"[^a-z0-9]", "", text)


def _alike(char, word_char):
    return char == word_char or word_char in _LOOKALIKE_DIGITS.get(char, "")


def _made_of(body, words):
    """True when ``body`` is one or more of ``words`` one after the other, with
    digits allowed between them, and look-alike digits (0 o, 1 i or l, 3 e,
    4 a, 5 s, 7 t, 8 b) matching the letters they stand for."""
    n = len(body)
    # best[i]: -1 the first i characters cannot be covered; 0 they can, by
    # skipped digits only; 1 they can, with at least one word.
    best = [0] + [-1] * n
    for i in range(n):
        if best[i] < 0:
            continue
        if body[i].isdigit():
            best[i + 1] = max(best[i + 1], best[i])
        for word in words:
            if len(word) <= n - i and all(_alike(c, w) for c, w in zip(body[i:i + len(word)], word)):
                best[i + len(word)] = 1
    return n > 0 and best[n] == 1


def _names_arg(argument, value):
    """A list of variable names, given as a list or a comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise AnsibleFilterError("aetherlink_secret_problems: %s must be a list of strings, got a %s"
                                 % (argument, type(value).__name__))
    return [v.strip() for v in value if v.strip()]


def _int_arg(argument, value, minimum):
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())):
        raise AnsibleFilterError("aetherlink_secret_problems: %s must be an integer, got a %s"
                                 % (argument, type(value).__name__))
    if int(value) < minimum:
        raise AnsibleFilterError("aetherlink_secret_problems: %s must be an integer >= %d, got %d"
                                 % (argument, minimum, int(value)))
    return int(value)


def secret_problems(secrets, deny_list=(), min_length=16, required=(), urls=(), min_distinct=MIN_DISTINCT_CHARACTERS):
    """Why the secrets are weak, one message per variable and broken rule; [] when none is.

    ``secrets`` maps each variable name to its value (``None`` or blank:
    empty). The rules, in this order for each variable:

    - empty: only reported for the names in ``required`` (an optional empty
      secret, e.g. no Slack URL, is fine);
    - a placeholder copied from documentation (``...`` or ``<...>``);
    - in ``deny_list`` (compared case-insensitively, ends trimmed);
    - made of deny-listed words: its body (``secret_body``) is the body of one
      entry of ``deny_list`` or several one after the other, digits allowed
      between them and look-alike digits read as letters (``_made_of``), so
      ``Admin-Secret-2024!``, ``P@ssw0rd1`` and ``changeme_2024_changeme`` are
      refused while a random value that merely contains a word is not;
    - shorter than ``min_length`` characters;
    - fewer than ``min_distinct`` distinct characters (``aaaaaaaaaaaaaaaa``).

    The names in ``urls`` (the Slack webhook URL) are only checked for the
    placeholder and the exact deny-list rules: a URL is long and varied by
    construction, and its words (``hooks``, ``services``) are not weakness.
    Last, one message for each group of secrets that share a value (compared
    case-insensitively): every secret must be different.

    The messages never contain a value or a part of one.
    """
    if not isinstance(secrets, Mapping):
        raise AnsibleFilterError("aetherlink_secret_problems: secrets must be a mapping of variable name to value, got a %s"
                                 % type(secrets).__name__)
    deny = _names_arg("deny_list", deny_list)
    min_length = _int_arg("min_length", min_length, 1)
    min_distinct = _int_arg("min_distinct", min_distinct, 1)
    required = _names_arg("required", required)
    urls = set(_names_arg("urls", urls))

    deny_exact = {d.casefold() for d in deny}
    deny_words = {b for b in (secret_body(d) for d in deny) if b}
    values = {str(name): ("" if value is None else str(value)) for name, value in secrets.items()}
    for name in required:
        values.setdefault(name, "")

    problems = []
    for name, value in values.items():
        if not value.strip():
            if name in required:
                problems.append("%s is empty (a required secret)" % name)
            continue
        if _PLACEHOLDER.search(value):
            problems.append("%s is a placeholder copied from documentation (it contains '...' or '<...>')" % name)
        if value.strip().casefold() in deny_exact:
            problems.append("%s is in the deny list of demo secrets (aetherlink_secret_deny_list)" % name)
        elif name not in urls and _made_of(secret_body(value), deny_words):
            problems.append(
                "%s is made of deny-listed demo words (aetherlink_secret_deny_list) with only digits, punctuation "
                "or look-alike characters around or between them" % name)
        if name in urls:
            continue
        if len(value) < min_length:
            problems.append("%s is shorter than %d characters (aetherlink_secret_min_length), got %d"
                            % (name, min_length, len(value)))
        distinct = len(set(value))
        if distinct < min_distinct:
            problems.append("%s has fewer than %d distinct characters (a repeated character or pattern), got %d"
                            % (name, min_distinct, distinct))

    groups = {}
    for name, value in values.items():
        if value.strip():
            groups.setdefault(value.strip().casefold(), []).append(name)
    for names in groups.values():
        if len(names) > 1:
            problems.append("%s have the same value: every secret must be different" % " and ".join(names))
    return problems


class FilterModule:
    def filters(self):
        return {
            "aetherlink_regex_error": regex_error,
            "aetherlink_is_duration": is_duration,
            "aetherlink_duration_seconds": duration_seconds,
            "aetherlink_secret_problems": secret_problems,
        }
