"""The smoke sender (roles/aether_app/files/aetherlink_smoke.py) against a real AetherLink service.

Controller only, loopback only: the service is the app of app/ started with its
real entry point (`python -m aetherlink`) on 127.0.0.1 and a free port, with a
temporary SQLite file and an admin key in its environment, as the aether_app
role runs it; tenants are provisioned through its admin API with the role's
default documents. The plans come from the aetherlink_smoke_plan filter with
the questions of playbooks/smoke.yml, as the playbook builds them. The sender
runs as the hosts run it: a plain `python3`, here without site-packages (-S),
so it can only use the standard library. Speed is measured in
benchmarks/smoke_bench.py, never asserted here.
"""

import ast
import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

from conftest import ROOT

SENDER = ROOT / "roles" / "aether_app" / "files" / "aetherlink_smoke.py"
HOST = "127.0.0.1"
RUN_TIMEOUT = 120  # seconds for one sender run in these tests (a few hundred requests)

# The filter module, imported by path as Ansible loads it (as in test_filters.py).
_spec = importlib.util.spec_from_file_location(
    "aetherlink_filter_data_smoke", ROOT / "roles" / "aetherlink" / "filter_plugins" / "aetherlink_data.py"
)
data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(data)
SMOKE_VARS = yaml.safe_load((ROOT / "playbooks" / "smoke.yml").read_text())[0]["vars"]
QUESTIONS = SMOKE_VARS["smoke_questions"]
OFFTOPIC = SMOKE_VARS["smoke_offtopic_questions"]
DOCUMENTS = yaml.safe_load((ROOT / "roles" / "aether_app" / "defaults" / "main.yml").read_text())[
    "aether_app_documents"
]


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def api(port, method, path, body, key, timeout=10):
    request = urllib.request.Request(
        "http://%s:%d%s" % (HOST, port, path),
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", "Authorization": "Bearer %s" % key},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read())


class Service:
    """The running service: its port and a way to add tenants with the role's documents."""

    def __init__(self, port, admin_key):
        self.port = port
        self.url = "http://%s:%d" % (HOST, port)
        self.admin_key = admin_key
        self.count = 0

    def tenants(self, *roles):
        """Fresh tenants (so fresh answer caches), one per role name: {role: (name, key)}."""
        made = {}
        for role in roles:
            self.count += 1
            name = "t%d-%s" % (self.count, role)
            key = "alk_test_" + secrets.token_hex(20)
            status, _ = api(self.port, "POST", "/v1/admin/tenants", {"name": name, "api_key": key}, self.admin_key)
            assert status == 201
            status, body = api(
                self.port, "POST", "/v1/admin/tenants/%s/documents" % name, {"documents": DOCUMENTS}, self.admin_key
            )
            assert status == 200 and body["documents"] == len(DOCUMENTS), body
            made[role] = (name, key)
        return made


@pytest.fixture(scope="module")
def service(tmp_path_factory, request):
    """`python -m aetherlink` on 127.0.0.1 and a free port; stopped by a finalizer."""
    workdir = tmp_path_factory.mktemp("aetherlink")
    port = free_port()
    admin_key = "smoke-admin-" + secrets.token_hex(16)
    env = dict(
        os.environ,
        API_ADMIN_KEY=admin_key,
        AETHER_LISTEN_HOST=HOST,
        AETHER_PORT=str(port),
        AETHER_DB_PATH=str(workdir / "aetherlink.db"),
        AETHER_LOG_LEVEL="warning",
    )
    log_path = workdir / "service.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aetherlink", "--no-access-log"], env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def stop():
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    request.addfinalizer(stop)
    for _ in range(300):  # at most ~30 s
        if proc.poll() is not None:
            pytest.fail("the service exited (rc %s): %s" % (proc.returncode, log_path.read_text()[-2000:]))
        try:
            if api(port, "GET", "/healthz", None, "-", timeout=1)[0] == 200:
                break
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    else:
        pytest.fail("the service did not answer /healthz within 30 s: %s" % log_path.read_text()[-2000:])
    return Service(port, admin_key)


RUN_ID = int(time.time())


def plan(names, count, cache=(), confidence=(), run_id=RUN_ID):
    return data.smoke_plan(list(names), count, list(cache), list(confidence), QUESTIONS, OFFTOPIC, run_id)


def send(document, *extra_args):
    """Run the sender with `document` (a dict, or bytes as is) on stdin: (rc, stdout, stderr)."""
    stdin = document if isinstance(document, bytes) else json.dumps(document).encode()
    proc = subprocess.run(
        [sys.executable, "-S", str(SENDER), *extra_args],
        input=stdin,
        capture_output=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def run_plan(service, requests, keys, concurrency=8, timeout=60):
    rc, out, err = send(
        {"api_url": service.url, "requests": requests, "keys": keys, "concurrency": concurrency, "timeout": timeout}
    )
    assert rc == 0, err
    # Never a key, never a question, in anything the sender prints.
    for secret in list(keys.values()) + [service.admin_key]:
        assert secret not in out + err
    for question in {r["question"] for r in requests}:
        assert json.dumps(question)[1:-1] not in out and question not in err
    return json.loads(out)


def distinct_pairs(requests):
    return len({(r["question"], r["rerank"]) for r in requests})


# --- Against the service --------------------------------------------------------------


def test_healthy_tenants_every_request_answered_with_sequential_cache_hits(service):
    tenants = service.tenants("a", "b")
    names = [name for name, _ in tenants.values()]
    keys = {name: key for name, key in tenants.values()}
    requests = plan(names, 60)
    report = run_plan(service, requests, keys)

    assert report["failures"] == [] and report["stopped"] is None
    assert list(report["tenants"]) == names
    for name in names:
        mine = [r for r in requests if r["tenant"] == name]
        stats = report["tenants"][name]
        assert stats["planned"] == stats["sent"] == len(mine) == 60
        assert stats["codes"] == {"200": 60}
        assert stats["errors"] == [] and stats["invalid_answers"] == 0
        # A repeated (question, rerank) goes out only after its first answer: exactly
        # the hits of a sequential run on a fresh cache.
        assert stats["cached"] == len(mine) - distinct_pairs(mine)
        # Off-topic on every 10th request; the playbook's questions are answered by the documents.
        assert stats["low_confidence"] == sum(1 for r in mine if r["question"] in OFFTOPIC) == 6
        assert 0 < stats["reranked"] <= sum(1 for r in mine if r["rerank"])
    assert report["totals"]["planned"] == report["totals"]["sent"] == 120
    assert report["totals"]["codes"] == {"200": 120}
    assert report["totals"]["cached"] == sum(report["tenants"][n]["cached"] for n in names)
    assert report["concurrency"] == 8
    assert report["elapsed_seconds"] > 0 and report["requests_per_second"] > 0

    # The playbook's summary reads the report as it is.
    lines = data.smoke_summary(report, names, [], [])
    assert lines[0].startswith("%s: 60 queries, cache hits %d (" % (names[0], report["tenants"][names[0]]["cached"]))
    assert lines[-1].startswith("all tenants: 120 queries in ")
    assert lines[-1].endswith("(%s requests/s, concurrency 8), HTTP 200: 120" % report["requests_per_second"])


def test_degraded_tenants_miss_the_cache_and_answer_with_low_confidence(service):
    tenants = service.tenants("cache", "confidence", "healthy")
    names = {role: name for role, (name, _) in tenants.items()}
    keys = {name: key for name, key in tenants.values()}
    requests = plan(list(names.values()), 40, cache=[names["cache"]], confidence=[names["confidence"]])
    report = run_plan(service, requests, keys, concurrency=16)

    assert report["failures"] == []
    for name in names.values():
        assert report["tenants"][name]["codes"] == {"200": 40}
    assert report["tenants"][names["cache"]]["cached"] == 0
    assert report["tenants"][names["cache"]]["low_confidence"] == 4
    assert report["tenants"][names["confidence"]]["low_confidence"] == 40
    assert report["tenants"][names["healthy"]]["low_confidence"] == 4
    assert report["tenants"][names["healthy"]]["cached"] > 0

    # The next run (another run id): the degraded-cache tenant's questions are new again.
    again = run_plan(service, plan([names["cache"]], 20, cache=[names["cache"]], run_id=RUN_ID + 1), keys)
    assert again["tenants"][names["cache"]]["cached"] == 0


def test_a_wrong_key_is_reported_as_401_without_the_key(service):
    tenants = service.tenants("good", "bad")
    good, good_key = tenants["good"]
    bad, bad_key = tenants["bad"]
    wrong_key = "alk_wrong_" + secrets.token_hex(20)
    requests = plan([good, bad], 15)
    report = run_plan(service, requests, {good: good_key, bad: wrong_key})

    assert report["tenants"][good]["codes"] == {"200": 15}
    assert report["tenants"][bad]["codes"] == {"401": 15}
    assert report["tenants"][bad]["sent"] == 15
    assert report["tenants"][bad]["errors"] == ["HTTP 401 the API key is not valid"]
    assert report["failures"] == ["%s: HTTP 401 the API key is not valid (15 requests)" % bad]
    assert report["totals"]["codes"] == {"200": 15, "401": 15}
    # The playbook's failure message is "Queries failed: " + these lines.
    assert bad_key not in json.dumps(report)


def test_no_service_is_reported_as_requests_without_answer_and_the_run_stops_early():
    requests = plan(["acme-corp"], 500)
    rc, out, err = send(
        {"api_url": "http://%s:%d" % (HOST, free_port()), "requests": requests,
         "keys": {"acme-corp": "alk_" + "k" * 20}, "concurrency": 4, "timeout": 60}
    )
    assert rc == 0, err
    report = json.loads(out)
    stats = report["tenants"]["acme-corp"]
    assert set(stats["codes"]) == {"-1"}
    assert 50 <= stats["sent"] < 500  # stopped after 50 consecutive requests without an answer
    assert report["stopped"] == "50 consecutive requests without an answer"
    assert report["failures"][0].startswith("acme-corp: HTTP -1 no answer: ConnectionRefusedError")
    assert report["failures"][1] == "acme-corp: %d of 500 requests not sent (%s)" % (500 - stats["sent"], report["stopped"])


def test_the_overall_timeout_bounds_the_run(service):
    (name, key), = service.tenants("late").values()
    report = run_plan(service, plan([name], 50), {name: key}, timeout=1e-6)
    assert report["tenants"][name]["sent"] == 0
    assert report["stopped"] == "overall timeout of 1e-06 s reached"
    assert report["failures"] == ["%s: 50 of 50 requests not sent (overall timeout of 1e-06 s reached)" % name]


# --- Bad input ----------------------------------------------------------------------------

KEY = "alk_" + "s3cr3t" * 5
GOOD = {
    "api_url": "http://127.0.0.1:9",
    "requests": [{"tenant": "acme-corp", "question": "What does the router warranty cover?", "rerank": True}],
    "keys": {"acme-corp": KEY},
    "concurrency": 2,
    "timeout": 5,
}


def changed(**fields):
    document = json.loads(json.dumps(GOOD))
    for field, value in fields.items():
        if value is None:
            document.pop(field)
        else:
            document[field] = value
    return document


@pytest.mark.parametrize(
    "document, message",
    [
        (b"", "stdin is empty"),
        (b"{\"keys\": {\"acme-corp\": \"" + KEY.encode() + b"\"", "stdin is not a JSON document (line 1, column"),
        (b"\xff\xfe", "stdin is not UTF-8"),
        (b"[" * 100000, "nested too deeply"),
        ([GOOD], "the input must be a JSON object"),
        (changed(requests=None), "missing field 'requests'"),
        (changed(extra=1), "unknown field(s) 'extra'"),
        (changed(api_url="ftp://127.0.0.1/"), "api_url must be an http:// or https:// URL"),
        (changed(api_url="http://user:%s@127.0.0.1/" % KEY), "api_url must be an http:// or https:// URL"),
        (changed(keys={}), "keys must be a non-empty object"),
        (changed(keys={"acme-corp": "has a space " + KEY}), 'keys["acme-corp"] must be a non-empty string'),
        (changed(requests={"tenant": "acme-corp"}), "requests must be a list"),
        (changed(requests=[{"tenant": "globex", "question": "q", "rerank": True}]), 'requests[0].tenant "globex" has no key'),
        (changed(requests=[{"tenant": "acme-corp", "question": "", "rerank": True}]), "requests[0].question must be"),
        (changed(requests=[{"tenant": "acme-corp", "question": "q", "rerank": "yes"}]), "requests[0].rerank must be true or false"),
        (changed(requests=[{"tenant": "acme-corp", "question": "q", "rerank": True, "top_k": 3}]), "requests[0] has unknown field(s) 'top_k'"),
        (changed(concurrency=0), "concurrency must be an integer from 1 to 64"),
        (changed(concurrency=True), "concurrency must be an integer from 1 to 64"),
        (changed(timeout=-1), "timeout must be a number of seconds above 0"),
    ],
)
def test_bad_input_exits_non_zero_with_a_clear_message_and_no_secret(document, message):
    rc, out, err = send(document)
    assert rc == 2
    assert out == ""
    assert err.startswith("aetherlink_smoke: bad input: ")
    assert message in err, err
    assert KEY not in err
    assert "Traceback" not in err


def test_arguments_are_refused_and_help_describes_the_input():
    rc, out, err = send(b"", "--verbose")
    assert rc == 2 and "no arguments expected" in err
    rc, out, err = send(b"", "--help")
    assert rc == 0 and '"api_url"' in out and '"requests"' in out and "Exit code" in out


def test_the_sender_uses_the_standard_library_only():
    """The hosts have python3 and nothing else."""
    tree = ast.parse(SENDER.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module.split(".")[0])
    assert modules and modules <= set(sys.stdlib_module_names), modules - set(sys.stdlib_module_names)
