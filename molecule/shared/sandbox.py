"""Checks of a service's systemd sandbox, shared by the testinfra tests of the roles whose unit
is hardened: Prometheus and Alertmanager (the aetherlink role's hardening drop-in on the Debian
unit) and the AetherLink service (its own unit).

A plain module beside testkit.py, imported the same way: the scenario's test file puts
molecule/shared on sys.path and imports what it needs. The parsers are pure functions of the
text systemd and the kernel print (tests/test_sandbox_helpers.py runs them without a
container); the others take testinfra's `host` and fail with a message naming what is wrong.

    HARDENING_PROPERTIES      systemctl show values of the hardening drop-in, whatever the service
    expected_properties(data_dir, families, **more)
                              those plus the service's ReadWritePaths and RestrictAddressFamilies
    parse_properties(text), unit_properties(host, unit, *names)
                              systemctl show --property=...
    assert_properties(host, unit, expected, also=())
                              the properties are in force (a set: the words of the value)
    assert_syscall_filter(value, required, forbidden)
                              SystemCallFilter= allows `required`, none of `forbidden`
    assert_dropin_loaded(host, unit, dropin)
                              the drop-in is in place, loaded and accepted by systemd-analyze verify
    parse_exposure(report, unit), exposure(host, unit), assert_exposure(host, unit, max_score)
                              systemd-analyze security: score and rating
    parse_status(text), assert_unprivileged_status(text), assert_no_privileges(host, pid, user)
                              /proc/<pid>/status: no capabilities, NoNewPrivs, a seccomp filter
    parse_mountinfo(text), mount_table(host, pid), mount_of(table, path)
                              the mount namespace of a process (/proc/<pid>/mountinfo)
    assert_read_only_but(host, pid, paths_ro, data_dir, probes)
                              in that namespace everything is read-only but the data directory
"""

import posixpath
import re
from typing import NamedTuple

# systemctl show: property -> value that the hardening drop-in
# (roles/aetherlink/templates/systemd-hardening.conf.j2) gives any unit.
HARDENING_PROPERTIES = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "PrivateUsers": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictSUIDSGID": "yes",
    "RemoveIPC": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictRealtime": "yes",
    "RestrictNamespaces": "yes",
    "SystemCallArchitectures": "native",
    "SystemCallErrorNumber": "1",  # EPERM
    "UMask": "0027",
}

# SystemCallFilter=@system-service ~@privileged: an allow list with the calls of any
# service, without the privileged ones.
SYSTEM_SERVICE_CALLS = frozenset({"read", "write", "openat", "mmap", "epoll_pwait", "futex"})
PRIVILEGED_CALLS = frozenset({"mount", "chroot", "setuid", "reboot", "init_module", "ptrace", "kexec_load"})

CAPABILITY_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
PROBE = ".hardening-probe"


class Exposure(NamedTuple):
    """The overall exposure of a unit by systemd-analyze security, with the whole report."""
    score: float
    rating: str
    report: str


class Mount(NamedTuple):
    """The top mount of a mount point: the root of the file system it shows, its mount options."""
    root: str
    options: list


# --- systemctl show ---------------------------------------------------------------

def expected_properties(data_dir, families, **more):
    """HARDENING_PROPERTIES with the service's ReadWritePaths (its data directory) and
    RestrictAddressFamilies (a set: systemctl orders them its own way); `more` adds
    properties (User="prometheus") or overrides one."""
    expected = dict(HARDENING_PROPERTIES, ReadWritePaths=data_dir, RestrictAddressFamilies=frozenset(families))
    expected.update(more)
    return expected


def parse_properties(text):
    """{property: value} of `systemctl show` output (NAME=value lines; a value may hold '=')."""
    props = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if "=" not in line:
            raise ValueError("not a property line of systemctl show: %r" % line)
        name, value = line.split("=", 1)
        props[name] = value
    return props


def unit_properties(host, unit, *names):
    """The properties `names` of a unit, as systemctl show prints them."""
    argv = ["systemctl", "show", unit] + ["--property=%s" % name for name in names]
    return parse_properties(host.check_output(" ".join(["%s"] * len(argv)), *argv))


def property_problems(props, expected):
    """What in `props` differs from `expected` (a list of messages, empty when all hold).

    A string must be the value to the letter; a set (or frozenset) must be the set of the
    value's words. A property systemctl did not print counts as missing."""
    problems = []
    for name, want in expected.items():
        got = props.get(name)
        if got is None:
            problems.append("%s is missing, expected %r" % (name, want))
        elif isinstance(want, (set, frozenset)):
            if set(got.split()) != set(want):
                problems.append("%s=%s, expected the words %s" % (name, got, sorted(want)))
        elif got != want:
            problems.append("%s=%s, expected %r" % (name, got, want))
    return problems


def assert_properties(host, unit, expected, also=()):
    """Fail unless every property of `expected` is in force for `unit` (see property_problems);
    return the properties read, `also` included (for the caller's own checks)."""
    props = unit_properties(host, unit, *expected, *also)
    problems = property_problems(props, expected)
    assert not problems, "%s: %s" % (unit, "; ".join(problems))
    return props


def assert_syscall_filter(value, required=SYSTEM_SERVICE_CALLS, forbidden=PRIVILEGED_CALLS):
    """SystemCallFilter= (as systemctl show prints an allow list) allows every call of
    `required` and none of `forbidden`."""
    allowed = set(value.split())
    missing = sorted(set(required) - allowed)
    assert not missing, "SystemCallFilter does not allow %s: %s" % (missing, value)
    granted = sorted(allowed & set(forbidden))
    assert not granted, "SystemCallFilter allows %s: %s" % (granted, value)


def assert_dropin_loaded(host, unit, dropin, unit_file=None):
    """The drop-in is root's (0644), systemd loaded it and nothing changed on disk since, and
    `systemd-analyze verify` accepts the unit (the package's, /lib/systemd/system/<unit>
    unless `unit_file`) without a word about the drop-in (it names one only for a warning)."""
    conf = host.file(dropin)
    assert conf.exists, "%s is missing" % dropin
    assert conf.user == "root" and conf.group == "root" and conf.mode == 0o644, (
        "%s: %s:%s %o, expected root:root 644" % (dropin, conf.user, conf.group, conf.mode))
    props = unit_properties(host, unit, "DropInPaths", "NeedDaemonReload")
    assert dropin in props["DropInPaths"].split(), "%s does not load %s: %s" % (unit, dropin, props["DropInPaths"])
    assert props["NeedDaemonReload"] == "no", "%s changed on disk since systemd read it" % unit
    verify = host.run("systemd-analyze verify --man=no %s", unit_file or "/lib/systemd/system/%s" % unit)
    output = verify.stdout + verify.stderr
    assert verify.rc == 0, output
    assert posixpath.basename(dropin) not in output, output


# --- systemd-analyze security -----------------------------------------------------

def parse_exposure(report, unit):
    """The Exposure of `unit` in a systemd-analyze security report; None when it has no
    "Overall exposure level" line for that unit (the name as systemd prints it: foo.service)."""
    match = re.search(r"Overall exposure level for %s: (\d+\.\d+) (\w+)" % re.escape(unit), report)
    return Exposure(float(match.group(1)), match.group(2), report) if match else None


def exposure(host, unit):
    """The Exposure of a unit (its full name, foo.service), by systemd-analyze security."""
    report = host.check_output("systemd-analyze security %s --no-pager", unit)
    level = parse_exposure(report, unit)
    assert level, report
    return level


def assert_exposure(host, unit, max_score, rating="OK"):
    """systemd-analyze security rates the unit at most `max_score`, with `rating`."""
    level = exposure(host, unit)
    assert level.score <= max_score, level.report
    assert level.rating == rating, level.report


# --- /proc/<pid>/status -----------------------------------------------------------

def parse_status(text):
    """{field: value} of /proc/<pid>/status (values without the surrounding white space)."""
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name] = value.strip()
    return fields


def assert_unprivileged_status(text):
    """/proc/<pid>/status of a confined process: every capability set empty, NoNewPrivs set,
    a seccomp filter (mode 2)."""
    fields = parse_status(text)
    for field in CAPABILITY_FIELDS:
        assert re.fullmatch(r"0+", fields.get(field, "")), "%s is not empty:\n%s" % (field, text)
    assert fields.get("NoNewPrivs") == "1", text
    assert fields.get("Seccomp") == "2", text  # a seccomp filter


def assert_no_privileges(host, pid, user):
    """The process `pid` (a unit's MainPID) runs, as `user`, with no capabilities, no way to
    gain any and a seccomp filter."""
    assert pid.isdigit() and pid != "0", "no process: MainPID=%r" % pid
    assert_unprivileged_status(host.file("/proc/%s/status" % pid).content_string)
    assert host.check_output("stat -c %%U /proc/%s", pid) == user


# --- The mount namespace ----------------------------------------------------------

def _unescape_mount(field):
    """mountinfo writes space, tab, newline and backslash as \\040, \\011, \\012, \\134."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text):
    """{mount point: Mount(root, options)} of a /proc/<pid>/mountinfo; where mounts are
    stacked on one point, the last one (the top, the one the process sees)."""
    table = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) < 10 or "-" not in fields[6:]:
            raise ValueError("not a mountinfo line: %r" % line)
        table[_unescape_mount(fields[4])] = Mount(_unescape_mount(fields[3]), fields[5].split(","))
    return table


def mount_table(host, pid):
    """The mount table of the process `pid`'s namespace (see parse_mountinfo)."""
    return parse_mountinfo(host.file("/proc/%s/mountinfo" % pid).content_string)


def mount_of(table, path):
    """The mount point that holds `path` (the longest mount point that is a prefix of it)."""
    candidates = [m for m in table if path == m or path.startswith(m.rstrip("/") + "/")]
    if not candidates:
        raise ValueError("no mount holds %s" % path)
    return max(candidates, key=len)


def assert_read_only_but(host, pid, paths_ro, data_dir, probes):
    """In the mount namespace of `pid` (a unit with ProtectSystem=strict, ReadWritePaths=
    `data_dir`, PrivateTmp=yes and ProtectHome=yes):

    - each of `paths_ro` is on a read-only mount, `data_dir` is a mount point of its own,
      writable;
    - /tmp is the unit's private one, /root and /home are out of reach;
    - even root, in that namespace, cannot create a file in any directory of `probes` (a
      read-only file system), and can in `data_dir`.
    """
    table = mount_table(host, pid)
    for path in paths_ro:
        point = mount_of(table, path)
        assert "ro" in table[point].options, "%s is writable for the service (mount %s: %s)" % (
            path, point, ",".join(table[point].options))
    assert mount_of(table, data_dir) == data_dir, "%s is not a mount point of its own" % data_dir
    assert "rw" in table[data_dir].options, "%s is read-only for the service" % data_dir
    assert "systemd-private-" in table["/tmp"].root, table["/tmp"]
    for path in ("/root", "/home"):
        assert table[path].root.endswith("/inaccessible/dir"), (path, table[path])
    for path in probes:
        probe = host.run("nsenter -t %s -m touch %s/%s", pid, path, PROBE)
        assert probe.rc != 0 and "Read-only file system" in probe.stderr, (path, probe.stderr)
    probe = host.run("nsenter -t %s -m touch %s/%s", pid, data_dir, PROBE)
    assert probe.rc == 0, probe.stderr
    host.run("rm -f %s/%s", data_dir, PROBE)
