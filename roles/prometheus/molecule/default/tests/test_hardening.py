"""The systemd sandbox of Prometheus (the aetherlink role's hardening step, a drop-in on the
Debian unit): the drop-in is loaded, its settings are in force, systemd-analyze rates the unit
safe, and the running process is really confined: no privileges, and in its mount namespace the
file system is read-only but for the TSDB, which it keeps writing.

Read-only: nothing here restarts or reconfigures Prometheus (test_prometheus.py runs after).
"""

import sys
from pathlib import Path

SCENARIO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[5] / "molecule" / "shared"  # testkit, sandbox: the scenarios' shared helpers
if str(SHARED) not in sys.path:
    sys.path.insert(0, str(SHARED))

from sandbox import (  # noqa: E402
    assert_dropin_loaded, assert_exposure, assert_no_privileges, assert_properties, assert_read_only_but,
    assert_syscall_filter, expected_properties,
)
from testkit import load_yaml, main_pid, wait_until  # noqa: E402

ROLE_DEFAULTS = load_yaml(SCENARIO.parents[1] / "defaults" / "main.yml")
SERVICE = "prometheus"
UNIT = "prometheus.service"
DROPIN = "/etc/systemd/system/prometheus.service.d/aetherlink-hardening.conf"
DATA_DIR = ROLE_DEFAULTS["prometheus_storage_path"]
USER = "prometheus"
# systemd-analyze security on Debian bookworm (systemd 252): 3.9 with the package's unit
# alone, 1.4 with the drop-in; the margin leaves room for a setting that a later need
# would have to loosen, never for the package's unit alone.
MAX_EXPOSURE = 2.0
ADDRESS_FAMILIES = {"AF_INET", "AF_INET6", "AF_UNIX"}
# systemctl show: property -> value expected from the drop-in (sandbox.HARDENING_PROPERTIES
# with the TSDB as the only writable path).
EXPECTED = expected_properties(DATA_DIR, ADDRESS_FAMILIES, User=USER)
# Read-only mounts for Prometheus; directories where even root, in its mount namespace,
# cannot create a file.
READ_ONLY = ("/", "/etc/prometheus", "/usr/bin", "/var/lib", "/var/log")
PROBES = ("/etc/prometheus", "/var/lib/prometheus", "/usr/local")


def test_dropin_is_loaded(host):
    assert_dropin_loaded(host, UNIT, DROPIN)


def test_sandbox_settings_in_force(host):
    props = assert_properties(host, UNIT, EXPECTED, also=["SystemCallFilter"])
    # An allow list (@system-service) without the privileged calls.
    assert_syscall_filter(props["SystemCallFilter"])


def test_exposure_score_is_low(host):
    assert_exposure(host, UNIT, MAX_EXPOSURE)


def test_process_has_no_privileges(host):
    assert_no_privileges(host, main_pid(host, SERVICE), USER)


def test_file_system_is_read_only_but_for_the_tsdb(host):
    # PrivateTmp: its own /tmp; ProtectHome: /root and /home out of reach; from inside its
    # mount namespace, even root cannot write outside the TSDB.
    assert_read_only_but(host, main_pid(host, SERVICE), READ_ONLY, DATA_DIR, PROBES)


def test_prometheus_keeps_writing_its_tsdb(host):
    """The sandboxed process holds the write-ahead log open for writing and the log grows
    (every scrape and rule evaluation appends to it)."""
    pid = main_pid(host, SERVICE)

    def newest_segment():
        name = host.check_output("ls -1 %s/wal | grep -E '^[0-9]+$' | sort -n | tail -1", DATA_DIR)
        path = "%s/wal/%s" % (DATA_DIR, name)
        return path, int(host.check_output("stat -c %%s %s", path))

    segment, size = newest_segment()
    assert host.file(segment).user == USER
    flags = host.check_output(
        "for fd in /proc/%s/fd/*; do"
        " [ \"$(readlink $fd)\" = %s ] && grep '^flags' /proc/%s/fdinfo/${fd##*/}; done; true",
        pid, segment, pid)
    assert flags, "Prometheus does not hold %s open" % segment
    assert int(flags.split()[-1], 8) & 0o3, "%s is not open for writing: %s" % (segment, flags)
    # A new segment, or the same one longer.
    assert wait_until(lambda: newest_segment() != (segment, size), timeout=90, interval=3), (
        "the write-ahead log did not grow in 90s (%s: %d bytes)" % (segment, size))
