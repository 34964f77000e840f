"""Schemathesis hooks for kreg's contract test (test/contract/run.ts sets SCHEMATHESIS_HOOKS).

Two rules of POST /register cannot be written in JSON Schema: the password must not be one of the
most common passwords, and must not be the username. The server documents both as 400 codes
(`too_common`, `same_as_username`). A positive case that breaks one of them is not a valid request,
so it is dropped here rather than reported as "schema-valid request rejected". Nothing else is
dropped: negative cases are kept as generated.

One more guard: a positive body must validate against the published schema. Schemathesis's
stateful phase draws `\\p{M}` from whole Unicode blocks, unassigned code points included (U+20F1 was
seen), which the schema's own validator rejects; the server is right to refuse those.
"""
import atexit
import json
import os
import sys
import unicodedata

import jsonschema_rs
import schemathesis

with open(os.environ["KREG_COMMON_PASSWORDS"], encoding="utf-8") as f:
    COMMON_PASSWORDS = frozenset(json.load(f))

_validators = {}
_dropped = {"invalid by the schema": 0, "common password": 0, "password is the username": 0}


@atexit.register
def _report():
    # Printed so a run that drops most of what it generates cannot pass unnoticed.
    summary = ", ".join(f"{count} {why}" for why, count in _dropped.items())
    print(f"hooks.py: positive cases dropped: {summary}", file=sys.stderr)


def _request_validator(case):
    key = (case.method, case.operation.path)
    if key not in _validators:
        raw = case.operation.schema.raw_schema
        operation = raw["paths"][case.operation.path][case.method.lower()]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        name = ref.rsplit("/", 1)[-1]
        schema = dict(raw["components"]["schemas"][name])
        schema["components"] = raw["components"]
        _validators[key] = jsonschema_rs.validator_for(schema)
    return _validators[key]


def _fold(value):
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).lower())


@schemathesis.hook
def filter_case(context, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return True
    if case.method.upper() != "POST" or case.operation.path not in ("/register", "/login"):
        return True
    body = case.body
    if not isinstance(body, dict) or not _request_validator(case).is_valid(body):
        _dropped["invalid by the schema"] += 1
        return False
    if case.operation.path == "/register":
        password = body.get("password")
        username = body.get("username")
        if isinstance(password, str) and isinstance(username, str):
            if _fold(password) in COMMON_PASSWORDS:
                _dropped["common password"] += 1
                return False
            if _fold(password) == _fold(username):
                _dropped["password is the username"] += 1
                return False
    return True
