"""Validation helpers for the checks of the AetherLink shared variables."""

import re

# Prometheus uses Go's RE2: no look-around and no back-references. Python's re
# accepts those, so they are rejected here explicitly.
_RE2_UNSUPPORTED = re.compile(r"\(\?<?[=!]|\\[1-9]")


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
        return {"aetherlink_regex_error": regex_error}
