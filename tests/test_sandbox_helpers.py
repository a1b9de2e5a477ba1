"""Unit tests of molecule/shared/sandbox.py, the systemd sandbox checks that the hardening tests of
the Molecule scenarios share (no containers: the parsers get text as systemd and the kernel print
it, the host-side checks a fake testinfra host)."""

import re
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / "molecule" / "shared"
if str(SHARED) not in sys.path:
    sys.path.insert(0, str(SHARED))

import sandbox  # noqa: E402
from sandbox import (  # noqa: E402
    HARDENING_PROPERTIES, PRIVILEGED_CALLS, SYSTEM_SERVICE_CALLS, Mount, assert_dropin_loaded, assert_exposure,
    assert_no_privileges, assert_properties, assert_read_only_but, assert_syscall_filter,
    assert_unprivileged_status, expected_properties, exposure, mount_of, parse_exposure, parse_mountinfo,
    parse_properties, parse_status, property_problems,
)

DATA_DIR = "/var/lib/prometheus/metrics2"

# /proc/<pid>/mountinfo of Prometheus under the drop-in, in a Debian bookworm container
# (systemd 252), shortened: the root remounted read-only, the TSDB bound on itself (so its
# point has two mounts, the writable one on top), a private /tmp, /root and /home on
# systemd's inaccessible directory, a path with a space.
MOUNTINFO = """\
1181 1180 0:52 / / ro,relatime master:300 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B,upperdir=/var/lib/docker/overlay2/x/diff,workdir=/var/lib/docker/overlay2/x/work
1182 1181 0:55 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1183 1181 0:56 / /dev rw,nosuid,size=4k,mode=755,inode64 - tmpfs tmpfs rw,size=4k,mode=755,inode64
1190 1181 0:60 / /run rw,nosuid,nodev,noexec,relatime master:305 - tmpfs tmpfs rw,size=65536k,mode=755,inode64
1195 1181 0:52 /var/lib/prometheus/metrics2 /var/lib/prometheus/metrics2 ro,relatime master:300 - overlay overlay rw,lowerdir=/l
1196 1195 0:52 /var/lib/prometheus/metrics2 /var/lib/prometheus/metrics2 rw,relatime master:300 - overlay overlay rw,lowerdir=/l
1197 1181 0:52 /tmp/systemd-private-0f4c2a9d1e3b4c8f9a7d6e5f4c3b2a19-prometheus.service-Xq3rTz/tmp /tmp rw,relatime - overlay overlay rw,lowerdir=/l
1198 1181 0:60 /systemd/inaccessible/dir /root ro,nosuid,nodev,noexec,relatime master:305 - tmpfs tmpfs rw,size=65536k,mode=755,inode64
1199 1181 0:60 /systemd/inaccessible/dir /home ro,nosuid,nodev,noexec,relatime master:305 - tmpfs tmpfs rw,size=65536k,mode=755,inode64
1200 1181 0:52 /srv/with\\040space /srv/with\\040space ro,relatime - overlay overlay rw
"""

# `systemctl show prometheus.service --property=...` (systemd 252).
SHOW = """\
NoNewPrivileges=yes
ReadWritePaths=/var/lib/prometheus/metrics2
CapabilityBoundingSet=
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallFilter=_llseek accept accept4 brk close epoll_pwait futex mmap openat read recvfrom sendto write
ExecStart={ path=/usr/bin/prometheus ; argv[]=/usr/bin/prometheus $ARGS ; ignore_errors=no }
DropInPaths=/etc/systemd/system/prometheus.service.d/aetherlink-hardening.conf /run/systemd/system/prometheus.service.d/x.conf
"""

# The end of `systemd-analyze security prometheus.service --no-pager`.
SECURITY_REPORT = """\
  NAME                                                        DESCRIPTION                                                     EXPOSURE
x RootDirectory=/RootImage=                                   Service runs within the host's root directory                        0.1
✓ SupplementaryGroups=                                        Service has no supplementary groups
x PrivateNetwork=                                             Service has access to the host's network                             0.5

→ Overall exposure level for prometheus.service: 1.4 OK :-)
"""

# /proc/<pid>/status of a confined process (the lines that matter, and a few others).
CONFINED_STATUS = """\
Name:\tprometheus
State:\tS (sleeping)
Uid:\t104\t104\t104\t104
CapInh:\t0000000000000000
CapPrm:\t0000000000000000
CapEff:\t0000000000000000
CapBnd:\t0000000000000000
CapAmb:\t0000000000000000
NoNewPrivs:\t1
Seccomp:\t2
Seccomp_filters:\t1
"""


# --- A fake testinfra host ----------------------------------------------------------

class FakeHost:
    """Enough of testinfra's host for the sandbox checks: `files` maps a path to its content (or
    to a SimpleNamespace of its attributes), `commands` maps a regular expression of the
    command line to (rc, stdout, stderr). Every command run is recorded in `ran`."""

    def __init__(self, files=None, commands=None):
        self.files = files or {}
        self.commands = commands or {}
        self.ran = []

    def file(self, path):
        entry = self.files.get(path)
        if isinstance(entry, SimpleNamespace):
            return entry
        return SimpleNamespace(exists=entry is not None, content_string=entry or "")

    def run(self, command, *args):
        line = command % tuple(shlex.quote(str(a)) for a in args)
        self.ran.append(line)
        for pattern, (rc, stdout, stderr) in self.commands.items():
            if re.fullmatch(pattern, line):
                return SimpleNamespace(rc=rc, stdout=stdout, stderr=stderr)
        raise AssertionError("unexpected command: %s" % line)

    def check_output(self, command, *args):
        result = self.run(command, *args)
        assert result.rc == 0, result.stderr
        return result.stdout.rstrip("\n")


def sandboxed_host(**changes):
    """A FakeHost where Prometheus (MainPID 42) runs confined, as in the container."""
    defaults = {
        r"nsenter -t 42 -m touch /(etc/prometheus|var/lib/prometheus|usr/local)/\.hardening-probe":
            (1, "", "touch: cannot touch 'x/.hardening-probe': Read-only file system\n"),
        r"nsenter -t 42 -m touch /var/lib/prometheus/metrics2/\.hardening-probe": (0, "", ""),
        r"rm -f /var/lib/prometheus/metrics2/\.hardening-probe": (0, "", ""),
        r"stat -c %U /proc/42": (0, "prometheus\n", ""),
        r"systemd-analyze security prometheus\.service --no-pager": (0, SECURITY_REPORT, ""),
    }
    # The changes first: the first pattern that matches a command answers it.
    commands = dict(changes.pop("commands", {}))
    for pattern, answer in defaults.items():
        commands.setdefault(pattern, answer)
    files = {"/proc/42/mountinfo": MOUNTINFO, "/proc/42/status": CONFINED_STATUS}
    files.update(changes.pop("files", {}))
    assert not changes, changes
    return FakeHost(files, commands)


# --- parse_mountinfo(), mount_of() ---------------------------------------------------

def test_parse_mountinfo_reads_root_and_options_of_each_mount_point():
    table = parse_mountinfo(MOUNTINFO)
    assert table["/"] == Mount("/", ["ro", "relatime"])  # master:300 is an optional field
    assert table["/proc"].options == ["rw", "nosuid", "nodev", "noexec", "relatime"]
    assert table["/root"].root == "/systemd/inaccessible/dir"
    assert "systemd-private-" in table["/tmp"].root
    assert len(table) == 9


def test_parse_mountinfo_keeps_the_top_mount_of_a_stacked_point():
    # ReadWritePaths= binds the data directory on itself, over the read-only view.
    table = parse_mountinfo(MOUNTINFO)
    assert table[DATA_DIR] == Mount(DATA_DIR, ["rw", "relatime"])
    reversed_lines = "\n".join(reversed(MOUNTINFO.splitlines()))
    assert parse_mountinfo(reversed_lines)[DATA_DIR].options == ["ro", "relatime"]


def test_parse_mountinfo_decodes_escaped_characters():
    table = parse_mountinfo(MOUNTINFO)
    assert table["/srv/with space"] == Mount("/srv/with space", ["ro", "relatime"])
    assert "/srv/with\\040space" not in table


def test_parse_mountinfo_without_optional_fields_and_blank_lines():
    text = "\n25 1 8:1 / / rw,noatime - ext4 /dev/sda1 rw\n\n"
    assert parse_mountinfo(text) == {"/": Mount("/", ["rw", "noatime"])}


def test_parse_mountinfo_rejects_other_text():
    with pytest.raises(ValueError, match="not a mountinfo line"):
        parse_mountinfo("overlay / overlay rw,relatime 0 0\n")  # /proc/mounts, not mountinfo
    with pytest.raises(ValueError, match="not a mountinfo line"):
        parse_mountinfo("cat: /proc/42/mountinfo: No such file or directory\n")


def test_mount_of_is_the_longest_mount_point_holding_the_path():
    table = parse_mountinfo(MOUNTINFO)
    assert mount_of(table, "/") == "/"
    assert mount_of(table, DATA_DIR) == DATA_DIR
    assert mount_of(table, DATA_DIR + "/wal/00000001") == DATA_DIR
    assert mount_of(table, "/var/lib/prometheus") == "/"
    assert mount_of(table, "/proc/self/status") == "/proc"
    assert mount_of(table, "/srv/with space/x") == "/srv/with space"


def test_mount_of_does_not_take_a_name_prefix_for_a_parent():
    table = {"/": Mount("/", ["ro"]), "/var/lib/prom": Mount("/x", ["rw"]), "/run/": Mount("/", ["rw"])}
    assert mount_of(table, "/var/lib/prometheus") == "/"
    assert mount_of(table, "/var/lib/prom/data") == "/var/lib/prom"
    assert mount_of(table, "/run/lock") == "/run/"
    assert mount_of(table, "/runner") == "/"


def test_mount_of_without_a_holding_mount_fails():
    with pytest.raises(ValueError, match="no mount holds relative/path"):
        mount_of({"/": Mount("/", ["rw"])}, "relative/path")
    with pytest.raises(ValueError):
        mount_of({}, "/")


# --- systemctl show ------------------------------------------------------------------

def test_parse_properties_splits_at_the_first_equals_sign():
    props = parse_properties(SHOW)
    assert props["NoNewPrivileges"] == "yes"
    assert props["CapabilityBoundingSet"] == ""
    assert props["ExecStart"].startswith("{ path=/usr/bin/prometheus ; argv[]=")
    assert props["DropInPaths"].split()[0] == "/etc/systemd/system/prometheus.service.d/aetherlink-hardening.conf"
    assert len(props) == 7


def test_parse_properties_ignores_blank_lines_and_rejects_other_text():
    assert parse_properties("\nUser=prometheus\n\n") == {"User": "prometheus"}
    assert parse_properties("") == {}
    with pytest.raises(ValueError, match="not a property line"):
        parse_properties("Failed to get properties: Unit name x is not valid.\n")


def test_expected_properties_add_the_service_s_paths_and_families():
    expected = expected_properties(DATA_DIR, ["AF_INET", "AF_UNIX", "AF_INET6"], User="prometheus")
    assert expected["ReadWritePaths"] == DATA_DIR
    assert expected["RestrictAddressFamilies"] == frozenset({"AF_INET", "AF_INET6", "AF_UNIX"})
    assert expected["User"] == "prometheus"
    for name, value in HARDENING_PROPERTIES.items():
        assert expected[name] == value
    assert len(expected) == len(HARDENING_PROPERTIES) + 3
    # `more` overrides; the shared table is left alone.
    assert expected_properties(DATA_DIR, [], UMask="0077")["UMask"] == "0077"
    assert HARDENING_PROPERTIES["UMask"] == "0027" and "ReadWritePaths" not in HARDENING_PROPERTIES


def test_property_problems_compares_strings_exactly_and_sets_by_words():
    props = parse_properties(SHOW)
    expected = {
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "ReadWritePaths": DATA_DIR,
        "RestrictAddressFamilies": frozenset({"AF_INET", "AF_INET6", "AF_UNIX"}),
    }
    assert property_problems(props, expected) == []
    problems = property_problems(props, {
        "NoNewPrivileges": "no",
        "CapabilityBoundingSet": "cap_net_raw",
        "ReadWritePaths": DATA_DIR + "/",
        "RestrictAddressFamilies": {"AF_INET", "AF_INET6"},  # one family too many on the host
        "ProtectClock": "yes",  # not printed: missing
    })
    assert problems == [
        "NoNewPrivileges=yes, expected 'no'",
        "CapabilityBoundingSet=, expected 'cap_net_raw'",
        "ReadWritePaths=%s, expected '%s/'" % (DATA_DIR, DATA_DIR),
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6, expected the words ['AF_INET', 'AF_INET6']",
        "ProtectClock is missing, expected 'yes'",
    ]


def test_assert_syscall_filter():
    value = parse_properties(SHOW)["SystemCallFilter"]
    assert_syscall_filter(value)
    assert_syscall_filter(value, SYSTEM_SERVICE_CALLS | {"sendto", "recvfrom"})
    with pytest.raises(AssertionError, match=r"does not allow \['recvmsg'\]"):
        assert_syscall_filter(value, SYSTEM_SERVICE_CALLS | {"recvmsg"})
    with pytest.raises(AssertionError, match=r"allows \['mount', 'ptrace'\]"):
        assert_syscall_filter(value + " ptrace mount")
    assert {"mount", "ptrace", "setuid"} <= PRIVILEGED_CALLS


def test_hardening_properties_are_what_the_drop_in_sets():
    """Each property of HARDENING_PROPERTIES is the last assignment of the drop-in template
    (as systemctl shows it: EPERM is errno 1)."""
    template = (ROOT / "roles" / "aetherlink" / "templates" / "systemd-hardening.conf.j2").read_text()
    assigned = dict(re.findall(r"^(\w+)=(.*)$", template, re.M))
    for name, value in HARDENING_PROPERTIES.items():
        assert name in assigned, name
        assert {"EPERM": "1"}.get(assigned[name], assigned[name]) == value, (name, assigned[name])


# --- systemd-analyze security ----------------------------------------------------------

def test_parse_exposure_reads_score_and_rating_of_the_unit():
    level = parse_exposure(SECURITY_REPORT, "prometheus.service")
    assert (level.score, level.rating) == (1.4, "OK")
    assert level.report == SECURITY_REPORT


def test_parse_exposure_of_another_unit_is_none():
    assert parse_exposure(SECURITY_REPORT, "prometheus-alertmanager.service") is None
    assert parse_exposure(SECURITY_REPORT.replace("prometheus.service", "prometheusXservice"),
                          "prometheus.service") is None  # the dot is no wildcard
    assert parse_exposure("Unit prometheus.service not found.\n", "prometheus.service") is None


def test_exposure_and_assert_exposure_on_a_host():
    host = sandboxed_host()
    assert exposure(host, "prometheus.service").score == 1.4
    assert_exposure(host, "prometheus.service", 2.0)
    with pytest.raises(AssertionError, match="Overall exposure level"):
        assert_exposure(host, "prometheus.service", 1.0)
    with pytest.raises(AssertionError):
        assert_exposure(host, "prometheus.service", 2.0, rating="SAFE")
    unsafe = sandboxed_host(commands={r"systemd-analyze security prometheus\.service --no-pager": (
        0, "→ Overall exposure level for prometheus.service: 9.2 UNSAFE 😨\n", "")})
    with pytest.raises(AssertionError, match="9.2 UNSAFE"):
        assert_exposure(unsafe, "prometheus.service", 2.0)


# --- /proc/<pid>/status ----------------------------------------------------------------

def test_parse_status():
    status = parse_status(CONFINED_STATUS)
    assert status["Name"] == "prometheus"
    assert status["Uid"] == "104\t104\t104\t104"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp_filters"] == "1"


def test_assert_unprivileged_status_passes_a_confined_process():
    assert_unprivileged_status(CONFINED_STATUS)


@pytest.mark.parametrize("field, value, message", [
    ("CapEff", "0000000000000400", "CapEff is not empty"),  # cap_net_bind_service
    ("CapBnd", "000001ffffffffff", "CapBnd is not empty"),
    ("CapAmb", "", "CapAmb is not empty"),
    ("NoNewPrivs", "0", "NoNewPrivs:\t0"),
    ("Seccomp", "0", "Seccomp:\t0"),
])
def test_assert_unprivileged_status_names_what_is_wrong(field, value, message):
    status = re.sub(r"^%s:\t.*$" % field, "%s:\t%s" % (field, value), CONFINED_STATUS, flags=re.M)
    with pytest.raises(AssertionError, match=re.escape(message)):
        assert_unprivileged_status(status)


def test_assert_unprivileged_status_fails_on_a_missing_field():
    without = "\n".join(line for line in CONFINED_STATUS.splitlines() if not line.startswith("Seccomp:"))
    with pytest.raises(AssertionError):
        assert_unprivileged_status(without)


def test_assert_no_privileges_on_a_host():
    host = sandboxed_host()
    assert_no_privileges(host, "42", "prometheus")
    with pytest.raises(AssertionError):
        assert_no_privileges(host, "42", "root")
    with pytest.raises(AssertionError, match="no process"):
        assert_no_privileges(host, "0", "prometheus")
    root = sandboxed_host(files={"/proc/42/status": CONFINED_STATUS.replace("CapEff:\t0000000000000000",
                                                                            "CapEff:\t000001ffffffffff")})
    with pytest.raises(AssertionError, match="CapEff is not empty"):
        assert_no_privileges(root, "42", "prometheus")


# --- The mount namespace on a host ------------------------------------------------------

READ_ONLY = ("/", "/etc/prometheus", "/usr/bin", "/var/lib", "/var/log")
PROBES = ("/etc/prometheus", "/var/lib/prometheus", "/usr/local")


def test_assert_read_only_but_passes_the_sandbox_and_cleans_up():
    host = sandboxed_host()
    assert_read_only_but(host, "42", READ_ONLY, DATA_DIR, PROBES)
    assert host.ran[-1] == "rm -f /var/lib/prometheus/metrics2/.hardening-probe"
    assert len([line for line in host.ran if line.startswith("nsenter")]) == len(PROBES) + 1


@pytest.mark.parametrize("mountinfo, message", [
    # The root writable: ProtectSystem= not in force.
    (MOUNTINFO.replace(" / / ro,relatime", " / / rw,relatime"), "/ is writable for the service"),
    # The data directory without its own mount: read-only like the rest.
    ("\n".join(line for line in MOUNTINFO.splitlines() if DATA_DIR not in line),
     "%s is not a mount point of its own" % DATA_DIR),
    # Only the read-only view of the data directory.
    ("\n".join(line for line in MOUNTINFO.splitlines() if not line.startswith("1196 ")),
     "%s is read-only for the service" % DATA_DIR),
    # The host's /tmp (no PrivateTmp=).
    (MOUNTINFO.replace("/tmp/systemd-private-0f4c2a9d1e3b4c8f9a7d6e5f4c3b2a19-prometheus.service-Xq3rTz/tmp", "/tmp"),
     "/tmp"),
    # /home reachable (ProtectHome=read-only, say).
    (MOUNTINFO.replace("/systemd/inaccessible/dir /home", "/home /home"), "/home"),
])
def test_assert_read_only_but_fails_where_the_sandbox_leaks(mountinfo, message):
    host = sandboxed_host(files={"/proc/42/mountinfo": mountinfo})
    with pytest.raises(AssertionError, match=re.escape(message)):
        assert_read_only_but(host, "42", READ_ONLY, DATA_DIR, PROBES)


def test_assert_read_only_but_fails_when_a_probe_is_written_or_refused_for_another_reason():
    writable = sandboxed_host(commands={r"nsenter -t 42 -m touch /usr/local/\.hardening-probe": (0, "", "")})
    with pytest.raises(AssertionError, match="/usr/local"):
        assert_read_only_but(writable, "42", READ_ONLY, DATA_DIR, PROBES)
    missing = sandboxed_host(commands={r"nsenter -t 42 -m touch /etc/prometheus/\.hardening-probe": (
        1, "", "touch: cannot touch '/etc/prometheus/.hardening-probe': No such file or directory\n")})
    with pytest.raises(AssertionError, match="No such file"):
        assert_read_only_but(missing, "42", READ_ONLY, DATA_DIR, PROBES)
    stuck = sandboxed_host(commands={r"nsenter -t 42 -m touch /var/lib/prometheus/metrics2/\.hardening-probe": (
        1, "", "touch: cannot touch '...': Read-only file system\n")})
    with pytest.raises(AssertionError, match="Read-only file system"):
        assert_read_only_but(stuck, "42", READ_ONLY, DATA_DIR, PROBES)


# --- systemctl show and the drop-in on a host -------------------------------------------

UNIT = "prometheus.service"
DROPIN = "/etc/systemd/system/prometheus.service.d/aetherlink-hardening.conf"


def dropin_host(dropin=None, props=None, verify=(0, "", "")):
    show = props or "DropInPaths=%s\nNeedDaemonReload=no\n" % DROPIN
    return FakeHost(
        files={DROPIN: dropin or SimpleNamespace(exists=True, user="root", group="root", mode=0o644)},
        commands={
            r"systemctl show prometheus\.service --property=DropInPaths --property=NeedDaemonReload": (0, show, ""),
            r"systemd-analyze verify --man=no /lib/systemd/system/prometheus\.service": verify,
        })


def test_assert_dropin_loaded_passes_a_loaded_drop_in():
    host = dropin_host()
    assert_dropin_loaded(host, UNIT, DROPIN)
    assert host.ran[-1] == "systemd-analyze verify --man=no /lib/systemd/system/prometheus.service"


@pytest.mark.parametrize("host, message", [
    (dropin_host(dropin=SimpleNamespace(exists=False)), "is missing"),
    (dropin_host(dropin=SimpleNamespace(exists=True, user="root", group="root", mode=0o664)), "root:root 664"),
    (dropin_host(props="DropInPaths=\nNeedDaemonReload=no\n"), "does not load"),
    (dropin_host(props="DropInPaths=%s\nNeedDaemonReload=yes\n" % DROPIN), "changed on disk"),
    (dropin_host(verify=(1, "", "prometheus.service: Failed to load\n")), "Failed to load"),
    (dropin_host(verify=(0, "", "/etc/systemd/system/prometheus.service.d/aetherlink-hardening.conf:3: "
                                "Unknown key name 'ProtectFoo' in section 'Service', ignoring.\n")),
     "Unknown key name"),
])
def test_assert_dropin_loaded_names_what_is_wrong(host, message):
    with pytest.raises(AssertionError, match=re.escape(message)):
        assert_dropin_loaded(host, UNIT, DROPIN)


def test_assert_properties_reads_the_expected_and_the_extra_properties():
    host = FakeHost(commands={
        r"systemctl show prometheus\.service --property=NoNewPrivileges --property=RestrictAddressFamilies"
        r" --property=SystemCallFilter": (0, SHOW, ""),
    })
    props = assert_properties(host, UNIT, {"NoNewPrivileges": "yes",
                                           "RestrictAddressFamilies": {"AF_INET", "AF_INET6", "AF_UNIX"}},
                              also=["SystemCallFilter"])
    assert "futex" in props["SystemCallFilter"].split()
    with pytest.raises(AssertionError, match=r"prometheus\.service: NoNewPrivileges=yes, expected 'no'"):
        assert_properties(host, UNIT, {"NoNewPrivileges": "no", "RestrictAddressFamilies": {"AF_INET"}},
                          also=["SystemCallFilter"])


def test_the_module_names_what_it_offers():
    # The docstring is the module's index, as testkit's is.
    for name in ("expected_properties", "assert_dropin_loaded", "assert_properties", "exposure",
                 "assert_no_privileges", "mount_table", "mount_of", "assert_read_only_but"):
        assert callable(getattr(sandbox, name))
        assert name in sandbox.__doc__
