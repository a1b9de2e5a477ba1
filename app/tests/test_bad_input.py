"""Every class of bad input gets a 4xx JSON error naming the problem; never a 500."""

from __future__ import annotations

import json
import random

import pytest
from aether_testkit import ADMIN, ask, recording

JSON = {"Content-Type": "application/json"}


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}", **JSON}


def assert_error(r, status: int, code: str | None = None, mentions: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"code", "message"} and err["message"]
    if code:
        assert err["code"] == code
    if mentions:
        assert mentions in err["message"]
    assert "Traceback" not in r.text
    return err


@pytest.mark.parametrize(
    "body, status, code, mentions",
    [
        (b"{not json", 400, "invalid_json", "malformed JSON"),
        (b"", 400, "invalid_json", "empty"),
        (b"   ", 400, "invalid_json", "empty"),
        (b'{"question": NaN}', 400, "invalid_json", "NaN"),
        (b'{"question": "a"', 400, "invalid_json", None),
        (b"\xff\xfe\xfa", 400, "invalid_json", None),
        (b"[" * 30000 + b"]" * 30000, 400, "invalid_json", None),
        (b'["question"]', 422, "invalid_type", "JSON object"),
        (b'"just a string"', 422, "invalid_type", None),
        (b"{}", 422, "missing_field", "question"),
        (b'{"question": null}', 422, "missing_field", "question"),
        (b'{"question": ""}', 422, "empty_field", "question"),
        (b'{"question": "   "}', 422, "empty_field", "question"),
        (b'{"question": 42}', 422, "invalid_type", "question"),
        (b'{"question": ["a"]}', 422, "invalid_type", "question"),
        (b'{"question": "ok", "rerank": "yes"}', 422, "invalid_type", "rerank"),
        (b'{"question": "ok", "rerank": 1}', 422, "invalid_type", "rerank"),
        (b'{"question": "ok", "top_k": "3"}', 422, "invalid_type", "top_k"),
        (b'{"question": "ok", "top_k": 2.5}', 422, "invalid_type", "top_k"),
        (b'{"question": "ok", "top_k": true}', 422, "invalid_type", "top_k"),
        (b'{"question": "ok", "top_k": 0}', 422, "invalid_value", "top_k"),
        (b'{"question": "ok", "top_k": 21}', 422, "invalid_value", "top_k"),
        (b'{"question": "ok", "top_k": 1e999}', 422, "invalid_type", "top_k"),
        (b'{"question": "ok", "tenant": "other"}', 422, "unknown_field", "tenant"),
        (json.dumps({"question": "x" * 2001}).encode(), 422, "invalid_value", "question"),
    ],
)
def test_query_bad_bodies(client, tenant, body, status, code, mentions):
    r = client.post("/v1/query", content=body, headers=_auth(tenant))
    assert_error(r, status, code, mentions)


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {},
    ],
)
def test_wrong_content_type_is_415(client, tenant, headers):
    r = client.post("/v1/query", content=b'{"question": "warranty"}',
                    headers={"Authorization": f"Bearer {tenant}", **headers})
    assert_error(r, 415, "unsupported_media_type", "Content-Type")


def test_json_content_type_variants_are_accepted(client, tenant):
    for ctype in ("application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json"):
        r = client.post("/v1/query", content=b'{"question": "warranty"}',
                        headers={"Authorization": f"Bearer {tenant}", "Content-Type": ctype})
        assert r.status_code == 200, ctype


def test_oversized_body_is_413(make_client):
    client = make_client(max_body_bytes=2048)
    r = client.post("/v1/admin/tenants", json={"name": "big-co"}, headers=ADMIN)
    key = r.json()["api_key"]
    big = json.dumps({"question": "x" * 3000}).encode()
    assert_error(client.post("/v1/query", content=big, headers=_auth(key)), 413, "body_too_large", "2048")
    docs = {"documents": [{"id": str(i), "text": "y" * 100} for i in range(50)]}
    r = client.post("/v1/admin/tenants/big-co/documents", json=docs, headers=ADMIN)
    assert_error(r, 413, "body_too_large")


def test_oversized_chunked_body_without_length_is_413(make_client):
    client = make_client(max_body_bytes=2048)
    key = client.post("/v1/admin/tenants", json={"name": "big-co"}, headers=ADMIN).json()["api_key"]

    def chunks():
        yield b'{"question": "'
        for _ in range(10):
            yield b"z" * 500
        yield b'"}'

    r = client.post("/v1/query", content=chunks(), headers=_auth(key))
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert_error(r, 413, "body_too_large")


def test_default_body_limit_is_64k(client, tenant):
    body = json.dumps({"question": "x" * 70000}).encode()
    assert_error(client.post("/v1/query", content=body, headers=_auth(tenant)), 413)


def test_bad_content_length_header(client, tenant):
    r = client.post("/v1/query", content=b'{"question": "a"}',
                    headers={**_auth(tenant), "Content-Length": "abc"})
    assert_error(r, 400, "invalid_header", "Content-Length")


@pytest.mark.parametrize("name", ["Acme", "acme_corp", "a", "-acme", "acme corp", "a" * 64, "ünïcode",
                                  "../etc", ""])
def test_invalid_tenant_name_in_body_is_422(client, name):
    r = client.post("/v1/admin/tenants", json={"name": name}, headers=ADMIN)
    err = assert_error(r, 422)
    assert "name" in err["message"]


@pytest.mark.parametrize("name", ["Acme", "acme_corp", "a", "-acme", "a" * 64, "%20"])
def test_invalid_tenant_name_in_path_is_400(client, name):
    assert_error(client.get(f"/v1/admin/tenants/{name}", headers=ADMIN), 400, "invalid_tenant_name")
    r = client.post(f"/v1/admin/tenants/{name}/documents", json=[{"id": "a", "text": "b"}], headers=ADMIN)
    assert_error(r, 400, "invalid_tenant_name")


def test_unknown_tenant_is_404(client):
    assert_error(client.get("/v1/admin/tenants/no-such-co", headers=ADMIN), 404, "tenant_not_found",
                 "no-such-co")
    r = client.post("/v1/admin/tenants/no-such-co/documents", json=[{"id": "a", "text": "b"}], headers=ADMIN)
    assert_error(r, 404, "tenant_not_found")


@pytest.mark.parametrize(
    "body, mentions",
    [
        ({"name": "x-co", "vip": "true"}, "vip"),
        ({"name": "x-co", "lowconf_threshold": 1.5}, "lowconf_threshold"),
        ({"name": "x-co", "lowconf_threshold": -0.1}, "lowconf_threshold"),
        ({"name": "x-co", "lowconf_threshold": "0.5"}, "lowconf_threshold"),
        ({"name": "x-co", "lowconf_threshold": True}, "lowconf_threshold"),
        ({"name": "x-co", "rerank_default": 0}, "rerank_default"),
        ({"name": "x-co", "api_key": "short"}, "api_key"),
        ({"name": "x-co", "api_key": "has spaces in the key 123"}, "api_key"),
        ({"name": "x-co", "api_key": 1234567890123456789}, "api_key"),
        ({"name": "x-co", "colour": "red"}, "colour"),
        ({"name": 5}, "name"),
        ({}, "name"),
        ([{"name": "x-co"}], "object"),
    ],
)
def test_admin_tenant_bad_fields_are_422(client, body, mentions):
    r = client.post("/v1/admin/tenants", json=body, headers=ADMIN)
    assert_error(r, 422, mentions=mentions)
    assert client.get("/v1/admin/tenants/x-co", headers=ADMIN).status_code == 404


@pytest.mark.parametrize(
    "body, mentions",
    [
        ({"documents": "text"}, "documents"),
        ({"documents": []}, "documents"),
        ([], "documents"),
        ({"docs": []}, "docs"),
        ({}, "documents"),
        ([{"text": "no id"}], "documents[0].id"),
        ([{"id": "a", "text": "ok"}, {"id": "b"}], "documents[1].text"),
        ([{"id": "a", "text": ""}], "documents[0].text"),
        ([{"id": 7, "text": "x"}], "documents[0].id"),
        ([{"id": "a", "text": 7}], "documents[0].text"),
        ([{"id": "a", "text": "x", "extra": 1}], "extra"),
        (["just text"], "documents[0]"),
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], "duplicate"),
        ([{"id": "a\nb", "text": "x"}], "control"),
        ([{"id": "i" * 201, "text": "x"}], "documents[0].id"),
        (42, "documents"),
    ],
)
def test_ingest_bad_documents_are_422(client, tenant, body, mentions):
    r = client.post("/v1/admin/tenants/acme-corp/documents", json=body, headers=ADMIN)
    assert_error(r, 422, mentions=mentions)


def test_ingest_wrong_content_type_and_malformed(client, tenant):
    r = client.post("/v1/admin/tenants/acme-corp/documents", content=b"id,text\n1,x",
                    headers={**ADMIN, "Content-Type": "text/csv"})
    assert_error(r, 415)
    r = client.post("/v1/admin/tenants/acme-corp/documents", content=b"[{",
                    headers={**ADMIN, **JSON})
    assert_error(r, 400, "invalid_json")


def test_unknown_routes_and_methods(client, tenant):
    for path in ("/", "/v1", "/v1/query/", "/v2/query", "/admin", "/v1/admin/tenants/a/b/c", "/metrics/x"):
        assert_error(client.get(path), 404, "not_found")
        assert_error(client.post(path, json={}), 404, "not_found")
    r = client.get("/v1/query", headers={"Authorization": f"Bearer {tenant}"})
    assert_error(r, 405, "method_not_allowed")
    assert "POST" in r.headers["allow"]
    assert_error(client.delete("/v1/admin/tenants", headers=ADMIN), 405)
    assert_error(client.put("/v1/admin/tenants/acme-corp", headers=ADMIN), 405)
    assert_error(client.post("/healthz"), 405)


def test_random_garbage_never_500(client, tenant):
    rng = random.Random(1234)
    alphabet = b'{}[]":,0123456789 abcdefnulltrue\\\x00\xff'
    for _ in range(200):
        body = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        r = client.post("/v1/query", content=body, headers=_auth(tenant))
        assert 400 <= r.status_code < 500 or r.status_code == 200, (body, r.status_code)
        assert "error" in r.json() or "answer" in r.json()
    for value in (None, True, 1, -1, 1.5, "s", [], {}, [1], {"a": 1}):
        for field in ("question", "rerank", "top_k"):
            body = {"question": "warranty", field: value}
            r = client.post("/v1/query", json=body, headers=_auth(tenant))
            assert r.status_code < 500, (body, r.text)


def test_valid_query_with_all_fields(client, tenant):
    r = ask(client, tenant, "warranty", rerank=True, top_k=20)
    assert r.status_code == 200 and r.json()["reranked"] is True


# --- lone surrogates, huge numbers, trailing newlines, invisible characters ------------------

def _post_raw(client, tenant_key: str, path: str, body: bytes):
    """POST raw JSON bytes with the key the route needs (tenant key for queries, else admin)."""
    headers = _auth(tenant_key) if path == "/v1/query" else {**ADMIN, **JSON}
    return client.post(path, content=body, headers=headers)


@pytest.mark.parametrize(
    "path, body, code, mentions",
    [
        # in a field name: an unknown field, quoted with escapes
        ("/v1/query", b'{"question": "ok", "\\udc00": 1}', "unknown_field", "\\udc00"),
        ("/v1/query", b'{"\\ud800\\u00e9x": 1}', "unknown_field", "\\ud800"),
        ("/v1/admin/tenants", b'{"name": "x-co", "\\udfff": true}', "unknown_field", "\\udfff"),
        ("/v1/admin/tenants/acme-corp/documents", b'[{"id": "a", "text": "b", "\\udc00": 1}]', "unknown_field",
         "\\udc00"),
        ("/v1/admin/tenants/acme-corp/documents", b'{"\\udc00": []}', "unknown_field", "\\udc00"),
        # in a value: not valid Unicode text, naming the field
        ("/v1/query", b'{"question": "warranty \\udc00"}', "invalid_value", "question"),
        ("/v1/admin/tenants", b'{"name": "\\ud800abc"}', "invalid_value", "name"),
        ("/v1/admin/tenants", b'{"name": "x-co", "api_key": "key-0123456789-\\udc00-abc"}', "invalid_value",
         "api_key"),
        ("/v1/admin/tenants/acme-corp/documents", b'[{"id": "a\\udc00", "text": "b"}]', "invalid_value",
         "documents[0].id"),
        ("/v1/admin/tenants/acme-corp/documents", b'[{"id": "a", "text": "b"}, {"id": "c", "text": "\\ud83d"}]',
         "invalid_value", "documents[1].text"),
    ],
)
def test_lone_surrogate_is_422(client, tenant, path, body, code, mentions):
    with recording("aetherlink", "uvicorn.error") as logs:
        assert_error(_post_raw(client, tenant, path, body), 422, code, mentions)
    for line in logs.lines():  # what the stdout handler writes must be encodable
        line.encode("utf-8")
    assert client.get("/v1/admin/tenants/acme-corp", headers=ADMIN).json()["documents"] == 5
    assert client.get("/v1/admin/tenants/x-co", headers=ADMIN).status_code == 404


@pytest.mark.parametrize(
    "body, field",
    [
        (b'{"name": "x-co", "lowconf_threshold": 1' + b"0" * 400 + b"}", "lowconf_threshold"),
        (b'{"name": "x-co", "lowconf_threshold": -' + b"9" * 400 + b"}", "lowconf_threshold"),
    ],
)
def test_huge_integer_for_a_float_field_is_422(client, body, field):
    err = assert_error(client.post("/v1/admin/tenants", content=body, headers={**ADMIN, **JSON}), 422, mentions=field)
    assert len(err["message"]) < 200
    assert client.get("/v1/admin/tenants/x-co", headers=ADMIN).status_code == 404


def test_huge_integer_top_k_is_422_with_a_short_message(client, tenant):
    body = b'{"question": "ok", "top_k": ' + b"7" * 400 + b"}"
    err = assert_error(client.post("/v1/query", content=body, headers=_auth(tenant)), 422, "invalid_value", "top_k")
    assert len(err["message"]) < 200


@pytest.mark.parametrize("name", ["acme-corp\n", "acme\n", "new-co\r\n", "x-co\n\n"])
def test_trailing_newline_in_tenant_name_is_422(client, tenant, name):
    r = client.post("/v1/admin/tenants", json={"name": name}, headers=ADMIN)
    assert_error(r, 422, mentions="name")
    names = [t["name"] for t in client.get("/v1/admin/tenants", headers=ADMIN).json()["tenants"]]
    assert names == ["acme-corp"]


@pytest.mark.parametrize("key", ["trailing-newline-key-0001\n", "trailing-crlf-key-00000\r\n", "\nleading-key-0000000001"])
def test_newline_in_supplied_api_key_is_422(client, key):
    r = client.post("/v1/admin/tenants", json={"name": "nl-co", "api_key": key}, headers=ADMIN)
    assert_error(r, 422, mentions="api_key")
    assert client.get("/v1/admin/tenants/nl-co", headers=ADMIN).status_code == 404


@pytest.mark.parametrize("path", ["acme-corp%0A", "acme-corp%0D%0A", "%0Aacme-corp"])
def test_newline_in_tenant_name_in_path_is_400(client, tenant, path):
    assert_error(client.get(f"/v1/admin/tenants/{path}", headers=ADMIN), 400, "invalid_tenant_name")
    r = client.post(f"/v1/admin/tenants/{path}/documents", json=[{"id": "a", "text": "b"}], headers=ADMIN)
    assert_error(r, 400, "invalid_tenant_name")
    assert_error(client.delete(f"/v1/admin/tenants/{path}", headers=ADMIN), 400, "invalid_tenant_name")
    assert client.get("/v1/admin/tenants/acme-corp", headers=ADMIN).json()["documents"] == 5


@pytest.mark.parametrize(
    "char",
    ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",
     "\u2028", "\u2029", "\u200b", "\u200e", "\ufeff", "\u00ad", "\x7f", "\x85", "\x9b", "\n"],
    ids=lambda c: f"U+{ord(c):04X}",
)
def test_invisible_or_control_character_in_document_id_is_422(client, tenant, char):
    r = client.post("/v1/admin/tenants/acme-corp/documents", json=[{"id": f"inv{char}oice", "text": "x"}],
                    headers=ADMIN)
    err = assert_error(r, 422, "invalid_value", "documents[0].id")
    assert f"U+{ord(char):04X}" in err["message"]
    assert client.get("/v1/admin/tenants/acme-corp", headers=ADMIN).json()["documents"] == 5


def test_visible_unicode_document_ids_are_accepted(client, tenant):
    docs = [{"id": i, "text": "fine"} for i in ("café", "文書-1", "a b", "x/y", "emoji-\U0001f600")]
    r = client.post("/v1/admin/tenants/acme-corp/documents", json=docs, headers=ADMIN)
    assert r.status_code == 200 and r.json()["inserted"] == 5
