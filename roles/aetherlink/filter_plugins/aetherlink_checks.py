"""Validation helpers for the checks of the AetherLink shared variables."""

import re

# Prometheus uses Go's RE2: no look-around and no back-references. Python's re
# accepts those, so they are rejected here explicitly.
_RE2_UNSUPPORTED = re.compile(r"\(\?<?[=!]|\\[1-9]")

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
        return "uses look-around or a back-reference, which Prometheus (RE2) does not support"
    try:
        re.compile(pattern)
    except re.error as exc:
        return "is not a valid regular expression: %s" % exc
    return ""


class FilterModule:
    def filters(self):
        return {
            "aetherlink_regex_error": regex_error,
            "aetherlink_is_duration": is_duration,
            "aetherlink_duration_seconds": duration_seconds,
        }
