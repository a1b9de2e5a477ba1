"""The systemd sandbox of Alertmanager (the aetherlink role's hardening step, a drop-in on the
Debian unit), on both cluster peers: the drop-in is loaded, its settings are in force,
systemd-analyze rates the unit safe, and the running process is really confined: no
privileges, and in its mount namespace the file system is read-only but for its data
directory, where it still writes its silences and notification log.

test_alertmanager.py (which runs first) covers the rest under the same sandbox: gossip
between the peers, HTTPS to the Slack-compatible receiver (DNS, the CA in /etc/ssl).
The last test restarts each Alertmanager once, one after the other.
"""

import sys
import time
from pathlib import Path

SCENARIO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[5] / "molecule" / "shared"  # testkit, sandbox: the scenarios' shared helpers
if str(SHARED) not in sys.path:
    sys.path.insert(0, str(SHARED))

from sandbox import (  # noqa: E402
    SYSTEM_SERVICE_CALLS, assert_dropin_loaded, assert_exposure, assert_no_privileges, assert_properties,
    assert_read_only_but, assert_syscall_filter, expected_properties,
)
from testkit import load_yaml, main_pid, wait_until  # noqa: E402

# The Alertmanagers of the scenario (not the Slack receiver).
testinfra_hosts = ["alertmanager-1", "alertmanager-2"]

ROLE_DEFAULTS = load_yaml(SCENARIO.parents[1] / "defaults" / "main.yml")
SERVICE = "prometheus-alertmanager"
UNIT = "prometheus-alertmanager.service"
DROPIN = "/etc/systemd/system/prometheus-alertmanager.service.d/aetherlink-hardening.conf"
DATA_DIR = ROLE_DEFAULTS["alertmanager_storage_path"]
USER = "prometheus"
API_PORT = 9093
CLUSTER_PORT = 9094
# systemd-analyze security on Debian bookworm (systemd 252): 9.2 UNSAFE with the package's
# unit alone, 1.4 with the drop-in.
MAX_EXPOSURE = 2.0
# The cluster listener reads the host's addresses through netlink to pick the address it
# announces (the role allows netlink whether or not the host is in a cluster: the
# package's default flags start the listener too).
ADDRESS_FAMILIES = {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"}
# systemctl show: property -> value expected from the drop-in (sandbox.HARDENING_PROPERTIES
# with the data directory as the only writable path).
EXPECTED = expected_properties(DATA_DIR, ADDRESS_FAMILIES, User=USER)
# Gossip: the allow list must keep the datagram calls.
SYSTEM_CALLS = SYSTEM_SERVICE_CALLS | {"sendto", "recvfrom"}
# Read-only mounts for Alertmanager (the CA it trusts, Prometheus' TSDB beside its data);
# directories where even root, in its mount namespace, cannot create a file.
READ_ONLY = ("/", "/etc/prometheus", "/etc/ssl/certs", "/usr/bin", "/var/lib", "/var/lib/prometheus/metrics2")
PROBES = ("/etc/prometheus", "/var/lib/prometheus", "/usr/local")


def listeners(host, proto, port):
    """Sockets bound to `port` ("tcp" listening or "udp"), with their processes (ss)."""
    flag = "-ltnp" if proto == "tcp" else "-lunp"
    return host.check_output("ss -H %s 'sport = :%s'", flag, str(port))


def test_dropin_is_loaded(host):
    assert_dropin_loaded(host, UNIT, DROPIN)


def test_sandbox_settings_in_force(host):
    props = assert_properties(host, UNIT, EXPECTED, also=["SystemCallFilter"])
    assert_syscall_filter(props["SystemCallFilter"], SYSTEM_CALLS)


def test_exposure_score_is_low(host):
    assert_exposure(host, UNIT, MAX_EXPOSURE)


def test_process_has_no_privileges(host):
    assert_no_privileges(host, main_pid(host, SERVICE), USER)


def test_file_system_is_read_only_but_for_the_data_directory(host):
    assert_read_only_but(host, main_pid(host, SERVICE), READ_ONLY, DATA_DIR, PROBES)


def test_gossip_and_api_sockets_are_open(host):
    """The sandboxed process listens on the API port and on the cluster port, TCP and UDP."""
    process = '"prometheus-aler",pid=%s,' % main_pid(host, SERVICE)
    assert process in listeners(host, "tcp", API_PORT)
    assert process in listeners(host, "tcp", CLUSTER_PORT)
    assert process in listeners(host, "udp", CLUSTER_PORT)


def test_data_written_on_restart_with_the_sandbox_umask(host):
    """On shutdown Alertmanager writes its silences and notification log (new files, renamed
    over the old ones), under UMask=0027; the new process starts in the same sandbox."""
    before = main_pid(host, SERVICE)
    started = int(host.check_output("date +%s"))
    time.sleep(1)
    host.check_output("systemctl restart %s", SERVICE)
    assert wait_until(lambda: main_pid(host, SERVICE) not in ("0", before)
                      and str(API_PORT) in listeners(host, "tcp", API_PORT), timeout=60), (
        "Alertmanager did not come back after the restart")
    for name in ("silences", "nflog"):
        data = host.file("%s/%s" % (DATA_DIR, name))
        assert data.exists, name
        assert data.user == USER, name
        assert data.mode == 0o640, "%s: mode %o, UMask=0027 gives 0640" % (name, data.mode)
        assert data.mtime.timestamp() >= started, "%s was not written at the restart" % name
    # The same confinement as the first process (test_process_has_no_privileges).
    assert_no_privileges(host, main_pid(host, SERVICE), USER)
    # Back in the cluster: the gossip listener is open again.
    assert wait_until(lambda: str(CLUSTER_PORT) in listeners(host, "udp", CLUSTER_PORT), timeout=30)
