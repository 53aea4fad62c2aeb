//! The stack's lock, kept in the account: two `init` (or `destroy`) runs on one stack never change it at once.
//!
//! The lock is the SSM Parameter Store parameter `/trailsetup/<stack>/lock` in the stack's home region. Taking it is
//! `PutParameter` with `Overwrite=false`: AWS creates the parameter only when it does not exist, and answers
//! `ParameterAlreadyExists` otherwise ("Overwrite: Overwrite an existing parameter. The default value is false";
//! errors: "ParameterAlreadyExists — The parameter already exists. You can't create duplicate parameters." —
//! Systems Manager API Reference, "PutParameter",
//! <https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html>). Releasing it is
//! `DeleteParameter` (<https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_DeleteParameter.html>),
//! after reading that the value is still ours (SSM has no conditional delete: the read and the delete are two calls,
//! which matters only when someone force-unlocked us meanwhile).
//!
//! Why a parameter and not an S3 object written with `If-None-Match`: it needs no bucket, so the very first `init`
//! (before the stack's bucket exists) and `--use-trail` (whose bucket is often another account's) lock the same way.
//!
//! The value says who holds it: `{"holder": caller ARN, "host", "pid", "since": RFC 3339, "command"}`. A run that
//! finds the lock held waits, polling with the schedule of [`crate::aws::eventual`], up to `--lock-timeout`, then
//! fails naming the holder; `--force-unlock` removes a stale lock (a killed CI job's) first. The lock is released
//! on success, on every error (the caller keeps it in a [`Held`] slot and releases it explicitly, never in `Drop`),
//! and on Ctrl-C/SIGTERM ([`release_on_signal`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use serde::{Deserialize, Serialize};

use crate::aws::eventual::{until, Polled};
use crate::aws::rpc::{self, Params};
use crate::output::Output;

/// `--lock-timeout` when not given: how long a run waits for another to finish.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A lock older than this is reported by `status` (no `init` or `destroy` takes that long but a new domain's).
pub const STALE_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// The IAM actions taking, reading and releasing the lock need, on [`parameter_arn`].
pub const ACTIONS: &[&str] = &["ssm:PutParameter", "ssm:GetParameter", "ssm:DeleteParameter"];

/// The lock's parameter name.
pub fn parameter_name(stack: &str) -> String {
    format!("/trailsetup/{stack}/lock")
}

/// The lock's parameter ARN (a name starting with `/` loses it in the ARN: IAM User Guide, "Actions, resources,
/// and condition keys for AWS Systems Manager" → parameter `arn:${Partition}:ssm:${Region}:${Account}:parameter/${ParameterNameWithoutLeadingSlash}`).
pub fn parameter_arn(partition: &str, home: &str, account: &str, stack: &str) -> String {
    format!("arn:{partition}:ssm:{home}:{account}:parameter/trailsetup/{stack}/lock")
}

/// How a run takes the lock.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long to wait for a lock another run holds (zero: fail at once).
    pub timeout: Duration,
    /// Remove the lock first, whoever holds it.
    pub force_unlock: bool,
}

/// Who holds the lock: the parameter's value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub holder: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub command: String,
}

impl Holder {
    /// This process, running `command` as `caller`.
    pub fn me(caller: &str, command: &str) -> Holder {
        Holder {
            holder: caller.to_string(),
            host: hostname(),
            pid: std::process::id(),
            since: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command: command.to_string(),
        }
    }

    /// A value that is not ours (written by hand, or by another tool): shown as it is, with the parameter's date.
    fn foreign(value: &str, modified: Option<String>) -> Holder {
        Holder { holder: value.chars().take(200).collect(), host: String::new(), pid: 0, since: modified.unwrap_or_default(), command: String::new() }
    }

    /// `arn:… (host ci-runner-7, pid 4242, `trailsetup init`) since 2026-12-07T10:00:00Z`
    pub fn describe(&self) -> String {
        let mut what = Vec::new();
        if !self.host.is_empty() {
            what.push(format!("host {}", self.host));
        }
        if self.pid != 0 {
            what.push(format!("pid {}", self.pid));
        }
        if !self.command.is_empty() {
            what.push(format!("`{}`", self.command));
        }
        let what = if what.is_empty() { String::new() } else { format!(" ({})", what.join(", ")) };
        let since = if self.since.is_empty() { "an unknown time".to_string() } else { self.since.clone() };
        let age = self.age().map(|a| format!(", {} ago", human(a))).unwrap_or_default();
        format!("{}{what} since {since}{age}", self.holder)
    }

    /// How long it has been held, when `since` is a time.
    pub fn age(&self) -> Option<chrono::TimeDelta> {
        let since = chrono::DateTime::parse_from_rfc3339(&self.since).ok()?;
        Some(chrono::Utc::now().signed_duration_since(since))
    }
}

fn human(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}

/// The machine's name, for the lock's value (what a person looks for: which runner holds it).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The lock this run holds. Release it with [`Lock::release`]; it is not released on drop.
#[derive(Debug)]
pub struct Lock {
    /// the stack's home region's config: SSM is called through [`rpc`] (the SSM SDK crate cost a cold build 184 s
    /// for these three calls)
    ssm: SdkConfig,
    stack: String,
    name: String,
    value: String,
}

/// The slot a run keeps its lock in, shared with the signal handler, so that every way out (success, an error, a
/// signal) can take the lock from it and release it, exactly once.
#[derive(Debug, Clone, Default)]
pub struct Held(Arc<Mutex<Option<Lock>>>);

impl Held {
    pub fn set(&self, lock: Lock) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(lock);
    }

    pub fn take(&self) -> Option<Lock> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Release the lock if it is still held here; a failure is said on stderr (the run's own result stands) with
    /// what to do.
    pub async fn release(&self) {
        if let Some(l) = self.take() {
            let stack = l.stack.clone();
            if let Err(e) = l.release().await {
                eprintln!("warning: the lock of stack {stack} was not released ({e:#}); the next run removes it with --force-unlock");
            }
        }
    }
}

/// Read the lock: `None` when nobody holds it. (Systems Manager API Reference, "GetParameter": the answer's
/// `Parameter` with `Value` and `LastModifiedDate`, epoch seconds in the JSON protocol.)
async fn read(ssm: &SdkConfig, name: &str) -> anyhow::Result<Option<(Holder, String)>> {
    match rpc::call(ssm, &rpc::SSM, "GetParameter", Params::Json(serde_json::json!({"Name": name}))).await {
        Ok(body) => {
            let r: serde_json::Value = serde_json::from_str(&body).map_err(|e| anyhow::anyhow!("reading the stack's lock (SSM parameter {name}): SSM's answer could not be read: {e}"))?;
            let Some(p) = r.get("Parameter") else { return Ok(None) };
            let value = p.get("Value").and_then(|v| v.as_str()).unwrap_or_default().to_string();
            let holder = serde_json::from_str::<Holder>(&value).unwrap_or_else(|_| {
                let modified = p
                    .get("LastModifiedDate")
                    .and_then(|d| d.as_f64())
                    .and_then(|secs| chrono::DateTime::from_timestamp(secs as i64, 0))
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                Holder::foreign(&value, modified)
            });
            Ok(Some((holder, value)))
        }
        Err(e) if e.code() == Some("ParameterNotFound") => Ok(None),
        Err(e) => Err(e.explain(&format!("reading the stack's lock (SSM parameter {name})"), "ssm:GetParameter")),
    }
}

/// Who holds the lock of `stack` (in the home region `cfg` is for), if anyone: for `status`.
pub async fn holder(cfg: &SdkConfig, stack: &str) -> anyhow::Result<Option<Holder>> {
    Ok(read(cfg, &parameter_name(stack)).await?.map(|(h, _)| h))
}

/// One attempt: `None` when the lock is now ours, else who holds it.
async fn try_take(ssm: &SdkConfig, name: &str, value: &str) -> anyhow::Result<Option<Holder>> {
    // a lock released between our create and our read is taken again at once (at most a few times)
    for _ in 0..3 {
        let params = serde_json::json!({
            "Name": name,
            "Value": value,
            "Type": "String",
            "Overwrite": false,
            "Description": "trailsetup: the run changing this stack holds it (deleted when the run ends)",
        });
        match rpc::call(ssm, &rpc::SSM, "PutParameter", Params::Json(params)).await {
            Ok(_) => return Ok(None),
            Err(e) if e.code() == Some("ParameterAlreadyExists") => {
                if let Some((h, _)) = read(ssm, name).await? {
                    return Ok(Some(h));
                }
            }
            Err(e) => return Err(e.explain(&format!("taking the stack's lock (SSM PutParameter {name})"), "ssm:PutParameter")),
        }
    }
    Ok(Some(Holder::foreign("(a lock taken and released repeatedly)", None)))
}

/// Remove the lock of `stack`, whoever holds it (`--force-unlock`), saying whose it was.
async fn force_unlock(ssm: &SdkConfig, stack: &str, out: &Output) -> anyhow::Result<()> {
    let name = parameter_name(stack);
    match read(ssm, &name).await? {
        None => out.note(format!("--force-unlock: stack {stack} was not locked.")),
        Some((h, _)) => {
            delete(ssm, &name).await?;
            out.note(format!("--force-unlock: removed the lock of stack {stack} held by {}.", h.describe()));
        }
    }
    Ok(())
}

async fn delete(ssm: &SdkConfig, name: &str) -> anyhow::Result<()> {
    match rpc::call(ssm, &rpc::SSM, "DeleteParameter", Params::Json(serde_json::json!({"Name": name}))).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("ParameterNotFound") => Ok(()),
        Err(e) => Err(e.explain(&format!("releasing the stack's lock (SSM DeleteParameter {name})"), "ssm:DeleteParameter")),
    }
}

/// Take the lock of `stack` for `command`, run by `caller`; `cfg` is for the stack's home region. Waits while
/// another run holds it (saying so once on stderr), up to `opts.timeout`; then fails naming the holder.
pub async fn acquire(cfg: &SdkConfig, stack: &str, caller: &str, command: &str, opts: &Options, out: &Output) -> anyhow::Result<Lock> {
    let ssm = cfg.clone();
    let name = parameter_name(stack);
    if opts.force_unlock {
        force_unlock(&ssm, stack, out).await?;
    }
    let value = serde_json::to_string(&Holder::me(caller, command))?;
    let lock = || Lock { ssm: ssm.clone(), stack: stack.to_string(), name: name.clone(), value: value.clone() };
    let Some(first) = try_take(&ssm, &name, &value).await? else {
        tracing::info!("took the lock of stack {stack} (SSM parameter {name})");
        return Ok(lock());
    };
    if !opts.timeout.is_zero() {
        out.note(format!(
            "waiting for the lock on stack {stack} held by {} (up to {} s, --lock-timeout)",
            first.describe(),
            opts.timeout.as_secs()
        ));
    }
    let (s, n, v) = (&ssm, &name, &value);
    let waited = until(&format!("the lock of stack {stack}"), opts.timeout, move || async move {
        Ok(match try_take(s, n, v).await? {
            None => Polled::Done(None),
            Some(h) => Polled::NotYet(Some(h)),
        })
    })
    .await?;
    match waited {
        Polled::Done(_) => {
            tracing::info!("took the lock of stack {stack} (SSM parameter {name})");
            Ok(lock())
        }
        Polled::NotYet(h) => Err(held_error(stack, &h.unwrap_or(first), opts.timeout, command)),
    }
}

fn held_error(stack: &str, h: &Holder, waited: Duration, command: &str) -> anyhow::Error {
    let verb = command.strip_prefix("trailsetup ").unwrap_or(command);
    anyhow::anyhow!(
        "stack {stack} is locked by {}; gave up after {} s (--lock-timeout, env TRAILSETUP_LOCK_TIMEOUT, config key \
         lock_timeout). Nothing was changed.\n  → if that run is still going, wait for it; if it is gone (a killed CI job), \
         `trailsetup {verb} --force-unlock` removes its lock (SSM parameter {})",
        h.describe(),
        waited.as_secs(),
        parameter_name(stack)
    )
}

impl Lock {
    /// Delete the lock, if it is still ours (a `--force-unlock` meanwhile may have given it to another run).
    pub async fn release(self) -> anyhow::Result<()> {
        match read(&self.ssm, &self.name).await? {
            Some((_, v)) if v == self.value => {
                delete(&self.ssm, &self.name).await?;
                tracing::info!("released the lock of stack {}", self.stack);
                Ok(())
            }
            Some((h, _)) => {
                tracing::warn!("the lock of stack {} is now held by {} (removed with --force-unlock meanwhile): left as it is", self.stack, h.describe());
                Ok(())
            }
            None => {
                tracing::warn!("the lock of stack {} was removed by someone else (--force-unlock) while this run held it", self.stack);
                Ok(())
            }
        }
    }
}

/// On Ctrl-C or SIGTERM while the lock is held: say so, release the lock, exit 130 (SIGINT) or 143 (SIGTERM).
/// `cleanup` runs first (the cursor back after a prompt); `applying` says whether changes were being made.
/// Abort the returned task once the lock is released, so that later signals are handled by whoever comes next.
pub fn release_on_signal(
    held: &Held,
    applying: Arc<std::sync::atomic::AtomicBool>,
    what: &'static str,
    cleanup: fn(),
) -> tokio::task::JoinHandle<()> {
    let held = held.clone();
    tokio::spawn(async move {
        let code = crate::signals::first().await;
        cleanup();
        if applying.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("\ninterrupted while applying: run `trailsetup {what}` again to finish (it picks up where this stopped)");
        } else {
            eprintln!("\ninterrupted: nothing was changed");
        }
        if let Some(l) = held.take() {
            let stack = l.stack.clone();
            match l.release().await {
                Ok(()) => eprintln!("released the lock of stack {stack}"),
                Err(e) => eprintln!("warning: the lock of stack {stack} was not released ({e:#}); the next run removes it with --force-unlock"),
            }
        }
        std::process::exit(code);
    })
}


use crate::permissions as perm;
/// [`ACTIONS`] on [`parameter_arn`] ("... for AWS Systems Manager", https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssystemsmanager.html: parameter):
/// init and destroy take and release the lock, status reads it.
pub const PERMISSIONS: &[perm::Permission] = &[
    perm::p(ACTIONS[0], perm::Res::LockParameter, perm::INIT_DESTROY),
    perm::p(ACTIONS[1], perm::Res::LockParameter, &[perm::Cmd::Init, perm::Cmd::Status, perm::Cmd::Destroy]),
    perm::p(ACTIONS[2], perm::Res::LockParameter, perm::INIT_DESTROY),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_arns() {
        assert_eq!(parameter_name("prod-audit"), "/trailsetup/prod-audit/lock");
        assert_eq!(parameter_arn("aws-us-gov", "us-gov-west-1", "123456789012", "x1y"), "arn:aws-us-gov:ssm:us-gov-west-1:123456789012:parameter/trailsetup/x1y/lock");
    }

    #[test]
    fn the_holder_is_described_with_its_age() {
        let mut h = Holder::me("arn:aws:iam::123456789012:role/ci", "trailsetup init");
        assert_eq!(h.pid, std::process::id());
        let d = h.describe();
        assert!(d.starts_with("arn:aws:iam::123456789012:role/ci (host ") && d.contains("`trailsetup init`") && d.contains(" since 20"), "{d}");
        h.since = (chrono::Utc::now() - chrono::TimeDelta::minutes(90)).to_rfc3339();
        assert!(h.describe().ends_with(", 90 min ago"), "{}", h.describe());
        assert!(h.age().unwrap() > STALE_AFTER);
        // a value written by hand: shown as it is
        let f = Holder::foreign("someone", None);
        assert_eq!(f.describe(), "someone since an unknown time");
        let e = held_error("s1", &f, Duration::from_secs(2), "trailsetup destroy").to_string();
        assert!(e.contains("stack s1 is locked by someone") && e.contains("after 2 s") && e.contains("`trailsetup destroy --force-unlock`"), "{e}");
    }
}
