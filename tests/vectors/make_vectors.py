#!/usr/bin/env python3
"""Build tests/vectors/vectors.jsonl: the shared contract between src/ingest/doc.rs and the
forwarder's ctdoc.py.

Every record of every CloudTrail log file under the fixtures (gzip or not, digest files skipped),
taken as its exact text inside the file, plus hand-written edge cases. One JSON object a line:

  {"name": ..., "prefix": "cloudtrail", "record_text": "<record JSON text>",
   "index": ..., "id": ..., "document": {...}, "document_text": "<the document line>"}

plus "granularity": "month" on the vectors built with that index granularity (absent: "day"). A record that
cannot become a document has "index", "id", "document" and "document_text" null and "error": the reason.
index/id/document come from templates/forwarder/ctdoc.py; `document` is the parsed document line. Redaction is
always on (tests/vectors.rs builds with redact: true).

    python3 tests/vectors/make_vectors.py [--fixtures DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "templates" / "forwarder"))
import ctdoc  # noqa: E402

DEFAULT_FIXTURES = Path("/work/shared/fixtures/cloudtrail")
PREFIX = "cloudtrail"
_WS = " \t\n\r"


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in _WS:
        i += 1
    return i


def record_texts(text: str) -> list[str] | None:
    """The raw text of each element of the top-level "Records" array (None: no such array)."""
    dec = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if text[i:i + 1] != "{":
        return None
    i += 1
    found = None
    while True:
        i = _skip_ws(text, i)
        if text[i:i + 1] == "}":
            return found
        key, i = dec.raw_decode(text, i)
        i = _skip_ws(text, i)
        assert text[i] == ":"
        i = _skip_ws(text, i + 1)
        if key == "Records" and text[i] == "[":
            found = []
            i = _skip_ws(text, i + 1)
            while text[i] != "]":
                _, end = dec.raw_decode(text, i)
                found.append(text[i:end])
                i = _skip_ws(text, end)
                if text[i] == ",":
                    i = _skip_ws(text, i + 1)
            i += 1
        else:
            _, i = dec.raw_decode(text, i)
        i = _skip_ws(text, i)
        if text[i:i + 1] == ",":
            i += 1


def fixture_records(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            if not (fn.endswith(".json") or fn.endswith(".json.gz")) or "CloudTrail-Digest" in fn:
                continue
            path = Path(dirpath) / fn
            raw = path.read_bytes()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            recs = record_texts(raw.decode("utf-8"))
            if recs is None:
                continue
            rel = path.relative_to(root)
            for n, t in enumerate(recs):
                yield f"fixture:{rel}#{n}", t


# Hand-written edge cases: (name, record text[, granularity]). Texts are exactly what the builders get.
EDGE = [
    ("no-eventID", '{"eventVersion":"1.08","eventTime":"2022-08-18T17:10:00Z","eventName":"Foo","b":1}'),
    ("empty-eventID", '{"eventID":"","eventTime":"2022-08-18T17:10:00Z","eventName":"Foo"}'),
    ("eventID-number", '{"eventID":12345,"eventTime":"2022-08-18T17:10:00Z"}'),
    ("eventID-null", '{"eventID":null,"eventTime":"2022-08-18T17:10:00Z"}'),
    ("eventID-escaped", '{"eventID":"a\\u00e9\\n\\"b","eventTime":"2022-08-18T17:10:00Z"}'),
    ("no-eventTime", '{"eventID":"e-no-time","eventName":"Foo"}'),
    ("eventTime-number", '{"eventID":"e-num-time","eventTime":1660842600}'),
    ("eventTime-non-iso", '{"eventID":"e-space","eventTime":"2026-01-11 22:54:56.000000000"}'),
    ("eventTime-offset-colon", '{"eventID":"e1","eventTime":"2020-12-31T23:30:00-01:00"}'),
    ("eventTime-offset-hhmm", '{"eventID":"e2","eventTime":"2021-01-01T00:30:00+0100"}'),
    ("eventTime-offset-hh", '{"eventID":"e3","eventTime":"2021-01-01T00:30:00+01"}'),
    ("eventTime-lowercase-t-z", '{"eventID":"e4","eventTime":"2021-03-04t05:06:07.89z"}'),
    ("eventTime-space-offset-frac", '{"eventID":"e5","eventTime":"2021-03-01 00:10:00.123456-00:30"}'),
    ("eventTime-leap-day", '{"eventID":"e6","eventTime":"2024-02-29T23:59:59.999+00:00"}'),
    ("eventTime-invalid-date", '{"eventID":"e7","eventTime":"2021-02-30T00:00:00Z"}'),
    ("eventTime-trailing-junk", '{"eventID":"e8","eventTime":"2021-01-01T00:00:00Zjunk"}'),
    ("eventTime-date-only", '{"eventID":"e9","eventTime":"2021-01-01"}'),
    ("eventTime-year-zero-offset", '{"eventID":"e10","eventTime":"0000-01-01T00:30:00+01:00"}'),
    ("own-timestamp", '{"eventID":"e11","eventTime":"2022-08-18T17:10:00Z","@timestamp":"whatever"}'),
    ("own-timestamp-undated", '{"eventID":"e12","@timestamp":"2022-01-01T00:00:00Z"}'),
    # doc.rs reads "@timestamp": null as absent and prepends its own: the line then holds the key twice.
    ("own-timestamp-null", '{"eventID":"e13","eventTime":"2022-08-18T17:10:00Z","@timestamp":null}'),
    ("session-token", '{"eventTime":"2022-08-18T17:10:00Z","eventID":"e14","zeta":1.0E+2,'
                      '"responseElements":{"credentials":{"sessionToken":"secret","accessKeyId":"ASIA",'
                      '"expiration":"Aug 18, 2022 6:10:00 PM"},"x":[1e-7,0.5]}}'),
    ("session-token-no-eventID", '{"eventTime":"2022-08-18T17:10:00Z","responseElements":'
                                 '{"credentials":{"sessionToken":"secret2"}}}'),
    ("session-token-null", '{"eventID":"e15","responseElements":{"credentials":{"sessionToken":null}}}'),
    ("session-token-elsewhere", '{"eventID":"e16","requestParameters":{"sessionToken":"keep"},'
                                '"responseElements":{"sessionToken":"keep-too"}}'),
    ("session-token-credentials-string", '{"eventID":"e17","responseElements":{"credentials":"sessionToken"}}'),
    ("floats-no-eventID", '{"a":1.5,"b":1e20,"c":1e-7,"d":0.1,"e":1e-5,"f":1E+2,"g":-0,"h":-0.0,'
                          '"i":1e16,"j":1000000000000000.0,"k":123456789012345678901234567890,'
                          '"l":18446744073709551615,"m":-9223372036854775809,"n":2.5e-320,'
                          '"o":0.780353240361996768,"p":1164115433906158533e-8,"q":1e-400,"r":0.0001}'),
    ("floats-with-eventID", '{"eventID":"e18","eventTime":"2022-08-18T17:10:00Z","a":1e20,"b":1e-7,'
                            '"c":0.1,"d":1.0E+2,"big":123456789012345678901234567890}'),
    ("unicode-keys-no-eventID", '{"é":1,"z":2,"中文":3,"\U0001F600":4,"\uff61":5,"A":6,"eventName":"Ünïcødé ✓"}'),
    ("unicode-escaped-keys-no-eventID", '{"\\u00e9":1,"z":2,"\\u4e2d\\u6587":3,"\\ud83d\\ude00":4,"\\uff61":5,'
                                        '"A":6,"eventName":"\\u00dcn\\u00efc\\u00f8d\\u00e9 \\u2713"}'),
    ("control-chars-no-eventID", '{"s":"tab\\there\\u0001\\u001f\\u007f\\/slash","eventName":"x"}'),
    ("pretty-printed", '{\n  "eventTime": "2022-08-18T17:10:00Z",\n  "eventID": "a b\\n",\n'
                       '  "x": {"k": "v \\" w", "arr": [ 1, 2 ]},\r\n\t"y" : "  spaced  "\n}'),
    ("pretty-printed-no-eventID", '\n { "eventName" : "Foo",\n "a": {"y": null, "z": [1, 2.5, "x"]}, "b": 1 }\n'),
    ("spaces-one-line", '{ "eventID" : "e19" , "eventTime" : "2022-08-18T17:10:00Z" , "x" : [ 1 , 2 ] }'),
    ("empty-object", "{}"),
    ("empty-object-dated", '{"eventTime":"2022-08-18T17:10:00Z"}'),
    ("nested-deep-no-eventID", '{"a":' + "[" * 100 + "1" + "]" * 100 + "}"),
    ("booleans-strings", '{"eventID":"e20","eventTime":"2022-08-18T17:10:00Z","readOnly":"true",'
                         '"managementEvent":true,"requestParameters":"{\\"policy\\":1}"}'),
    ("duplicate-other-key-no-eventID", '{"x":1,"x":2,"eventName":"dup"}'),
]

# --- index granularity -------------------------------------------------------------------------------
EDGE += [
    ("month-index", '{"eventID":"g1","eventTime":"2022-08-18T17:10:00Z"}', "month"),
    ("month-index-offset-into-previous-month", '{"eventID":"g2","eventTime":"2021-01-01T00:30:00+01:00"}', "month"),
    ("month-index-undated", '{"eventID":"g3","eventTime":"nope"}', "month"),
    ("month-index-no-eventID", '{"eventTime":"2024-02-29T23:59:59Z","requestParameters":{"a":"b"}}', "month"),
]

# --- @trailsetup (doc.rs `investigation_fields`) ----------------------------------------------------------
_U = "\U0001F600"  # one code point, two UTF-16 units, four UTF-8 bytes


def _j(o) -> str:
    """Compact JSON text, non-ASCII as is."""
    return json.dumps(o, ensure_ascii=False, separators=(",", ":"))


def _nest(n: int, leaf: str) -> str:
    return "[" * n + leaf + "]" * n


EDGE += [
    # the record's own @trailsetup (any value, even null; also spelled with an escape) wins: ours is left out
    ("ts-own", '{"eventID":"t1","eventTime":"2022-08-18T17:10:00Z","@trailsetup":{"x":1},'
               '"userIdentity":{"arn":"arn:aws:iam::1:user/x"},"requestParameters":{"a":"b"}}'),
    ("ts-own-null-undated", '{"eventID":"t2","requestParameters":{"a":"b"},"@trailsetup":null}'),
    ("ts-own-escaped-key", '{"eventID":"t3","@trail\\u0073etup":1,"requestParameters":{"a":"b"}}'),
    ("ts-nested-is-not-own", '{"eventID":"t4","requestParameters":{"@trailsetup":"inner"}}'),
    ("ts-escaped-blob-name", '{"eventID":"t5","request\\u0050arameters":{"a":"b"}}'),
    # placement: after @timestamp; first when there is no @timestamp of ours; the rest minified
    ("ts-undated-first", '{"eventID":"t6","requestParameters":"x"}'),
    ("ts-only-key-no-eventID", '{"requestParameters":"x"}'),
    ("ts-after-own-timestamp", '{"eventID":"t7","eventTime":"2022-08-18T17:10:00Z","@timestamp":"mine",'
                               '"requestParameters":{"a":1}}'),
    ("ts-pretty-printed", '{\n  "eventID": "t8",\n  "eventTime": "2022-08-18T17:10:00Z",\n'
                          '  "requestParameters": {\n    "bucketName": "b 1",\n    "n": [ 1, 2 ]\n  }\r\n}'),
    ("ts-all-blobs", '{"eventID":"t9","eventTime":"2022-08-18T17:10:00Z","requestParameters":{"a":"1"},'
                     '"responseElements":{"b":"2"},"resources":[{"ARN":"arn:aws:s3:::bk","type":"AWS::S3::Bucket"}],'
                     '"additionalEventData":{"c":"3"},"serviceEventDetails":{"d":"4"},"otherBlob":{"e":"5"}}'),
    ("ts-empty-blobs", '{"eventID":"t10","eventTime":"2022-08-18T17:10:00Z","requestParameters":{},'
                       '"responseElements":[],"resources":null,"additionalEventData":[[],{}],"userIdentity":{}}'),
    ("ts-empty-string", '{"eventID":"t11","requestParameters":{"k":"","":"v"}}'),
    # ARNs: the whole value and the part after the last "/" or ":" (when not empty)
    ("ts-arn", '{"eventID":"a1","requestParameters":{"instance":"arn:aws:ec2:us-east-1:1:instance/i-0abc"}}'),
    ("ts-arn-forms", '{"eventID":"a2","requestParameters":{"topic":"arn:aws:sns:us-east-1:1:topic","bare":"arn:",'
                     '"slash":"arn:aws:s3:::bucket/","noSep":"arn:foo","upper":"ARN:aws:x:y","both":"arn:a/b:c",'
                     '"colonLast":"arn:a:b/c:d","emptyPart":"arn:aws:s3:::","dup":"i-0abc",'
                     '"list":["arn:aws:iam::1:role/r","arn:aws:iam::1:role/path/r"]}}'),
    # value length: 256 code points kept, 257 not (UTF-16 units and UTF-8 bytes do not count)
    ("ts-value-256-257", _j({"eventID": "v1", "requestParameters": {
        "a256": _U * 256, "b257": _U * 257, "c256": "x" * 256, "d257": "x" * 257, "e200": _U * 200,
        "f": "arn:" + "y" * 250 + "/" + _U * 2, "g": "arn:" + "y" * 250 + "/" + _U * 3}})),
    # path length: at most 256 code points (the value still counts as a resource)
    ("ts-path-256-257", _j({"eventID": "p1", "requestParameters": {
        _U * (256 - len("requestParameters.")): "p256", _U * (257 - len("requestParameters.")): "p257",
        "k": {"x" * (256 - len("requestParameters.k.") - 2): ["p256arr"],
              "x" * (257 - len("requestParameters.k.") - 2): ["p257arr"]}}})),
    # scalars: strings, true/false, integers (i64/u64); floats (also 1e2, -0, integers beyond u64) and null skipped
    # ("floats-" as Python's json reads -0 as the integer 0: tests/vectors.rs compares the bytes only)
    ("floats-ts-scalars", '{"eventID":"s1","requestParameters":{"t":true,"f":false,"i":42,"neg":-7,"zero":0,'
                          '"u64max":18446744073709551615,"i64min":-9223372036854775808,"belowI64":-9223372036854775809,'
                          '"aboveU64":18446744073709551616,"fl":1.5,"e":1e2,"E":1E+2,"negZero":-0,"negZeroF":-0.0,'
                          '"zeroF":0.0,"n":null,"s":"x","arr":[1,"a",[true,null,2.5]],"o":{"p":{"q":3}}},'
                          '"responseElements":true,"additionalEventData":-0,"serviceEventDetails":12}'),
    ("ts-scalars-no-eventID", '{"requestParameters":{"t":true,"i":-1,"fl":0.5,"n":null,"s":"x"}}'),
    # A blob (or userIdentity) serde_json cannot read as a Value (out-of-range number, lone surrogate, over 127
    # levels) gives nothing, but a document holding one is itself no JSON serde_json reads, and tests/vectors.rs
    # reads every body: those cases are in tests/e2e/test_forwarder.py (BEYOND_VECTORS). Here: the records that fail.
    ("ts-out-of-range-in-blob-no-eventID", '{"requestParameters":{"a":"gone","x":1e400},"responseElements":{"b":1}}'),
    ("ts-lone-surrogate-no-eventID", '{"responseElements":{"k":"\\ud800"}}'),
    # serde_json reads the value a duplicated key replaced too (canonical _id, redacted body)
    ("ts-duplicate-dropped-out-of-range-no-eventID", '{"x":1e400,"x":1,"requestParameters":{"a":"b"}}'),
    ("ts-duplicate-dropped-lone-surrogate-no-eventID", '{"requestParameters":{"a":"\\ud800","a":"x"}}'),
    # doc.rs reads top-level keys (and, to look for a sessionToken, those of responseElements and its credentials)
    # as Rust strings
    ("ts-lone-surrogate-top-level-key", '{"eventID":"u5","\\ud800":1,"requestParameters":{"a":"b"}}'),
    ("ts-lone-surrogate-responseElements-key", '{"eventID":"u6","responseElements":{"\\udc00":1,"sessionToken":"y"}}'),
    ("ts-big-exponent-zero", '{"eventID":"r2","requestParameters":{"a":"kept","z":0e999999999999,"m":1e-400}}'),
    ("ts-surrogate-pair-escaped", '{"eventID":"u4","requestParameters":{"\\ud83d\\ude00":"\\ud83d\\ude00",'
                                  '"\\uff61":"\\uff61"}}'),
    # nesting: a blob is read from its own root, whatever its depth in the record (serde_json's limit, 127 levels,
    # is checked at 127/128 in tests/e2e/test_forwarder.py: a vector line holds the document two levels down, and
    # tests/vectors.rs parses the line and the body with that limit, so 125 levels is the deepest blob a vector has)
    ("ts-nesting-125", '{"eventID":"n1","requestParameters":{"s":"shallow125","x":' + _nest(124, '"deep125"') + "}}"),
    ("ts-nesting-125-objects", '{"eventID":"n2","requestParameters":' + '{"k":' * 125 + '"deep"' + "}" * 125 + "}"),
    # the whole record over the limit: no canonical form (no eventID) and no redacted body (sessionToken)
    ("ts-nesting-127-no-eventID", '{"requestParameters":' + _nest(127, '"x"') + "}"),
    ("ts-session-token-record-126", '{"eventID":"k5","responseElements":{"credentials":{"sessionToken":"S"}},'
                                    '"requestParameters":' + _nest(125, '"x"') + "}"),
    ("ts-session-token-record-128", '{"eventID":"k6","responseElements":{"credentials":{"sessionToken":"S"}},'
                                    '"requestParameters":' + _nest(127, '"x"') + "}"),
    # duplicate keys: the last value counts (at the top level and inside a blob)
    ("ts-duplicate-blob", '{"eventID":"d1","requestParameters":{"a":"first"},"requestParameters":{"b":"second"},'
                          '"responseElements":{"k":"v1","k":"v2","k":{"deep":"v3"}}}'),
    ("ts-duplicate-userIdentity", '{"eventID":"d4","userIdentity":{"arn":"first"},"userIdentity":{"userName":"last"}}'),
    # sessionToken: with redaction on, responseElements.credentials.sessionToken is not taken
    ("ts-session-token", '{"eventID":"k1","eventTime":"2022-08-18T17:10:00Z","responseElements":{"credentials":'
                         '{"sessionToken":"SECRET","accessKeyId":"ASIAX","expiration":1660842600}},'
                         '"requestParameters":{"sessionToken":"kept"},"userIdentity":{"arn":"arn:aws:sts::1:assumed-role/R/s"}}'),
    # the redacted body is rebuilt from the record as doc.rs reads it: a token it cannot read fails the record
    ("ts-session-token-lone-surrogate", '{"eventID":"k7","responseElements":{"credentials":{"sessionToken":"\\ud800"}}}'),
    ("ts-session-token-out-of-range", '{"eventID":"k8","responseElements":{"credentials":{"sessionToken":[1e400]}}}'),
    ("ts-session-token-object", '{"eventID":"k2","responseElements":{"credentials":{"sessionToken":{"v":"SECRET"}}}}'),
    ("ts-session-token-in-array", '{"eventID":"k3","responseElements":[{"credentials":{"sessionToken":"in-array"}}]}'),
    ("ts-session-token-dotted-key", '{"eventID":"k4","responseElements":{"credentials.sessionToken":"dotted"}}'),
    # the principal: the first non-empty string of arn, sessionContext.sessionIssuer.arn, userName, principalId,
    # invokedBy, accountId
    ("pr-arn", '{"eventID":"q1","userIdentity":{"accountId":"1","invokedBy":"svc","principalId":"AID","userName":"u",'
               '"sessionContext":{"sessionIssuer":{"arn":"arn:issuer"}},"arn":"arn:aws:iam::1:user/u"}}'),
    ("pr-issuer", '{"eventID":"q2","userIdentity":{"accountId":"1","userName":"u","principalId":"AID",'
                  '"sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::1:role/R"}}}}'),
    ("pr-issuer-arn-empty", '{"eventID":"q3","userIdentity":{"arn":"","sessionContext":{"sessionIssuer":{"arn":""}},'
                            '"userName":"u","principalId":"AID"}}'),
    ("pr-principalId", '{"eventID":"q4","userIdentity":{"arn":null,"userName":"","principalId":"AID","invokedBy":"s"}}'),
    ("pr-invokedBy", '{"eventID":"q5","userIdentity":{"arn":7,"principalId":"","invokedBy":"ec2.amazonaws.com",'
                     '"accountId":"1"}}'),
    ("pr-accountId", '{"eventID":"q6","userIdentity":{"sessionContext":{"sessionIssuer":[{"arn":"x"}]},'
                     '"invokedBy":"","accountId":"111122223333"}}'),
    ("pr-none", '{"eventID":"q7","eventTime":"2022-08-18T17:10:00Z","userIdentity":{"arn":"","userName":"",'
                '"principalId":"","invokedBy":"","accountId":"","type":"Root"}}'),
    ("pr-not-an-object", '{"eventID":"q8","userIdentity":"arn:aws:iam::1:user/u","requestParameters":{"a":1}}'),
    ("pr-nested-issuer-not-object", '{"eventID":"q10","userIdentity":{"sessionContext":{"sessionIssuer":"arn:x"},'
                                    '"userName":"u"}}'),
    ("pr-escapes", '{"eventID":"q11","userIdentity":{"arn":"a\\"b\\\\c\\u0001\\u2028\\ud83d\\ude00"}}'),
    # sorting by code point (U+FF61 before U+1F600, the other way round in UTF-16) and JSON escapes as serde_json
    ("ts-sort-and-escapes", _j({"eventID": "o1", "requestParameters": {
        "z": "\uff61", "y": _U, "x": "B", "w": "a", "v": "\u00e9", "ctl": "t\tn\nq\"b\\\x01\x7f\u2028",
        "k=v.x": "=", "arr": ["b", "a", "b"]}})),
]


def vector(name: str, text: str, granularity: str = "day") -> dict:
    v = {"name": name, "prefix": PREFIX, "record_text": text}
    if granularity != "day":
        v["granularity"] = granularity
    try:
        d = ctdoc.build(text, PREFIX, granularity=granularity)
    except ctdoc.DocError as e:
        return {**v, "index": None, "id": None, "document": None, "document_text": None, "error": str(e)}
    return {**v, "index": d.index, "id": d.id, "document": d.document(), "document_text": d.body.decode("utf-8")}


def _line(v: dict) -> str:
    """One vector as a line: non-ASCII as is, except the characters str.splitlines() also breaks lines at."""
    text = json.dumps(v, ensure_ascii=False)
    for c in ("\x85", "\u2028", "\u2029"):
        text = text.replace(c, "\\u%04x" % ord(c))
    return text + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "vectors.jsonl")
    a = ap.parse_args()
    n_fix = 0
    with open(a.out, "w", encoding="utf-8") as out:
        for name, text in fixture_records(a.fixtures):
            out.write(_line(vector(name, text)))
            n_fix += 1
        for name, text, *g in EDGE:
            out.write(_line(vector("edge:" + name, text, *g)))
    print(f"{a.out}: {n_fix} fixture records + {len(EDGE)} edge cases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
