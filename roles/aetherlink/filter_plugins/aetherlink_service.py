"""Filters of the shared service steps: addresses and the services' own metrics."""

import ipaddress
import math
import re

from ansible.errors import AnsibleFilterError

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")


def metric_value(text, name):
    """Value of the unlabelled sample ``name`` in a Prometheus exposition text, or None.

    Used to read ``prometheus_config_last_reload_successful`` and its
    Alertmanager twin after a reload. A sample with labels, or a name that only
    starts the same way, does not match; an unparsable value gives None.
    """
    if not isinstance(name, str) or not _METRIC_NAME.match(name):
        raise AnsibleFilterError("aetherlink_metric_value: name must be a metric name, got %r" % (name,))
    if not isinstance(text, str):
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) in (2, 3) and parts[0] == name:
            try:
                value = float(parts[1])
            except ValueError:
                return None
            return None if math.isnan(value) else value
    return None


def hostport(host, port):
    """``host:port``, with an IPv6 address in brackets (``[::]:9090``)."""
    host = str(host)
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise AnsibleFilterError("aetherlink_hostport: port must be an integer, got %r" % (port,))
    if ":" in host and not host.startswith("["):
        host = "[%s]" % host
    return "%s:%d" % (host, port)


def is_bind_address(value):
    """True for an address to listen on, without a port: a host name, an IPv4 or an IPv6 address."""
    if not isinstance(value, str) or not value:
        return False
    if ":" in value:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return False
        return True
    return bool(_HOST_NAME.match(value))


class FilterModule:
    def filters(self):
        return {
            "aetherlink_metric_value": metric_value,
            "aetherlink_hostport": hostport,
            "aetherlink_is_bind_address": is_bind_address,
        }
