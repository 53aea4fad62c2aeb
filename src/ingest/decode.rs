//! Reading one log file: gzip (by magic bytes, multi-member) or plain JSON, streamed, split into records.
//!
//! A CloudTrail log file is `{"Records":[{...},{...}]}`. The file is never held whole: a scanner walks the
//! decompressed stream and hands each element of `Records` to the caller as one slice of bytes, so memory stays
//! at the size of one record however big the file is.

use std::io::{self, BufRead, BufReader, Read};

use flate2::bufread::MultiGzDecoder;

/// Why a file was not read as a log file at all (counted as skipped, with this reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    Empty,
    Digest,
    NotCloudTrail(String),
    NotJson(String),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Empty => f.write_str("empty file"),
            Skip::Digest => f.write_str("CloudTrail digest file (integrity data, no events)"),
            Skip::NotCloudTrail(why) => write!(f, "not a CloudTrail log file: {why}"),
            Skip::NotJson(why) => write!(f, "not JSON: {why}"),
        }
    }
}

/// How reading a file ended.
#[derive(Debug)]
pub enum Outcome {
    /// A log file, read to its end; `records` elements were handed over.
    Log { records: u64 },
    /// Not a log file; nothing was handed over.
    Skipped(Skip),
    /// The consumer asked to stop after `records` elements.
    Stopped { records: u64 },
    /// A log file damaged part way: the first `records` elements were handed over, the rest is lost.
    Damaged { records: u64, reason: String },
}

/// Records larger than this are not held in memory: the first bytes go to the quarantine with the size, and
/// the rest of the record is read past. (CloudTrail's own records are far smaller; OpenSearch refuses a request
/// body over `http.max_content_length`, 10 MiB on the smallest Amazon OpenSearch Service instance types.)
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// One element of `Records` as the scanner hands it over.
pub enum Rec<'a> {
    Whole(&'a [u8]),
    /// Over the size limit: its first `head.len()` bytes (at most the limit), and its full size in bytes.
    TooBig { head: &'a [u8], size: u64 },
}

/// What the record callback may say.
pub enum Flow {
    Continue,
    /// Stop reading (the consumer gave up, e.g. the run is shutting down).
    Stop,
}

/// Decode `input` (gzip or plain) and call `on_record` with the bytes of each element of `Records`.
pub fn read_log<R: Read>(input: R, on_record: impl FnMut(Rec<'_>) -> Flow) -> Outcome {
    read_log_capped(input, MAX_RECORD_BYTES, on_record)
}

/// `read_log` with a record size limit of `cap` bytes.
pub fn read_log_capped<R: Read>(input: R, cap: usize, on_record: impl FnMut(Rec<'_>) -> Flow) -> Outcome {
    let mut br = BufReader::with_capacity(256 * 1024, input);
    let gz = match br.fill_buf() {
        Ok([]) => return Outcome::Skipped(Skip::Empty),
        Ok(b) => b.len() >= 2 && b[0] == 0x1f && b[1] == 0x8b,
        Err(e) => return Outcome::Damaged { records: 0, reason: format!("read error: {e}") },
    };
    if gz {
        let dec = MultiGzDecoder::new(br);
        scan(Scanner::new(BufReader::with_capacity(256 * 1024, dec), true, cap), on_record)
    } else {
        scan(Scanner::new(br, false, cap), on_record)
    }
}

struct Scanner<R: BufRead> {
    r: R,
    gz: bool,
    /// Bytes consumed so far (for messages).
    pos: u64,
    /// The most a value copied out may hold; bytes past it are counted in `dropped`, not kept.
    cap: usize,
    dropped: u64,
}

/// Append `bytes` to `out` up to `cap` bytes in all; count the rest in `dropped`.
fn put(out: &mut Vec<u8>, bytes: &[u8], cap: usize, dropped: &mut u64) {
    let room = cap.saturating_sub(out.len()).min(bytes.len());
    out.extend_from_slice(&bytes[..room]);
    *dropped += (bytes.len() - room) as u64;
}

#[derive(Debug)]
enum ScanErr {
    Io(io::Error),
    Eof,
    Syntax(String),
}

impl From<io::Error> for ScanErr {
    fn from(e: io::Error) -> Self {
        ScanErr::Io(e)
    }
}

impl<R: BufRead> Scanner<R> {
    fn new(r: R, gz: bool, cap: usize) -> Self {
        Scanner { r, gz, pos: 0, cap, dropped: 0 }
    }

    fn bump(&mut self) {
        self.r.consume(1);
        self.pos += 1;
    }

    /// Next byte that is not whitespace (not consumed).
    fn peek_token(&mut self) -> Result<u8, ScanErr> {
        loop {
            let buf = self.r.fill_buf()?;
            if buf.is_empty() {
                return Err(ScanErr::Eof);
            }
            let n = buf.iter().take_while(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t')).count();
            if n < buf.len() {
                let c = buf[n];
                self.r.consume(n);
                self.pos += n as u64;
                return Ok(c);
            }
            let l = buf.len();
            self.r.consume(l);
            self.pos += l as u64;
        }
    }

    fn expect(&mut self, want: u8) -> Result<(), ScanErr> {
        let c = self.peek_token()?;
        if c != want {
            return Err(ScanErr::Syntax(format!("expected '{}' at byte {}, found '{}'", want as char, self.pos, c.escape_ascii())));
        }
        self.bump();
        Ok(())
    }

    /// Copy one JSON value (object, array, string or scalar) into `out`, checking only its nesting; the
    /// consumer parses it properly.
    fn take_value(&mut self, out: &mut Vec<u8>) -> Result<(), ScanErr> {
        let first = self.peek_token()?;
        match first {
            b'{' | b'[' => self.take_nested(out),
            b'"' => {
                put(out, b"\"", self.cap, &mut self.dropped);
                self.bump();
                self.take_string_rest(out)
            }
            _ => {
                // number, true, false, null: up to the next delimiter
                loop {
                    let buf = match self.r.fill_buf()? {
                        [] => return Ok(()), // a bare scalar at the end of input
                        b => b,
                    };
                    let n = buf
                        .iter()
                        .take_while(|c| !matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                        .count();
                    put(out, &buf[..n], self.cap, &mut self.dropped);
                    let done = n < buf.len();
                    self.r.consume(n);
                    self.pos += n as u64;
                    if done {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// After the opening quote: copy through the closing quote.
    fn take_string_rest(&mut self, out: &mut Vec<u8>) -> Result<(), ScanErr> {
        let mut esc = false;
        loop {
            let buf = self.r.fill_buf()?;
            if buf.is_empty() {
                return Err(ScanErr::Eof);
            }
            let mut i = 0;
            let mut end = None;
            while i < buf.len() {
                if esc {
                    esc = false;
                    i += 1;
                    continue;
                }
                match memchr::memchr2(b'"', b'\\', &buf[i..]) {
                    None => {
                        i = buf.len();
                    }
                    Some(j) => {
                        let k = i + j;
                        if buf[k] == b'\\' {
                            esc = true;
                            i = k + 1;
                        } else {
                            end = Some(k + 1);
                            break;
                        }
                    }
                }
            }
            let n = end.unwrap_or(buf.len());
            put(out, &buf[..n], self.cap, &mut self.dropped);
            self.r.consume(n);
            self.pos += n as u64;
            if end.is_some() {
                return Ok(());
            }
        }
    }

    fn take_nested(&mut self, out: &mut Vec<u8>) -> Result<(), ScanErr> {
        let mut depth = 0usize;
        loop {
            let buf = self.r.fill_buf()?;
            if buf.is_empty() {
                return Err(ScanErr::Eof);
            }
            let mut i = 0;
            // What stopped the scan of this buffer: the value closed, a string starts, or the buffer ended.
            let mut stop = None;
            while i < buf.len() {
                match buf[i] {
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            stop = Some(true);
                            i += 1;
                            break;
                        }
                    }
                    b'"' => {
                        stop = Some(false);
                        i += 1;
                        break;
                    }
                    _ => {}
                }
                i += 1;
            }
            put(out, &buf[..i], self.cap, &mut self.dropped);
            self.r.consume(i);
            self.pos += i as u64;
            match stop {
                Some(true) => return Ok(()),
                Some(false) => self.take_string_rest(out)?,
                None => {}
            }
        }
    }

    fn read_key(&mut self, scratch: &mut Vec<u8>) -> Result<String, ScanErr> {
        scratch.clear();
        if self.peek_token()? != b'"' {
            return Err(ScanErr::Syntax(format!("expected a key at byte {}", self.pos)));
        }
        self.take_value(scratch)?;
        serde_json::from_slice::<String>(scratch).map_err(|e| ScanErr::Syntax(format!("bad key: {e}")))
    }
}

fn scan<R: BufRead>(mut s: Scanner<R>, mut on_record: impl FnMut(Rec<'_>) -> Flow) -> Outcome {
    let mut records = 0u64;
    let mut saw_records = false;
    let mut stopped = false;
    let mut keys: Vec<String> = Vec::new();
    let mut rec = Vec::with_capacity(16 * 1024);
    let mut scratch = Vec::new();

    let damaged = |records: u64, e: ScanErr, gz: bool, pos: u64| -> Outcome {
        let reason = match e {
            ScanErr::Eof => format!("truncated: the file ends inside the JSON (after {pos} bytes)"),
            ScanErr::Io(e) if gz => format!("corrupt gzip data: {e}"),
            ScanErr::Io(e) => format!("read error: {e}"),
            ScanErr::Syntax(m) => format!("invalid JSON: {m}"),
        };
        Outcome::Damaged { records, reason }
    };

    // Top level.
    let first = match s.peek_token() {
        Ok(c) => c,
        Err(ScanErr::Eof) => return Outcome::Skipped(Skip::Empty),
        Err(e) => return damaged(0, e, s.gz, s.pos),
    };
    if first != b'{' {
        return if first == b'[' || first == b'"' || first.is_ascii_digit() || first == b'-' {
            Outcome::Skipped(Skip::NotCloudTrail("the JSON is not an object with a Records array".into()))
        } else {
            Outcome::Skipped(Skip::NotJson(format!("starts with byte 0x{first:02x}")))
        };
    }
    s.bump();
    let result: Result<(), ScanErr> = (|| {
        if s.peek_token()? == b'}' {
            s.bump();
            return Ok(());
        }
        loop {
            let key = s.read_key(&mut scratch)?;
            s.expect(b':')?;
            if key == "Records" && s.peek_token()? == b'[' {
                saw_records = true;
                s.bump();
                if s.peek_token()? == b']' {
                    s.bump();
                } else {
                    loop {
                        rec.clear();
                        s.dropped = 0;
                        s.take_value(&mut rec)?;
                        // The element must be followed by ',' or ']' before it counts as whole.
                        let c = s.peek_token()?;
                        if c != b',' && c != b']' {
                            return Err(ScanErr::Syntax(format!("expected ',' or ']' at byte {}", s.pos)));
                        }
                        records += 1;
                        let r = match s.dropped {
                            0 => Rec::Whole(&rec),
                            d => Rec::TooBig { head: &rec, size: rec.len() as u64 + d },
                        };
                        if let Flow::Stop = on_record(r) {
                            stopped = true;
                            return Ok(());
                        }
                        s.bump();
                        if c == b']' {
                            break;
                        }
                    }
                }
            } else {
                keys.push(key);
                scratch.clear();
                s.take_value(&mut scratch)?;
            }
            match s.peek_token()? {
                b',' => s.bump(),
                b'}' => {
                    s.bump();
                    return Ok(());
                }
                c => return Err(ScanErr::Syntax(format!("expected ',' or '}}' at byte {}, found '{}'", s.pos, c.escape_ascii()))),
            }
        }
    })();
    match result {
        Ok(()) if stopped => Outcome::Stopped { records },
        Ok(()) if saw_records => {
            // Trailing garbage after the object means the file is not what it claims to be.
            match s.peek_token() {
                Err(ScanErr::Eof) => Outcome::Log { records },
                Ok(c) => Outcome::Damaged { records, reason: format!("unexpected byte 0x{c:02x} after the JSON object at byte {}", s.pos) },
                Err(e) => damaged(records, e, s.gz, s.pos),
            }
        }
        Ok(()) => {
            if keys.iter().any(|k| k == "digestStartTime" || k == "digestS3Object") {
                Outcome::Skipped(Skip::Digest)
            } else {
                let mut shown: Vec<&str> = keys.iter().map(String::as_str).take(5).collect();
                if shown.is_empty() {
                    shown.push("(none)");
                }
                Outcome::Skipped(Skip::NotCloudTrail(format!("no Records array; top-level keys: {}", shown.join(", "))))
            }
        }
        Err(e) if saw_records || records > 0 => damaged(records, e, s.gz, s.pos),
        Err(ScanErr::Syntax(m)) if keys.is_empty() => Outcome::Skipped(Skip::NotJson(m)),
        Err(e) => damaged(records, e, s.gz, s.pos),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(bytes: &[u8]) -> (Outcome, Vec<String>) {
        let mut v = Vec::new();
        let o = read_log(bytes, |r| {
            let Rec::Whole(r) = r else { panic!("no record here is over the limit") };
            v.push(String::from_utf8(r.to_vec()).unwrap());
            Flow::Continue
        });
        (o, v)
    }

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn splits_records() {
        let text = br#" {"Records": [ {"a":"x}]\"y","b":[1,{"c":2}]} , {"d":null},"s",3 ] } "#;
        let (o, v) = collect(text);
        assert!(matches!(o, Outcome::Log { records: 4 }), "{o:?}");
        assert_eq!(v, vec![r#"{"a":"x}]\"y","b":[1,{"c":2}]}"#, r#"{"d":null}"#, r#""s""#, "3"]);
    }

    #[test]
    fn gzip_multi_member() {
        let whole = br#"{"Records":[{"a":1},{"b":2}]}"#;
        let mut bytes = gz(&whole[..15]);
        bytes.extend(gz(&whole[15..]));
        let (o, v) = collect(&bytes);
        assert!(matches!(o, Outcome::Log { records: 2 }), "{o:?}");
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn skips_with_reasons() {
        assert!(matches!(collect(b"").0, Outcome::Skipped(Skip::Empty)));
        assert!(matches!(collect(&gz(b"")).0, Outcome::Skipped(Skip::Empty)));
        assert!(matches!(collect(br#"{"awsAccountId":"1","digestStartTime":"x"}"#).0, Outcome::Skipped(Skip::Digest)));
        assert!(matches!(collect(br#"{"foo":1}"#).0, Outcome::Skipped(Skip::NotCloudTrail(_))));
        assert!(matches!(collect(br#"[1,2]"#).0, Outcome::Skipped(Skip::NotCloudTrail(_))));
        assert!(matches!(collect(b"hello world").0, Outcome::Skipped(Skip::NotJson(_))));
        assert!(matches!(collect(br#"{"Records":null}"#).0, Outcome::Skipped(Skip::NotCloudTrail(_))));
    }

    #[test]
    fn damage_is_reported_with_what_was_read() {
        let (o, v) = collect(br#"{"Records":[{"a":1},{"b":2},{"c":"#);
        assert!(matches!(o, Outcome::Damaged { records: 2, .. }), "{o:?}");
        assert_eq!(v.len(), 2);
        let mut z = gz(br#"{"Records":[{"a":1},{"b":2}]}"#);
        let n = z.len();
        z[n / 2] ^= 0xff;
        z[n / 2 + 1] ^= 0xff;
        match collect(&z).0 {
            Outcome::Damaged { reason, .. } => assert!(reason.contains("gzip") || reason.contains("JSON") || reason.contains("truncated"), "{reason}"),
            o => panic!("{o:?}"),
        }
        let z = gz(br#"{"Records":[{"a":1},{"b":2}]}"#);
        assert!(matches!(collect(&z[..z.len() - 10]).0, Outcome::Damaged { .. }));
        assert!(matches!(collect(br#"{"Records":[{"a":1}]} trailing"#).0, Outcome::Damaged { records: 1, .. }));
    }

    #[test]
    fn a_record_over_the_limit_is_read_past_not_held() {
        // a 1 MiB string inside the second record, with a cap of 4 KiB: its head and size come out, and the
        // records around it are whole
        let big = "x".repeat(1 << 20);
        let text = format!(r#"{{"Records":[{{"a":1}},{{"eventID":"big","s":"{big}","n":[1,{{"m":"]}}"}}]}},{{"b":2}}]}}"#);
        let mut whole = Vec::new();
        let mut too_big = Vec::new();
        for input in [text.as_bytes().to_vec(), gz(text.as_bytes())] {
            whole.clear();
            too_big.clear();
            let o = read_log_capped(&input[..], 4096, |r| {
                match r {
                    Rec::Whole(b) => whole.push(String::from_utf8(b.to_vec()).unwrap()),
                    Rec::TooBig { head, size } => too_big.push((head.len(), size, head.starts_with(br#"{"eventID":"big""#))),
                }
                Flow::Continue
            });
            assert!(matches!(o, Outcome::Log { records: 3 }), "{o:?}");
            assert_eq!(whole, vec![r#"{"a":1}"#, r#"{"b":2}"#]);
            let size = (text.len() - r#"{"Records":[{"a":1},,{"b":2}]}"#.len()) as u64;
            assert_eq!(too_big, vec![(4096, size, true)]);
        }
    }
}
