"""One CloudTrail record -> one OpenSearch document: index, _id and body.

A line-by-line port of src/ingest/doc.rs (the reference), held together with it by
tests/vectors/vectors.jsonl. Standard library only (runs in the Lambda runtime as is).

Rules (see doc.rs for the authoritative text):
- eventTime parsed as YYYY-MM-DD[T|t| ]HH:MM:SS[.fraction][Z|z|+-HH:MM|+-HHMM|+-HH] (no zone = UTC),
  truncated to milliseconds; index <prefix>-YYYY.MM.DD of that instant in UTC and
  @timestamp = YYYY-MM-DDTHH:MM:SS.mmmZ; missing/unparseable -> <prefix>-undated, no @timestamp.
- a record with its own @timestamp (any value, even null) keeps it; ours is not added.
- _id = eventID when a non-empty string, else "sha256:" + hex sha256 of the canonical JSON
  (keys sorted by code point, no whitespace, numbers as serde_json parses and prints them).
- responseElements.credentials.sessionToken -> "REDACTED" (unless redact=False).
- granularity "month": index <prefix>-YYYY.MM instead of <prefix>-YYYY.MM.DD.
- "@trailsetup" (investigation fields; the index template keeps it out of _source), right after @timestamp,
  unless the record has its own top-level "@trailsetup", and only when not empty:
  {"principal":P,"resources":[..],"fields":[..]} (each key only when it has a value):
  - principal: the first non-empty string of userIdentity.arn, .sessionContext.sessionIssuer.arn, .userName,
    .principalId, .invokedBy, .accountId;
  - resources: every string of at most 256 code points at any depth of requestParameters, responseElements,
    resources, additionalEventData, serviceEventDetails, and for one starting "arn:" also its part after the
    last "/" or ":" (when not empty); sorted by code point, unique;
  - fields: "path=value" for the scalar leaves of the same blobs whose path is one of FIELD_PATHS (strings as
    above, true/false, integers; path = blob name and keys joined by ".", an array step "[]"); sorted, unique;
  - with redaction on, the path responseElements.credentials.sessionToken is not taken;
  - a blob (or userIdentity) serde_json cannot read as a Value (out-of-range number, lone surrogate, more
    than 127 levels from its own root) gives nothing; of a duplicated top-level key the last value counts.
- everything else is the record text as delivered (re-serialised only when redacting).

Where serde_json's behaviour is not Python's, this module copies serde_json 1.0.154 (the version in
Cargo.lock, features default+raw_value: no float_roundtrip, no preserve_order):
- numbers: integers outside u64/i64 and "-0" become f64; floats are parsed the serde_json
  "fast" way (significand as f64, then one multiply/divide by a power of ten), which is not always
  the correctly rounded value Python's float() gives;
- floats are printed as zmij does (shortest digits; plain notation for decimal exponents -5..=15,
  else d.ddde+X / d.ddde-X with no zero padding);
- the redacted body is written with keys sorted at every level (serde_json::Map is a BTreeMap);
- nesting deeper than 127 levels, lone surrogate escapes and out-of-range numbers make the canonical
  form (and the redacted body) fail, as they do for serde_json::Value; so does such a value under a key a later
  duplicate replaced (serde_json reads it before it drops it), and so does a sessionToken value it cannot read;
- a lone surrogate in a top-level key fails the record (doc.rs reads those keys as Rust strings), and, when
  looking for a sessionToken, in a key of responseElements or of its credentials object.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, NamedTuple, Optional

REDACTED = "REDACTED"
UNDATED = "undated"
_WS = " \t\n\r\x0c"  # char::is_ascii_whitespace


class DocError(ValueError):
    """The record cannot become a document (not a JSON object, or JSON serde_json rejects)."""


class Instant(NamedTuple):
    year: int
    month: int
    day: int
    hour: int
    minute: int
    second: int
    milli: int

    def index_suffix(self) -> str:
        return f"{self.year:04d}.{self.month:02d}.{self.day:02d}"

    def index_suffix_for(self, granularity: str) -> str:
        """doc.rs `Instant::index_suffix_for`: "day" -> YYYY.MM.DD, "month" -> YYYY.MM."""
        if granularity == "day":
            return self.index_suffix()
        if granularity == "month":
            return f"{self.year:04d}.{self.month:02d}"
        raise ValueError(f"index granularity must be day or month, not {granularity!r}")

    def rfc3339(self) -> str:
        return (
            f"{self.year:04d}-{self.month:02d}-{self.day:02d}T"
            f"{self.hour:02d}:{self.minute:02d}:{self.second:02d}.{self.milli:03d}Z"
        )


class Doc(NamedTuple):
    index: str
    id: str
    body: bytes  # the document line, without the trailing newline
    time: Optional[Instant]

    def action(self) -> bytes:
        return action_line(self.index, self.id)

    def document(self) -> Any:
        return json.loads(self.body)


# --- time ----------------------------------------------------------------------------------------

_DIGITS = frozenset(b"0123456789")


def _digits(b: bytes) -> Optional[int]:
    if not b or not all(c in _DIGITS for c in b):
        return None
    return int(b)


def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


def _valid_date(y: int, m: int, d: int) -> bool:
    if not 1 <= m <= 12 or d < 1:
        return False
    if m == 2:
        leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
        return d <= (29 if leap else 28)
    return d <= (30 if m in (4, 6, 9, 11) else 31)


def parse_time(s: str) -> Optional[Instant]:
    """Parse an eventTime; None when it is not a date-time we can place."""
    try:
        b = s.encode("utf-8")
    except UnicodeEncodeError:
        return None
    if len(b) < 19 or b[4:5] != b"-" or b[7:8] != b"-" or b[10:11] not in (b"T", b"t", b" ") \
            or b[13:14] != b":" or b[16:17] != b":":
        return None
    parts = [_digits(b[0:4]), _digits(b[5:7]), _digits(b[8:10]), _digits(b[11:13]),
             _digits(b[14:16]), _digits(b[17:19])]
    if any(p is None for p in parts):
        return None
    year, month, day, hour, minute, second = parts  # type: ignore[misc]
    rest = b[19:]
    milli = 0
    if rest[:1] == b".":
        frac = rest[1:]
        n = 0
        while n < len(frac) and frac[n] in _DIGITS:
            n += 1
        if n == 0:
            return None
        milli = int((frac[:min(n, 3)] + b"000")[:3])
        rest = frac[n:]
    if rest in (b"", b"Z", b"z"):
        offset = 0
    elif rest[:1] in (b"+", b"-"):
        tz = rest[1:]
        if len(tz) == 2:
            h, m = _digits(tz), 0
        elif len(tz) == 5 and tz[2:3] == b":":
            h, m = _digits(tz[0:2]), _digits(tz[3:5])
        elif len(tz) == 4:
            h, m = _digits(tz[0:2]), _digits(tz[2:4])
        else:
            return None
        if h is None or m is None or h > 23 or m > 59:
            return None
        offset = (h * 60 + m) * (-1 if rest[:1] == b"-" else 1)
    else:
        return None
    if not _valid_date(year, month, day) or hour > 23 or minute > 59 or second > 59:
        return None
    total = (_days_from_civil(year, month, day) * 1440 + hour * 60 + minute - offset)
    days, mins = divmod(total, 1440)
    y, mo, d = _civil_from_days(days)
    return Instant(y, mo, d, mins // 60, mins % 60, second, milli)


# --- JSON the way serde_json reads and writes it ---------------------------------------------------

class _OutOfRange:
    """A number serde_json::Value refuses (NumberOutOfRange); fine in an ignored field."""

    def __init__(self, text: str) -> None:
        self.text = text


class _Obj(dict):
    """A JSON object that remembers which keys it saw more than once, and the values the later ones replaced
    (serde_json reads those too when it reads the object into a Value: one it cannot read fails the whole Value)."""

    __slots__ = ("dups", "dropped")


def _pairs(pairs: list) -> _Obj:
    o = _Obj()
    dups = set()
    dropped = []
    for k, v in pairs:
        if k in o:
            dups.add(k)
            dropped.append(o[k])
        o[k] = v  # last wins, first position kept (as Python and BTreeMap both do for values)
    o.dups = dups
    o.dropped = dropped
    return o


_U64_MAX = (1 << 64) - 1
_POW10 = [float(f"1e{i}") for i in range(309)]
_NUM = re.compile(r"(-?)(\d+)(?:\.(\d+))?(?:[eE]([-+]?)(\d+))?\Z")


def _f64_from_parts(positive: bool, significand: int, exponent: int) -> Any:
    f = float(significand)
    while True:
        a = abs(exponent)
        if a < len(_POW10):
            if exponent >= 0:
                f *= _POW10[a]
                if f == float("inf"):
                    return None
            else:
                f /= _POW10[a]
            break
        if f == 0.0:
            break
        if exponent >= 0:
            return None
        f /= 1e308
        exponent += 308
    return f if positive else -f


def serde_number(text: str) -> Any:
    """The number serde_json 1.0.154 (no float_roundtrip) reads from `text`: int, float or _OutOfRange."""
    m = _NUM.match(text)
    if not m:
        raise DocError(f"invalid number {text!r}")
    positive = m.group(1) != "-"
    intpart, frac, esign, edigits = m.group(2), m.group(3), m.group(4), m.group(5)
    sig = 0
    exp = 0
    overflowed = False
    for c in intpart:
        if overflowed:
            exp += 1
            continue
        nxt = sig * 10 + (ord(c) - 48)
        if nxt > _U64_MAX:
            overflowed = True
            exp += 1
        else:
            sig = nxt
    if frac is None and edigits is None and not overflowed:
        if positive:
            return sig
        if sig == 0 or sig > (1 << 63):
            return -float(sig)  # "-0" and below i64::MIN become f64
        return -sig
    if frac is not None:
        for c in frac:
            nxt = sig * 10 + (ord(c) - 48)
            if nxt > _U64_MAX:
                break  # parse_decimal_overflow: remaining digits ignored
            sig = nxt
            exp -= 1
    if edigits is not None:
        e = 0
        for c in edigits:
            e = e * 10 + (ord(c) - 48)
            if e > 0x7FFFFFFF:  # parse_exponent_overflow
                if sig != 0 and esign != "-":
                    return _OutOfRange(text)
                return 0.0 if positive else -0.0
        exp = exp - e if esign == "-" else exp + e
        exp = max(-(1 << 31), min((1 << 31) - 1, exp))  # saturating i32
    f = _f64_from_parts(positive, sig, exp)
    return _OutOfRange(text) if f is None else f


def _no_constant(name: str) -> Any:
    raise DocError(f"{name} is not JSON")


def _loads(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_float=serde_number,
                          parse_int=serde_number, parse_constant=_no_constant)
    except DocError:
        raise
    except (ValueError, RecursionError) as e:
        raise DocError(f"record is not valid JSON: {e}") from None


def format_f64(f: float) -> str:
    """serde_json 1.0.154 / zmij formatting of a finite f64."""
    if f == 0.0:
        return "-0.0" if str(f).startswith("-") else "0.0"
    sign = "-" if f < 0 else ""
    r = repr(abs(f))
    mant, _, e = r.partition("e")
    ipart, _, fpart = mant.partition(".")
    digits = (ipart + fpart).lstrip("0")
    # decimal exponent of the first significant digit
    if ipart.strip("0"):
        dec_exp = len(ipart.lstrip("0")) - 1
    else:
        dec_exp = -(len(fpart) - len(fpart.lstrip("0"))) - 1
    dec_exp += int(e) if e else 0
    digits = digits.rstrip("0") or "0"
    n = len(digits)
    if -5 <= dec_exp <= 15:
        if n - 1 <= dec_exp:
            return sign + digits + "0" * (dec_exp + 1 - n) + ".0"
        if dec_exp >= 0:
            return sign + digits[: dec_exp + 1] + "." + digits[dec_exp + 1:]
        return sign + "0." + "0" * (-dec_exp - 1) + digits
    m = digits[0] + ("." + digits[1:] if n > 1 else "")
    return f"{sign}{m}e{'+' if dec_exp >= 0 else '-'}{abs(dec_exp)}"


def json_str(s: str) -> str:
    """A JSON string exactly as serde_json writes it (UTF-8, short escapes, \\u00xx lowercase)."""
    return json.dumps(s, ensure_ascii=False)


def _write(v: Any, out: list, depth: int) -> None:
    if isinstance(v, dict):
        if depth >= 127:
            raise DocError("recursion limit exceeded")
        if not all(_is_value(x, depth + 1) for x in getattr(v, "dropped", ())):
            raise DocError("a duplicated key's earlier value is not a JSON value serde_json reads")
        out.append("{")
        for i, k in enumerate(sorted(v)):
            if i:
                out.append(",")
            out.append(json_str(k))
            out.append(":")
            _write(v[k], out, depth + 1)
        out.append("}")
    elif isinstance(v, list):
        if depth >= 127:
            raise DocError("recursion limit exceeded")
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            _write(x, out, depth + 1)
        out.append("]")
    elif isinstance(v, str):
        out.append(json_str(v))
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif v is None:
        out.append("null")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, float):
        out.append(format_f64(v))
    elif isinstance(v, _OutOfRange):
        raise DocError(f"number out of range: {v.text}")
    else:  # pragma: no cover
        raise TypeError(type(v))


def canonical_bytes(value: Any) -> bytes:
    """Canonical JSON of a parsed record: keys sorted by code point at every level, no whitespace."""
    out: list = []
    _write(value, out, 0)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError:
        raise DocError("lone surrogate in a string") from None


def canonical_id(text: str) -> str:
    """sha256:<hex> of the canonical JSON of a record's text."""
    return "sha256:" + hashlib.sha256(canonical_bytes(_loads(text.strip(_WS)))).hexdigest()


def action_line(index: str, id_: str) -> bytes:
    return ('{"create":{"_index":' + json_str(index) + ',"_id":' + json_str(id_) + "}}").encode("utf-8")


# --- the document ------------------------------------------------------------------------------

def _valid_str(v: Any) -> Optional[str]:
    """v as serde_json would deserialize it into a Rust str (paired surrogates only), else None."""
    if not isinstance(v, str):
        return None
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return v


def _minify(s: str) -> str:
    out = []
    in_str = esc = False
    for c in s:
        if in_str:
            out.append(c)
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif c not in " \n\r\t":
            out.append(c)
    return "".join(out)


def _splice(obj: str, ts: Optional[str], related: Optional[str]) -> str:
    """doc.rs `splice`: {"@timestamp":"..","@trailsetup":{..},<rest of record> (what applies), on one line."""
    inner = obj[1:]
    head = "{"
    first = True
    if ts is not None:
        head += '"@timestamp":"' + ts + '"'
        first = False
    if related is not None:
        if not first:
            head += ","
        head += '"@trailsetup":' + related
        first = False
    if not first and inner.lstrip(_WS)[:1] != "}":
        head += ","
    if "\n" in inner or "\r" in inner:
        inner = _minify(inner)
    return head + inner


# --- investigation fields (doc.rs `investigation_fields`) -------------------------------------------

BLOBS = ("requestParameters", "responseElements", "resources", "additionalEventData", "serviceEventDetails")
MAX_VALUE_CHARS = 256
# doc.rs FIELD_PATHS: the scalar leaves indexed as "path=value" (MFA use, the console login's outcome, the CIDRs of
# security-group, network-ACL and route changes)
FIELD_PATHS = frozenset((
    "additionalEventData.MFAUsed",
    "requestParameters.cidrBlock",
    "requestParameters.cidrIp",
    "requestParameters.destinationCidrBlock",
    "requestParameters.ipPermissions.items[].ipRanges.items[].cidrIp",
    "requestParameters.ipPermissions.items[].ipv6Ranges.items[].cidrIpv6",
    "requestParameters.ipv6CidrBlock",
    "responseElements.ConsoleLogin",
))
_PRINCIPAL_PATHS = (("arn",), ("sessionContext", "sessionIssuer", "arn"), ("userName",), ("principalId",),
                    ("invokedBy",), ("accountId",))
_TOKEN_PATH = "responseElements.credentials.sessionToken"


def _is_value(v: Any, depth: int = 0) -> bool:
    """Whether serde_json reads this parsed JSON into a serde_json::Value on its own (from its own text):
    no out-of-range number, no lone surrogate in a string or key, at most 127 levels (the `_write` rule)."""
    if isinstance(v, dict):
        if depth >= 127:
            return False
        return all(_valid_str(k) is not None and _is_value(x, depth + 1) for k, x in v.items()) \
            and all(_is_value(x, depth + 1) for x in getattr(v, "dropped", ()))
    if isinstance(v, list):
        if depth >= 127:
            return False
        return all(_is_value(x, depth + 1) for x in v)
    if isinstance(v, str):
        return _valid_str(v) is not None
    return not isinstance(v, _OutOfRange)


def _short(s: str) -> bool:
    return len(s) <= MAX_VALUE_CHARS  # code points (a valid str has no lone surrogates), as Rust's chars()


def _walk(v: Any, path: str, redact: bool, resources: set, fields: set) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            p = path + "." + k
            if not (redact and p == _TOKEN_PATH):
                _walk(x, p, redact, resources, fields)
    elif isinstance(v, list):
        p = path + "[]"
        for x in v:
            _walk(x, p, redact, resources, fields)
    elif isinstance(v, str):
        if not _short(v):
            return
        if v.startswith("arn:"):
            rest = v[4:]
            i = max(rest.rfind("/"), rest.rfind(":"))
            cut = rest[i + 1:] if i >= 0 else ""
            if cut:
                resources.add(cut)
        resources.add(v)
        if path in FIELD_PATHS:
            fields.add(path + "=" + v)
    elif isinstance(v, bool):
        if path in FIELD_PATHS:
            fields.add(path + "=" + ("true" if v else "false"))
    elif isinstance(v, int):
        if path in FIELD_PATHS:
            fields.add(path + "=" + str(v))
    # floats, null: nothing


def investigation_fields(rec: dict, redact: bool = True) -> Optional[str]:
    """The "@trailsetup" object of a parsed record as JSON text; None when empty or the record has its own."""
    if "@trailsetup" in rec:
        return None
    principal = None
    ui = rec.get("userIdentity")
    if "userIdentity" in rec and _is_value(ui):
        for p in _PRINCIPAL_PATHS:
            v = ui
            for k in p:
                v = v.get(k) if isinstance(v, dict) else None
            if isinstance(v, str) and v:
                principal = v
                break
    resources: set = set()
    fields: set = set()
    for name in BLOBS:
        if name in rec and _is_value(rec[name]):
            _walk(rec[name], name, redact, resources, fields)
    if principal is None and not resources and not fields:
        return None
    parts = []
    if principal is not None:
        parts.append('"principal":' + json_str(principal))
    for key, vals in (("resources", resources), ("fields", fields)):
        if vals:
            parts.append(json_str(key) + ":[" + ",".join(json_str(x) for x in sorted(vals)) + "]")
    return "{" + ",".join(parts) + "}"


def _has_session_token(rec: _Obj) -> bool:
    if "responseElements" in rec.dups:
        raise DocError("duplicate field `responseElements`")
    re_ = rec.get("responseElements")
    if not isinstance(re_, dict):
        return False
    # doc.rs reads the keys of these two objects as Rust strings: a lone surrogate fails the record
    if any(_valid_str(k) is None for k in re_):
        raise DocError("lone surrogate in a key of responseElements")
    if "credentials" in re_.dups:
        raise DocError("duplicate field `credentials`")
    c = re_.get("credentials")
    if not isinstance(c, dict):
        return False
    if any(_valid_str(k) is None for k in c):
        raise DocError("lone surrogate in a key of responseElements.credentials")
    if "sessionToken" in c.dups:
        raise DocError("duplicate field `sessionToken`")
    return c.get("sessionToken") is not None


def build(text: str, prefix: str = "cloudtrail", redact: bool = True, granularity: str = "day") -> Doc:
    """Build the document for one record's JSON text (doc.rs `append_bulk`); granularity "day" or "month"."""
    if granularity not in ("day", "month"):
        raise ValueError(f"index granularity must be day or month, not {granularity!r}")
    text = text.strip(_WS)
    if not text.startswith("{"):
        raise DocError("record is not a JSON object")
    rec = _loads(text)
    # doc.rs reads every top-level key as a Rust string: a lone surrogate in one fails the record
    if any(_valid_str(k) is None for k in rec):
        raise DocError("lone surrogate in a top-level key")
    for f in ("eventID", "eventTime", "@timestamp"):
        if f in rec.dups:
            raise DocError(f"duplicate field `{f}`")
    et = _valid_str(rec.get("eventTime"))
    time = parse_time(et) if et is not None else None
    index = f"{prefix}-{time.index_suffix_for(granularity)}" if time else f"{prefix}-{UNDATED}"
    eid = _valid_str(rec.get("eventID"))
    id_ = eid if eid else "sha256:" + hashlib.sha256(canonical_bytes(rec)).hexdigest()

    needs_redaction = redact and '"sessionToken"' in text and _has_session_token(rec)
    # Present at all, even as null: the record's own field is kept and ours is not added (no duplicate key).
    add_ts = time.rfc3339() if time is not None and "@timestamp" not in rec else None
    # From the record as parsed, before the redaction below (whose path it skips when redacting).
    related = investigation_fields(rec, redact)
    if needs_redaction:
        # doc.rs reads the whole record as delivered into a serde_json Map before it replaces the token: a token
        # serde_json cannot read (lone surrogate, out-of-range number, too deep) fails the record there too.
        if not _is_value(rec["responseElements"]["credentials"]["sessionToken"], 3):
            raise DocError("sessionToken is not a JSON value serde_json reads")
        rec["responseElements"]["credentials"]["sessionToken"] = REDACTED
        body = _splice(canonical_bytes(rec).decode("utf-8"), add_ts, related)
    else:
        body = _splice(text, add_ts, related)
    try:
        raw = body.encode("utf-8")
    except UnicodeEncodeError:  # only reachable from a str that did not come from UTF-8 text
        raise DocError("record text is not UTF-8") from None
    return Doc(index, id_, raw, time)
