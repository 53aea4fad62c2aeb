#!/usr/bin/env python3
"""Build tests/vectors/vectors.jsonl: the shared contract between src/ingest/doc.rs and the
forwarder's ctdoc.py.

Every record of every CloudTrail log file under the fixtures (gzip or not, digest files skipped),
taken as its exact text inside the file, plus hand-written edge cases. One JSON object a line:

  {"name": ..., "prefix": "cloudtrail", "record_text": "<record JSON text>",
   "index": ..., "id": ..., "document": {...}}

index/id/document come from templates/forwarder/ctdoc.py; `document` is the parsed document line.

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


# Hand-written edge cases: (name, record text). Texts are exactly what the builders get.
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


def vector(name: str, text: str) -> dict:
    d = ctdoc.build(text, PREFIX)
    return {"name": name, "prefix": PREFIX, "record_text": text, "index": d.index, "id": d.id,
            "document": d.document(), "document_text": d.body.decode("utf-8")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "vectors.jsonl")
    a = ap.parse_args()
    n_fix = 0
    with open(a.out, "w", encoding="utf-8") as out:
        for name, text in fixture_records(a.fixtures):
            out.write(json.dumps(vector(name, text), ensure_ascii=False) + "\n")
            n_fix += 1
        for name, text in EDGE:
            out.write(json.dumps(vector("edge:" + name, text), ensure_ascii=False) + "\n")
    print(f"{a.out}: {n_fix} fixture records + {len(EDGE)} edge cases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
