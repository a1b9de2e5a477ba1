#!/usr/bin/env python3
"""AetherLink smoke traffic sender: a whole request plan in one run, from the API's host.

playbooks/smoke.yml copies this file to the host and runs it with the plan on
stdin; Python 3 standard library only (the hosts have no extra packages).

Input, one JSON document on stdin:

    {"api_url": "http://127.0.0.1:8000",
     "requests": [{"tenant": "acme-corp", "question": "...", "rerank": true}, ...],
     "keys": {"acme-corp": "<the tenant's API key>", ...},
     "concurrency": 8,        # optional: parallel keep-alive connections, 1-64 (default 8)
     "timeout": 600}          # optional: seconds for the whole run, > 0 (default 600)

Every request is sent once as POST <api_url>/v1/query with the header
"Authorization: Bearer <key of its tenant>" and the body {"question", "rerank"},
over `concurrency` threads, each with its own keep-alive connection. A request
whose (tenant, question, rerank) was asked before is sent only after the first
such request was answered, so the answer cache sees what a sequential run
would: repeated questions hit it, unique ones miss.

Output, one JSON document on stdout (never a key, never a question):

    {"tenants": {"acme-corp": {"planned": 10, "sent": 10, "codes": {"200": 10},
                               "cached": 5, "low_confidence": 1, "reranked": 5,
                               "invalid_answers": 0, "errors": []}, ...},
     "totals": {"planned", "sent", "codes", "cached", "low_confidence", "reranked", "invalid_answers"},
     "failures": ["acme-corp: HTTP 401 the API key is not valid (10 requests)", ...],
     "stopped": null, "concurrency": 8, "timeout": 600,
     "elapsed_seconds": 0.52, "requests_per_second": 1923.1}

"codes" counts the answers' HTTP status codes; "-1" is a request without an
answer (connection refused, timeout). "errors" holds the first few distinct
messages of failed requests ("HTTP <code> <API message>"). "failures" has one
line per tenant and failing code, and one per tenant with unsent requests;
empty when every request was answered 200 with a JSON answer. "stopped" says
why requests were left unsent: the overall timeout, or too many consecutive
requests without an answer.

Exit code 0 whenever the input was valid, whatever the answers (the caller
decides); 2 for bad input (the reason on stderr, without secrets); 1 for an
unexpected error.
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse

MAX_INPUT_BYTES = 256 * 1024 * 1024
MAX_REQUESTS = 1_000_000
MAX_CONCURRENCY = 64
DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT = 600.0
MAX_TIMEOUT = 86400.0
REQUEST_TIMEOUT = 30.0  # one request at most, within the overall timeout
MAX_ERRORS = 5  # distinct messages kept per tenant
MAX_MESSAGE = 160
# Consecutive requests without any answer after which the rest is not sent
# (the API is down: no need to wait for every remaining request to fail).
MAX_CONSECUTIVE_NO_ANSWER = 50
NO_ANSWER = "-1"
FIELDS = ("api_url", "requests", "keys", "concurrency", "timeout")
USER_AGENT = "aetherlink-smoke/1"


class BadInput(ValueError):
    """The input document is not usable; the message names the field, never a secret."""


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _printable_token(value):
    """A header-safe token: printable ASCII without spaces (what the API accepts as a key)."""
    return isinstance(value, str) and 0 < len(value) <= 4096 and all(33 <= ord(c) <= 126 for c in value)


def parse_input(raw):
    """The validated plan from the raw stdin bytes; raises BadInput."""
    if not raw.strip():
        raise BadInput("stdin is empty: expected one JSON document (see --help)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("stdin is not UTF-8") from None
    try:
        doc = json.loads(text)
    except RecursionError:
        raise BadInput("stdin is not a usable JSON document (nested too deeply)") from None
    except ValueError as exc:
        # The position only: the document holds keys.
        raise BadInput(
            "stdin is not a JSON document (line %d, column %d)" % (getattr(exc, "lineno", 0), getattr(exc, "colno", 0))
        ) from None
    if not isinstance(doc, dict):
        raise BadInput("the input must be a JSON object with api_url, requests and keys")
    unknown = sorted(set(doc) - set(FIELDS))
    if unknown:
        raise BadInput("unknown field(s) %s; expected %s" % (", ".join(map(repr, unknown)), ", ".join(FIELDS)))
    for field in ("api_url", "requests", "keys"):
        if field not in doc:
            raise BadInput("missing field %r" % field)

    api_url = doc["api_url"]
    if not isinstance(api_url, str):
        raise BadInput("api_url must be a string")
    url = urllib.parse.urlsplit(api_url)
    if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment or url.username:
        raise BadInput("api_url must be an http:// or https:// URL with a host and no query, fragment or credentials")
    try:
        port = url.port
    except ValueError:
        raise BadInput("api_url has an invalid port") from None

    keys = doc["keys"]
    if not isinstance(keys, dict) or not keys:
        raise BadInput("keys must be a non-empty object: tenant name -> API key")
    for tenant, key in keys.items():
        if not _printable_token(key):
            raise BadInput("keys[%s] must be a non-empty string of printable ASCII without spaces" % json.dumps(tenant))

    requests = doc["requests"]
    if not isinstance(requests, list):
        raise BadInput("requests must be a list of {tenant, question, rerank}")
    if len(requests) > MAX_REQUESTS:
        raise BadInput("requests has %d entries, at most %d are allowed" % (len(requests), MAX_REQUESTS))
    plan = []
    for index, item in enumerate(requests):
        where = "requests[%d]" % index
        if not isinstance(item, dict):
            raise BadInput("%s must be an object {tenant, question, rerank}" % where)
        extra = sorted(set(item) - {"tenant", "question", "rerank"})
        if extra:
            raise BadInput("%s has unknown field(s) %s" % (where, ", ".join(map(repr, extra))))
        tenant, question, rerank = item.get("tenant"), item.get("question"), item.get("rerank")
        if not isinstance(tenant, str) or not tenant:
            raise BadInput("%s.tenant must be a non-empty string" % where)
        if tenant not in keys:
            raise BadInput("%s.tenant %s has no key in keys" % (where, json.dumps(tenant)))
        if not isinstance(question, str) or not question.strip():
            raise BadInput("%s.question must be a non-empty string" % where)
        if not isinstance(rerank, bool):
            raise BadInput("%s.rerank must be true or false" % where)
        plan.append((tenant, question, rerank))

    concurrency = doc.get("concurrency", DEFAULT_CONCURRENCY)
    if not _is_int(concurrency) or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise BadInput("concurrency must be an integer from 1 to %d" % MAX_CONCURRENCY)
    timeout = doc.get("timeout", DEFAULT_TIMEOUT)
    if not _is_number(timeout) or not 0 < timeout <= MAX_TIMEOUT:
        raise BadInput("timeout must be a number of seconds above 0 and at most %d" % MAX_TIMEOUT)

    return {
        "scheme": url.scheme,
        "host": url.hostname,
        "port": port,
        "path": url.path.rstrip("/") + "/v1/query",
        "plan": plan,
        "keys": dict(keys),
        "concurrency": concurrency,
        "timeout": float(timeout),
    }


class TenantStats:
    __slots__ = ("planned", "sent", "codes", "cached", "low_confidence", "reranked", "invalid", "errors", "first_message")

    def __init__(self):
        self.planned = 0
        self.sent = 0
        self.codes = {}
        self.cached = 0
        self.low_confidence = 0
        self.reranked = 0
        self.invalid = 0
        self.errors = []
        self.first_message = {}  # code -> first message seen

    def report(self):
        return {
            "planned": self.planned,
            "sent": self.sent,
            "codes": dict(sorted(self.codes.items(), key=lambda kv: int(kv[0]))),
            "cached": self.cached,
            "low_confidence": self.low_confidence,
            "reranked": self.reranked,
            "invalid_answers": self.invalid,
            "errors": list(self.errors),
        }


class Sender:
    def __init__(self, config):
        self.config = config
        self.plan = config["plan"]
        self.keys = config["keys"]
        self.secrets = sorted(set(self.keys.values()), key=len, reverse=True)
        self.lock = threading.Lock()
        self.next_index = 0
        self.deadline = None
        self.stopped = None
        self.consecutive_no_answer = 0
        self.asked = set()  # (tenant, question, rerank) already handed out
        self.first_pending = {}  # such a key -> Event set when its first request has its outcome
        self.stats = {}
        for tenant, _, _ in self.plan:
            stats = self.stats.get(tenant)
            if stats is None:
                stats = self.stats[tenant] = TenantStats()
            stats.planned += 1

    # --- Work distribution ---------------------------------------------------------

    def _take(self):
        """The next request: (index, wait_for, first_done) or None when done or stopped."""
        with self.lock:
            if self.stopped is not None or self.next_index >= len(self.plan):
                return None
            if time.monotonic() >= self.deadline:
                self.stopped = "overall timeout of %g s reached" % self.config["timeout"]
                return None
            index = self.next_index
            self.next_index += 1
            key = self.plan[index]
            if key in self.asked:
                return index, self.first_pending.get(key), None
            self.asked.add(key)
            event = self.first_pending[key] = threading.Event()
            return index, None, event

    def _first_done(self, index, event):
        event.set()
        with self.lock:
            self.first_pending.pop(self.plan[index], None)

    # --- Results ----------------------------------------------------------------------

    def _clean(self, message, question):
        """A short one-line message without the request's key or question."""
        message = " ".join(str(message).split())
        for secret in self.secrets:
            if secret in message:
                message = message.replace(secret, "***")
        if question and question in message:
            message = message.replace(question, "<question>")
        return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."

    def _record(self, tenant, code, answer=None, message=None):
        with self.lock:
            stats = self.stats[tenant]
            stats.sent += 1
            stats.codes[code] = stats.codes.get(code, 0) + 1
            if code == NO_ANSWER:
                self.consecutive_no_answer += 1
                if self.consecutive_no_answer >= MAX_CONSECUTIVE_NO_ANSWER and self.stopped is None:
                    self.stopped = "%d consecutive requests without an answer" % MAX_CONSECUTIVE_NO_ANSWER
            else:
                self.consecutive_no_answer = 0
            if answer is not None:
                stats.cached += answer.get("cached") is True
                stats.low_confidence += answer.get("low_confidence") is True
                stats.reranked += answer.get("reranked") is True
            if message is not None:
                if code == "200":
                    stats.invalid += 1
                stats.first_message.setdefault(code, message)
                line = "HTTP %s %s" % (code, message)
                if len(stats.errors) < MAX_ERRORS and line not in stats.errors:
                    stats.errors.append(line)

    # --- HTTP ---------------------------------------------------------------------------

    def _connect(self):
        cls = http.client.HTTPSConnection if self.config["scheme"] == "https" else http.client.HTTPConnection
        return cls(self.config["host"], self.config["port"], timeout=REQUEST_TIMEOUT)

    def _post(self, conn, body, headers, timeout):
        """(status, body bytes) of one POST on ``conn`` (a [connection, reused] pair, updated in place).

        A reused keep-alive connection found closed (the server closes idle
        ones; the request did not reach it) is replaced and the request sent
        once more, once; a fresh connection's failure is the request's.
        """
        while True:
            connection, reused = conn
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            try:
                connection.request("POST", self.config["path"], body, headers)
                response = connection.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                connection.close()
                conn[:] = [self._connect(), False]
                if not reused:
                    raise
                continue
            # http.client drops the socket when the server answered "Connection: close".
            conn[1] = connection.sock is not None
            return response.status, data

    def _worker(self):
        conn = [self._connect(), False]
        try:
            while True:
                taken = self._take()
                if taken is None:
                    return
                index, wait_for, first_done = taken
                tenant, question, rerank = self.plan[index]
                try:
                    if wait_for is not None:
                        wait_for.wait(max(0.0, self.deadline - time.monotonic()))
                    self._send(conn, tenant, question, rerank)
                except Exception as exc:  # no answer, or a bug: counted, never a traceback
                    conn[0].close()
                    conn[:] = [self._connect(), False]
                    if isinstance(exc, _NoAnswer):
                        message = "no answer: %s" % exc
                    else:
                        message = "sender error: %s" % type(exc).__name__
                    self._record(tenant, NO_ANSWER, message=self._clean(message, question))
                finally:
                    if first_done is not None:
                        self._first_done(index, first_done)
        finally:
            conn[0].close()

    def _send(self, conn, tenant, question, rerank):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            # Not sent: counted as unsent, like the requests after it.
            with self.lock:
                if self.stopped is None:
                    self.stopped = "overall timeout of %g s reached" % self.config["timeout"]
            return
        headers = {
            "Authorization": "Bearer " + self.keys[tenant],
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        body = json.dumps({"question": question, "rerank": rerank}).encode("utf-8")
        try:
            status, data = self._post(conn, body, headers, min(REQUEST_TIMEOUT, remaining))
        except (OSError, http.client.HTTPException) as exc:
            raise _NoAnswer("%s: %s" % (type(exc).__name__, str(exc) or "connection closed")) from None
        code = str(status)
        try:
            answer = json.loads(data.decode("utf-8")) if data else None
        except ValueError:
            answer = None
        if status == 200:
            if isinstance(answer, dict):
                self._record(tenant, code, answer=answer)
            else:
                self._record(tenant, code, message="the answer is not a JSON object")
            return
        message = None
        if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
            message = answer["error"].get("message")
        if not isinstance(message, str) or not message:
            message = http.client.responses.get(status, "unexpected status")
        self._record(tenant, code, message=self._clean(message, question))

    # --- Run ----------------------------------------------------------------------------

    def run(self):
        start = time.monotonic()
        self.deadline = start + self.config["timeout"]
        workers = min(self.config["concurrency"], max(1, len(self.plan)))
        threads = [threading.Thread(target=self._worker, name="smoke-%d" % i, daemon=True) for i in range(workers)]
        for thread in threads:
            thread.start()
        # Each request ends by the deadline (its socket timeout); a little grace for the last ones.
        end = self.deadline + 5
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
        elapsed = time.monotonic() - start
        with self.lock:
            if any(thread.is_alive() for thread in threads) and self.stopped is None:
                self.stopped = "overall timeout of %g s reached" % self.config["timeout"]
            return self._report(elapsed)

    def _report(self, elapsed):
        tenants = {tenant: stats.report() for tenant, stats in self.stats.items()}
        totals = {"planned": 0, "sent": 0, "codes": {}, "cached": 0, "low_confidence": 0, "reranked": 0,
                  "invalid_answers": 0}
        failures = []
        for tenant, stats in self.stats.items():
            for field in ("planned", "sent", "cached", "low_confidence", "reranked"):
                totals[field] += getattr(stats, field)
            totals["invalid_answers"] += stats.invalid
            for code, count in stats.codes.items():
                totals["codes"][code] = totals["codes"].get(code, 0) + count
            for code, count in sorted(stats.codes.items(), key=lambda kv: int(kv[0])):
                if code != "200":
                    failures.append("%s: HTTP %s %s (%d requests)" % (tenant, code, stats.first_message.get(code, ""), count))
            if stats.invalid:
                failures.append("%s: HTTP 200 %s (%d requests)" % (tenant, stats.first_message["200"], stats.invalid))
            unsent = stats.planned - stats.sent
            if unsent:
                failures.append("%s: %d of %d requests not sent (%s)" % (tenant, unsent, stats.planned, self.stopped or "stopped"))
        totals["codes"] = dict(sorted(totals["codes"].items(), key=lambda kv: int(kv[0])))
        return {
            "tenants": tenants,
            "totals": totals,
            "failures": failures,
            "stopped": self.stopped,
            "concurrency": self.config["concurrency"],
            "timeout": self.config["timeout"],
            "elapsed_seconds": round(elapsed, 3),
            "requests_per_second": round(totals["sent"] / elapsed, 1) if elapsed > 0 else 0.0,
        }


class _NoAnswer(Exception):
    """A request that got no HTTP answer."""


def main(argv=None, stdin=None, stdout=None, stderr=None):
    argv = sys.argv[1:] if argv is None else argv
    stdin = sys.stdin.buffer if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    if argv in (["-h"], ["--help"]):
        stdout.write(__doc__)
        return 0
    if argv:
        stderr.write("aetherlink_smoke: no arguments expected (the plan comes on stdin; see --help)\n")
        return 2
    try:
        raw = stdin.read(MAX_INPUT_BYTES + 1)
        if len(raw) > MAX_INPUT_BYTES:
            raise BadInput("stdin is larger than %d bytes" % MAX_INPUT_BYTES)
        config = parse_input(raw)
        report = Sender(config).run()
    except BadInput as exc:
        stderr.write("aetherlink_smoke: bad input: %s\n" % exc)
        return 2
    except Exception as exc:  # never a traceback or an exception's text: they could show input data
        stderr.write("aetherlink_smoke: unexpected error: %s\n" % type(exc).__name__)
        return 1
    stdout.write(json.dumps(report) + "\n")
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
