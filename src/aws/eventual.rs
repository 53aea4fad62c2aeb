//! AWS's "not yet" answers: a call that uses something created or changed seconds earlier (a role, a key
//! policy, a queue policy, a name deleted a moment ago) is refused until the change has propagated. Each such
//! answer is listed once below — operation, error code, a fragment of the message — with the AWS page that
//! documents the delay, and [`retry`] retries exactly those, with jittered backoff, for a bounded time. Anything
//! else goes back to the caller at once, which names the resource and the permission (`crate::aws::explain`).

use std::future::Future;
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// One documented "not yet" answer.
#[derive(Debug)]
pub struct NotYet {
    /// The API operation, as AWS names it (`CreateTrail`).
    pub op: &'static str,
    /// The error code AWS answers with.
    pub code: &'static str,
    /// A fragment of the error message that must be present (case-insensitive; empty: any message).
    pub fragment: &'static str,
    /// How long to keep trying before giving up.
    pub wait: Duration,
    /// Why: the AWS page that documents the delay.
    pub page: &'static str,
}

const IAM_PROPAGATION: &str = "https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency";
const CREATE_TRAIL: &str = "https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_CreateTrail.html";
const KMS_CONSISTENCY: &str = "https://docs.aws.amazon.com/kms/latest/developerguide/accessing-kms.html#programming-eventual-consistency";

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Every "not yet" answer trailsetup waits out.
pub static NOT_YET: &[NotYet] = &[
    // CloudTrail checks the bucket policy, topic policy, logs role and key policy it is given when the trail is
    // created or updated; each was written a moment before by the same apply.
    NotYet { op: "CreateTrail", code: "InsufficientS3BucketPolicyException", fragment: "", wait: secs(90), page: CREATE_TRAIL },
    NotYet { op: "CreateTrail", code: "InsufficientSnsTopicPolicyException", fragment: "", wait: secs(90), page: CREATE_TRAIL },
    NotYet { op: "CreateTrail", code: "InsufficientEncryptionPolicyException", fragment: "", wait: secs(90), page: KMS_CONSISTENCY },
    NotYet { op: "CreateTrail", code: "InvalidCloudWatchLogsRoleArnException", fragment: "", wait: secs(90), page: IAM_PROPAGATION },
    // "Access denied. Verify in IAM that the role has adequate permissions." while the logs role's policy
    // propagates: the log group ARN itself is right (we built it)
    NotYet { op: "CreateTrail", code: "InvalidCloudWatchLogsLogGroupArnException", fragment: "access denied", wait: secs(90), page: IAM_PROPAGATION },
    NotYet { op: "UpdateTrail", code: "InsufficientS3BucketPolicyException", fragment: "", wait: secs(90), page: CREATE_TRAIL },
    NotYet { op: "UpdateTrail", code: "InsufficientSnsTopicPolicyException", fragment: "", wait: secs(90), page: CREATE_TRAIL },
    NotYet { op: "UpdateTrail", code: "InsufficientEncryptionPolicyException", fragment: "", wait: secs(90), page: KMS_CONSISTENCY },
    NotYet { op: "UpdateTrail", code: "InvalidCloudWatchLogsRoleArnException", fragment: "", wait: secs(90), page: IAM_PROPAGATION },
    NotYet { op: "UpdateTrail", code: "InvalidCloudWatchLogsLogGroupArnException", fragment: "access denied", wait: secs(90), page: IAM_PROPAGATION },
    // OpenSearch validates the principals of a domain's access policy: a role created seconds ago is "not a
    // valid principal" until IAM has propagated it.
    NotYet {
        op: "CreateDomain",
        code: "InvalidTypeException",
        fragment: "error setting policy",
        wait: secs(120),
        page: IAM_PROPAGATION,
    },
    NotYet {
        op: "UpdateDomainConfig",
        code: "InvalidTypeException",
        fragment: "error setting policy",
        wait: secs(120),
        page: IAM_PROPAGATION,
    },
    // A domain of that name still being deleted (DeleteDomain takes minutes): the name is free once it is gone.
    NotYet {
        op: "CreateDomain",
        code: "ValidationException",
        fragment: "being deleted",
        wait: secs(30 * 60),
        page: "https://docs.aws.amazon.com/opensearch-service/latest/APIReference/API_DeleteDomain.html",
    },
    // S3 sends a test message to each destination of a notification configuration and refuses the configuration
    // while the queue policy allowing it has not propagated (SQS: up to 60 seconds for queue attributes).
    NotYet {
        op: "PutBucketNotificationConfiguration",
        code: "InvalidArgument",
        fragment: "unable to validate the following destination configurations",
        wait: secs(120),
        page: "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SetQueueAttributes.html",
    },
    // Lambda checks that the execution role may send to the on-failure destination; the role's policy was
    // attached moments ago.
    NotYet {
        op: "PutFunctionEventInvokeConfig",
        code: "InvalidParameterValueException",
        fragment: "does not have permissions",
        wait: secs(90),
        page: IAM_PROPAGATION,
    },
    // A new execution role is not yet assumable by Lambda.
    NotYet {
        op: "CreateFunction",
        code: "InvalidParameterValueException",
        fragment: "cannot be assumed by lambda",
        wait: secs(60),
        page: IAM_PROPAGATION,
    },
    // CloudWatch Logs checks the key policy we changed just before (KMS is eventually consistent).
    NotYet { op: "CreateLogGroup", code: "AccessDeniedException", fragment: "is not allowed to be used", wait: secs(90), page: KMS_CONSISTENCY },
    NotYet { op: "AssociateKmsKey", code: "AccessDeniedException", fragment: "is not allowed to be used", wait: secs(90), page: KMS_CONSISTENCY },
    // "You must wait 60 seconds after deleting a queue before you can create another queue with the same name."
    NotYet {
        op: "CreateQueue",
        code: "AWS.SimpleQueueService.QueueDeletedRecently",
        fragment: "",
        wait: secs(75),
        page: "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html",
    },
    // "If you delete a secret and then immediately create a secret with the same name, use appropriate back off and
    // retry logic": a secret deleted without recovery (destroy) is removed in the background.
    NotYet {
        op: "CreateSecret",
        code: "InvalidRequestException",
        fragment: "scheduled for deletion",
        wait: secs(60),
        page: "https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_DeleteSecret.html",
    },
    NotYet {
        op: "CreateQueue",
        code: "QueueDeletedRecently",
        fragment: "",
        wait: secs(75),
        page: "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html",
    },
];

/// The entry matching this answer of `op`, if it is a documented "not yet".
pub fn not_yet(op: &str, code: Option<&str>, message: Option<&str>) -> Option<&'static NotYet> {
    let code = code?;
    let message = message.unwrap_or_default().to_ascii_lowercase();
    NOT_YET.iter().find(|n| n.op == op && n.code == code && message.contains(n.fragment))
}

/// Delays and waits are multiplied by `TRAILSETUP_RETRY_SCALE` (a test switch: `0.01` makes a 90-second wait
/// a one-second one); 1 when unset.
pub(crate) fn scale() -> f64 {
    std::env::var("TRAILSETUP_RETRY_SCALE").ok().and_then(|v| v.parse::<f64>().ok()).filter(|s| *s >= 0.0).unwrap_or(1.0)
}

/// Call `f` until it succeeds, fails with something that is not a documented "not yet" of `op`, or the entry's
/// wait is over (then the last error is returned, for the caller to explain). `what` names the resource in the
/// progress log.
pub async fn retry<T, E, R, F, Fut>(op: &'static str, what: &str, mut f: F) -> Result<T, SdkError<E, R>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata,
{
    let mut backoff = Backoff::new();
    loop {
        let err = match f().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let hit = match &err {
            SdkError::ServiceError(se) => not_yet(op, se.err().code(), se.err().message()),
            _ => None,
        };
        let Some(n) = hit else { return Err(err) };
        let Some(sleep) = backoff.next_within(n.wait) else {
            tracing::warn!("{what}: still refused after {:.0?} of waiting for propagation ({}: see {})", backoff.elapsed(), n.code, n.page);
            return Err(err);
        };
        tracing::info!("{what}: waiting for AWS to propagate a recent change ({} {}; {})", op, n.code, n.page);
        tokio::time::sleep(sleep).await;
    }
}

/// The same bounded, jittered wait for answers that are not SDK errors (a domain still processing a change, the
/// security plugin answering 401/403/503 right after the domain got its endpoint): call `poll` until it says
/// `Done`, or `wait` is over. The last answer is returned either way, and nothing is asked once more after the
/// wait (with a zero wait, `poll` runs exactly once).
pub async fn until<T, F, Fut>(what: &str, wait: Duration, mut poll: F) -> anyhow::Result<Polled<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Polled<T>>>,
{
    let mut backoff = Backoff::new();
    loop {
        let last = match poll().await? {
            Polled::Done(v) => return Ok(Polled::Done(v)),
            Polled::NotYet(v) => v,
        };
        let Some(sleep) = backoff.next_within(wait) else { return Ok(Polled::NotYet(last)) };
        tracing::info!("{what}: waiting ({:.0?} so far)", backoff.elapsed());
        tokio::time::sleep(sleep).await;
    }
}

/// The schedule both waits share: 2 s doubling to 15 s, half to full jitter, all scaled by
/// `TRAILSETUP_RETRY_SCALE`, and no sleep that would end past the (scaled) wait.
struct Backoff {
    started: Instant,
    scale: f64,
    delay: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        let scale = scale();
        Backoff { started: Instant::now(), scale, delay: Duration::from_secs(2).mul_f64(scale) }
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The next sleep, or `None` when it would end after `wait` from the start.
    fn next_within(&mut self, wait: Duration) -> Option<Duration> {
        let sleep = self.delay.mul_f64(0.5 + fastrand::f64() / 2.0);
        if self.started.elapsed() + sleep > wait.mul_f64(self.scale) {
            return None;
        }
        self.delay = (self.delay * 2).min(Duration::from_secs(15).mul_f64(self.scale));
        Some(sleep)
    }
}

/// What one poll of [`until`] found.
pub enum Polled<T> {
    Done(T),
    NotYet(T),
}

impl<T> Polled<T> {
    pub fn into_inner(self) -> T {
        match self {
            Polled::Done(v) | Polled::NotYet(v) => v,
        }
    }
    pub fn is_done(&self) -> bool {
        matches!(self, Polled::Done(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_entry_names_its_page_and_matches_its_own_answer() {
        for n in NOT_YET {
            assert!(n.page.starts_with("https://docs.aws.amazon.com/"), "{n:?}");
            assert!(n.wait >= Duration::from_secs(60), "{n:?}: shorter than AWS's own figures");
            let msg = format!("Something: {} (and more)", n.fragment.to_uppercase());
            assert!(std::ptr::eq(not_yet(n.op, Some(n.code), Some(&msg)).unwrap(), n), "{n:?}");
        }
        // the role-ARN variant and the log-group variant of CreateTrail, and not any InvalidCloudWatchLogsLogGroupArn
        assert!(not_yet("CreateTrail", Some("InvalidCloudWatchLogsLogGroupArnException"), Some("Access denied. Verify in IAM…")).is_some());
        assert!(not_yet("CreateTrail", Some("InvalidCloudWatchLogsLogGroupArnException"), Some("Log group does not exist")).is_none());
        assert!(not_yet("DeleteTrail", Some("InsufficientS3BucketPolicyException"), None).is_none());
        assert!(not_yet("CreateQueue", None, None).is_none());
    }
}
