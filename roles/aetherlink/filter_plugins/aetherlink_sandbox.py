"""Filters of the local sandbox (playbooks/sandbox_up.yml)."""

import re

from ansible.errors import AnsibleFilterError

_PROCESS = re.compile(r'\("([^"]+)",pid=(\d+)')


def sandbox_platforms(hosts, published, network):
    """One container per host on ``network``; a host in ``published`` ({host: port})
    publishes that port on 127.0.0.1 (the same port inside and outside)."""
    if not isinstance(hosts, (list, tuple)) or not all(isinstance(h, str) and h for h in hosts):
        raise AnsibleFilterError("aetherlink_sandbox_platforms: hosts must be a list of host names")
    if not hasattr(published, "items"):
        raise AnsibleFilterError("aetherlink_sandbox_platforms: published must map host names to ports")
    unknown = sorted(set(published) - set(hosts))
    if unknown:
        raise AnsibleFilterError("aetherlink_sandbox_platforms: published names hosts that are not in hosts: %s" % unknown)
    platforms = []
    for host in hosts:
        platform = {"name": host, "networks": [{"name": network}]}
        if host in published:
            port = int(published[host])
            platform["published_ports"] = ["127.0.0.1:%d:%d" % (port, port)]
        platforms.append(platform)
    return platforms


def port_holders(ss_output):
    """``name (pid N)`` of each process in ``ss -ltnp`` output, or ``an unknown process``."""
    found = ["%s (pid %s)" % m for m in _PROCESS.findall(ss_output or "")]
    return ", ".join(dict.fromkeys(found)) or "an unknown process (not visible to this user)"


class FilterModule:
    def filters(self):
        return {"aetherlink_sandbox_platforms": sandbox_platforms, "aetherlink_port_holders": port_holders}
