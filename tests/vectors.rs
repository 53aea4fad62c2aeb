//! The shared test vectors (tests/vectors/vectors.jsonl): record in → index, `_id`, document out. The Python
//! forwarder (templates/forwarder/ctdoc.py) runs the same file, so both paths build the same documents.

use trailsetup::ingest::doc::{append_bulk, DocRules, Granularity};

#[derive(serde::Deserialize)]
struct Vector {
    name: String,
    prefix: String,
    record_text: String,
    index: Option<String>,
    id: Option<String>,
    document: Option<serde_json::Value>,
    /// The exact document line (byte-for-byte what both builders send).
    document_text: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    /// Index granularity, `day` (the default) or `month`.
    #[serde(default)]
    granularity: Granularity,
}

#[test]
fn shared_vectors() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/vectors.jsonl")).unwrap();
    let mut checked = 0;
    let mut fixtures = 0;
    for line in text.lines() {
        let v: Vector = serde_json::from_str(line).unwrap();
        let rules = DocRules { prefix: v.prefix.clone(), redact: true, granularity: v.granularity };
        let mut out = Vec::new();
        let r = append_bulk(&rules, &v.record_text, &mut out);
        match (&v.document, r) {
            (Some(want), Ok(doc)) => {
                assert_eq!(Some(&doc.index), v.index.as_ref(), "{}: index", v.name);
                assert_eq!(Some(&doc.id), v.id.as_ref(), "{}: _id", v.name);
                let s = std::str::from_utf8(&out).unwrap();
                let mut lines = s.split('\n');
                let action: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
                assert_eq!(action["create"]["_index"], doc.index.as_str());
                assert_eq!(action["create"]["_id"], doc.id.as_str());
                let body = lines.next().unwrap();
                assert_eq!(Some(body), v.document_text.as_deref(), "{}: document bytes", v.name);
                // A body must be valid JSON without duplicate keys (OpenSearch refuses duplicates).
                let got: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{}: {e}: {body}", v.name));
                // Parsed equality too, except where Python's float parsing differs from serde_json's
                // (the bytes above are the contract).
                if !v.name.starts_with("edge:floats") {
                    assert_eq!(&got, want, "{}: document", v.name);
                }
                assert_eq!(lines.next(), Some(""), "{}: one line per document", v.name);
            }
            (None, Err(_)) => {}
            (Some(_), Err(e)) => panic!("{}: expected a document, got error {e}", v.name),
            (None, Ok(d)) => panic!("{}: expected an error ({:?}), got a document for {}", v.name, v.error, d.index),
        }
        checked += 1;
        fixtures += usize::from(v.name.starts_with("fixture:"));
    }
    assert_eq!(fixtures, 1505);
    assert!(checked > 1505);
}
