#!/usr/bin/env python3
"""SigV4 vectors from botocore, AWS's own signer: the independent oracle of our signer.

Writes filter/core/tests/data/sigv4_botocore.json, which filter/core/tests/sigv4_botocore.rs
checks our signer against (same canonical request, same string to sign, same Authorization).
Regenerate after adding a case:

    bash tests/support/install-cloud-deps.sh
    .venv-cloud/bin/python tests/support/sigv4_oracle.py

Each case gives the request as the target receives it (path and query already encoded, as on
the wire), the headers the proxy signs besides its own, and the payload mode. botocore signs
the raw query as given, so the cases use well-formed queries; re-encoding of malformed ones is
covered by the Rust unit tests.
"""
import hashlib
import json
import os
import sys

from botocore.auth import S3SigV4Auth, SigV4Auth, UNSIGNED_PAYLOAD
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLEtoken//with+slash="

CASES = [
    dict(name="s3_get_root", service="s3", method="GET", path="/"),
    dict(name="s3_get_key_encoded_once", service="s3", method="GET",
         path="/bucket/dir%20one/caf%C3%A9%2Bplus~tilde.txt"),
    dict(name="s3_dot_segments_kept", service="s3", method="GET", path="/bucket/a/../b/./c"),
    dict(name="s3_query_unsorted_repeated_empty", service="s3", method="GET",
         path="/bucket?prefix=logs%2F&list-type=2&a=2&a=1&delimiter=&marker"),
    dict(name="s3_put_signed_body", service="s3", method="PUT", path="/bucket/key.txt",
         body="hello, signed world\n", payload="signed",
         headers=[["Content-Type", "text/plain"]]),
    dict(name="s3_put_unsigned_with_meta", service="s3", method="PUT", path="/bucket/k",
         body="streamed", payload="unsigned",
         headers=[["x-amz-meta-Owner", "  Jane   Doe "], ["Content-Type", "application/octet-stream"]]),
    dict(name="s3_session_token", service="s3", method="GET", path="/bucket/k",
         session_token=TOKEN),
    dict(name="query_api_get_sorted", service="sts", region="us-west-2", method="GET",
         path="/?Version=2011-06-15&Action=GetCallerIdentity"),
    dict(name="query_api_post_form_signed", service="iam", method="POST", path="/",
         body="Action=ListUsers&Version=2010-05-08", payload="signed",
         headers=[["Content-Type", "application/x-www-form-urlencoded; charset=utf-8"]]),
    dict(name="query_api_path_encoded_twice", service="execute-api", method="GET",
         path="/stage/items/a%20b/%E2%82%AC"),
    dict(name="query_api_path_normalized", service="lambda", method="GET",
         path="/2015-03-31//functions/./x/../f/"),
    dict(name="folded_header_whitespace", service="sqs", method="POST", path="/",
         body="Action=ListQueues", payload="signed",
         headers=[["X-Amz-Target", "\tAmazonSQS.ListQueues  "],
                  ["x-amz-meta-multi", "one\r\n  two   three"],
                  ["X-Amz-Meta-Multi", "four"]]),
    dict(name="host_with_port", service="s3", method="GET", path="/b/k", host="127.0.0.1:5000"),
]

TIMESTAMP = "20150830T123600Z"
UNIX_MS = 1440938160000


def sign(case):
    service = case["service"]
    region = case.get("region", "us-east-1")
    host = case.get("host", "example.amazonaws.com")
    body = case.get("body", "").encode()
    payload = case.get("payload", "unsigned")
    token = case.get("session_token")
    creds = Credentials(AKID, SECRET, token)
    auth = (S3SigV4Auth if service == "s3" else SigV4Auth)(creds, service, region)
    request = AWSRequest(method=case["method"], url=f"http://{host}{case['path']}",
                         data=body or None)
    for k, v in case.get("headers", []):
        request.headers[k] = v  # HTTPHeaders appends: a repeated name keeps every value
    request.headers["host"] = host
    request.headers["X-Amz-Date"] = TIMESTAMP
    if token:
        request.headers["X-Amz-Security-Token"] = token
    request.context["timestamp"] = TIMESTAMP
    if payload == "signed":
        # botocore's own body hash (plain http: it always hashes the body).
        content = auth.payload(request)
        assert content == hashlib.sha256(body).hexdigest()
    else:
        content = UNSIGNED_PAYLOAD
    request.headers["X-Amz-Content-SHA256"] = content
    canonical = auth.canonical_request(request)
    sts = auth.string_to_sign(request, canonical)
    signature = auth.signature(sts, request)
    auth._inject_signature_to_request(request, signature)
    return dict(
        case,
        region=region,
        host=host,
        payload=payload,
        unix_ms=UNIX_MS,
        access_key_id=AKID,
        secret_access_key=SECRET,
        expect_canonical_request=canonical,
        expect_string_to_sign=sts,
        expect_authorization=request.headers["Authorization"],
        expect_content_sha256=content,
    )


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = os.path.join(root, "filter/core/tests/data/sigv4_botocore.json")
    if len(sys.argv) > 1:
        out = sys.argv[1]
    vectors = [sign(c) for c in CASES]
    with open(out, "w") as f:
        json.dump({"generator": "tests/support/sigv4_oracle.py",
                   "botocore": __import__("botocore").__version__,
                   "vectors": vectors}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(vectors)} vectors to {out}")


if __name__ == "__main__":
    main()
