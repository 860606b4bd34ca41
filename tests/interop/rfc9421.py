#!/usr/bin/env python3
"""Interop peer for secret_header.wasm: HTTP Message Signatures (RFC 9421, hmac-sha256)
with the independent PyPI implementation `http-message-signatures` (installed by .ci/setup).

Reads one JSON request on stdin and writes one JSON answer on stdout:

  {"op": "verify", "method", "url", "headers": [[name, value], ...], "body": "<text>",
   "key_id", "key": "<text: the key's bytes>", "max_age": seconds, "require": [component ids]}
      -> {"ok": true, "covered": [...], "label": ...}   (exit 0), or {"ok": false, "error"} (exit 1)

  {"op": "sign", "method", "url", "headers", "body", "key_id", "key", "created": unix seconds,
   "components": [component ids], "label"}
      -> {"ok": true, "headers": [[name, value], ...]}  (Content-Digest added over the body)
"""

import datetime
import json
import sys

try:
    import requests
    from http_message_signatures import HTTPMessageSigner, HTTPMessageVerifier, MappingKeyResolver
    from http_message_signatures.algorithms import HMAC_SHA256
except ImportError as e:  # the Rust test shows this line
    print(json.dumps({"ok": False, "error": f"missing Python module ({e}): run .ci/setup "
                      "(python3 -m pip install http-message-signatures)"}))
    sys.exit(2)


def message(req):
    prepared = requests.Request(req["method"], req["url"]).prepare()
    prepared.headers.clear()
    for name, value in req["headers"]:
        prepared.headers[name] = value
    return prepared


def main():
    req = json.load(sys.stdin)
    key = req["key"].encode()
    body = req.get("body", "").encode()
    resolver = MappingKeyResolver(public_keys={req["key_id"]: key}, private_keys={req["key_id"]: key})
    msg = message(req)
    if req["op"] == "verify":
        verifier = HTTPMessageVerifier(signature_algorithm=HMAC_SHA256, key_resolver=resolver)
        try:
            results = verifier.verify(
                msg,
                max_age=datetime.timedelta(seconds=req["max_age"]),
                require_components=req["require"],
                body=body,
            )
        except Exception as e:  # noqa: BLE001 - every failure is an answer here
            print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
            sys.exit(1)
        result = results[0]
        print(json.dumps({"ok": True, "label": result.label,
                          "covered": [str(c) for c in result.covered_components]}))
    elif req["op"] == "sign":
        signer = HTTPMessageSigner(signature_algorithm=HMAC_SHA256, key_resolver=resolver)
        signer.sign(
            msg,
            key_id=req["key_id"],
            created=datetime.datetime.fromtimestamp(req["created"], tz=datetime.timezone.utc),
            label=req["label"],
            covered_component_ids=req["components"],
            body=body,
        )
        print(json.dumps({"ok": True, "headers": [[n, v] for n, v in msg.headers.items()]}))
    else:
        print(json.dumps({"ok": False, "error": f"unknown op {req['op']!r}"}))
        sys.exit(2)


if __name__ == "__main__":
    main()
