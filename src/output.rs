//! Where text, JSON and progress go: results on stdout, everything else on stderr.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::settings::Common;

#[derive(Clone)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
    /// When set, the JSON document is kept here instead of printed (a command nested in another's output).
    capture: Option<std::sync::Arc<std::sync::Mutex<Option<serde_json::Value>>>>,
}

impl Output {
    pub fn new(c: &Common) -> Output {
        Output { json: c.json(), quiet: c.quiet > 0, capture: None }
    }

    /// The same output, but the JSON document is captured for the caller to nest in its own.
    pub fn capturing(&self) -> Output {
        Output { capture: Some(Default::default()), ..self.clone() }
    }

    /// The captured JSON document, if any.
    pub fn captured(&self) -> Option<serde_json::Value> {
        self.capture.as_ref().and_then(|c| c.lock().unwrap_or_else(|p| p.into_inner()).take())
    }

    /// A human line on stdout (suppressed in JSON mode, where stdout holds one document).
    pub fn line(&self, s: impl AsRef<str>) {
        if !self.json {
            let _ = writeln!(std::io::stdout().lock(), "{}", s.as_ref());
        }
    }

    /// A note on stderr (suppressed by -q).
    pub fn note(&self, s: impl AsRef<str>) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr().lock(), "{}", s.as_ref());
        }
    }

    /// The one JSON document of a `--output json` run.
    pub fn json_doc(&self, v: &serde_json::Value) {
        if let Some(c) = &self.capture {
            *c.lock().unwrap_or_else(|p| p.into_inner()) = Some(v.clone());
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut out, v);
        let _ = writeln!(out);
    }

    /// A progress bar on stderr when it is a terminal and output is human; hidden otherwise.
    pub fn progress(&self, len: u64, what: &str) -> ProgressBar {
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if self.json || self.quiet || !std::io::stderr().is_terminal() {
            pb.set_draw_target(ProgressDrawTarget::hidden());
        }
        pb.set_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {what} · {{msg}} · ETA {{eta}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb.enable_steady_tick(Duration::from_millis(200));
        pb
    }

    /// A spinner with the elapsed time, for a bounded wait (hidden without a TTY and with `--output json`).
    pub fn spinner(&self, what: &str) -> ProgressBar {
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if self.json || self.quiet || !std::io::stderr().is_terminal() {
            pb.set_draw_target(ProgressDrawTarget::hidden());
        }
        pb.set_style(ProgressStyle::with_template(&format!("{{spinner}} {what} ({{elapsed}})")).unwrap_or_else(|_| ProgressStyle::default_spinner()));
        pb.enable_steady_tick(Duration::from_millis(200));
        pb
    }
}

/// 12345678 → "12,345,678"
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{n} B") } else { format!("{v:.1} {}", U[i]) }
}
