"""The wizard in a real pseudo-terminal (pexpect) against moto: the happy path on defaults, answers checked where
they are typed, "no" at the confirmation and Ctrl-C at a prompt change nothing. The screens are compared with
snapshots in tests/e2e/snapshots/ after filtering what varies (escape codes, timings, paths, ports); set
UPDATE_SNAPSHOTS=1 to rewrite them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pexpect

SNAPSHOTS = Path(__file__).parent / "snapshots"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


def screen(raw: str) -> str:
    """The terminal's text without escape codes, with the varying parts replaced."""
    # a carriage return starts the line over (progress bars redraw so): keep what the line ends up showing
    t = "\n".join(l.rstrip("\r").split("\r")[-1] for l in raw.split("\n"))
    t = ANSI.sub("", t)
    t = re.sub(r"\d+\.\d+s\b", "<secs>", t)
    t = re.sub(r"\[\d\d:\d\d:\d\d\]", "[<elapsed>]", t)
    t = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", t)
    t = re.sub(r"/tmp/\S+", "<tmp>", t)
    t = re.sub(r"ts-test-[a-z0-9-]+", "<prefix>", t)
    lines = [l.rstrip() for l in t.split("\n")]
    # progress-bar frames and spinner redraws are not part of the screen's meaning
    lines = [l for l in lines if l and not re.match(r"^[⠁-⣿ ]*\[<elapsed>\]", l)]
    return "\n".join(lines) + "\n"


def check_snapshot(name: str, raw: str) -> None:
    got = screen(raw)
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not path.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(got)
    assert got == path.read_text(), f"screen {name} changed; rerun with UPDATE_SNAPSHOTS=1 if intended\n{got}"


def spawn(trailsetup_bin, args, env, cwd):
    env = dict(env, TERM="xterm", COLUMNS="160", LINES="60")
    return pexpect.spawn(str(trailsetup_bin), args, env=env, cwd=str(cwd), encoding="utf-8", timeout=180, dimensions=(60, 160))


def nothing_made(boto):
    assert boto("cloudtrail").describe_trails()["trailList"] == []
    assert boto("s3").list_buckets()["Buckets"] == []
    assert boto("sqs").list_queues().get("QueueUrls") is None


SINK = ["--opensearch-auth", "none"]


def test_happy_path_on_defaults(trailsetup_bin, moto_reset, boto, aws_env, tmp_path, os_clean):
    # Enter on every question: a new domain (t3.small.search × 1, its monthly estimate beside the choice and after the
    # count). Only the backfill is answered "no": moto's domain endpoint does not resolve, so loading would fail.
    child = spawn(trailsetup_bin, ["init", "--index-prefix", os_clean], aws_env, tmp_path)
    log = []
    for prompt in ["Stack name", "Trail mode", "S3 bucket for the logs", "KMS key", "Retention of the CloudWatch Logs copy", "OpenSearch",
                   "Data node instance type", "Number of data nodes"]:
        child.expect(prompt)
        log.append(child.before + child.after)
        child.send("\r")
    child.expect("load the logs already in the bucket")
    log.append(child.before + child.after)
    child.send("n")
    child.expect("Apply this plan")
    log.append(child.before + child.after)
    child.send("y")
    child.expect(pexpect.EOF)
    log.append(child.before)
    child.close()
    raw = "".join(log)
    assert child.exitstatus == 0, raw[-4000:]
    text = screen(raw)
    # the header came before the first question
    assert text.index("Account 123456789012 (aws) · caller") < text.index("Stack name")
    assert "No trail records this account yet." in text
    # the size questions: each type with its monthly estimate per node, then the total after the count
    assert re.search(r"❯ t3\.small\.search +2 vCPU +2 GiB +~\$26/month per node", text), text
    assert re.search(r"  m6g\.large\.search +2 vCPU +8 GiB +~\$93/month per node", text), text
    assert "1 data node in one Availability Zone · ~$28/month estimated: 1 × t3.small.search $26.28 + 1 × 10 GiB gp3 $1.22" in text
    assert text.index("Data node instance type") < text.index("Number of data nodes") < text.index("load the logs already")
    # applied: one line per change with its duration, then the summary and what to run next
    assert re.search(r"✓ created  cloudtrail-trail +trailsetup \[us-east-1\]  <secs>", text), text[-3000:]
    assert re.search(r"✓ created  opensearch-domain +trailsetup \[us-east-1\]  <secs>", text), text[-3000:]
    assert "Stack trailsetup is set up:" in text and "trailsetup ingest" in text and "State" in text
    assert [t["Name"] for t in boto("cloudtrail").describe_trails()["trailList"]] == ["trailsetup"]
    assert [b["Name"] for b in boto("s3").list_buckets()["Buckets"]] == ["trailsetup-123456789012-us-east-1"]
    cc = boto("opensearch").describe_domain(DomainName="trailsetup")["DomainStatus"]["ClusterConfig"]
    assert (cc["InstanceType"], cc["InstanceCount"], cc["ZoneAwarenessEnabled"]) == ("t3.small.search", 1, False)
    # the part of the screen up to the confirmation is stable: snapshot it
    check_snapshot("wizard_defaults", raw[: raw.index("Apply this plan") + len("Apply this plan")])


def test_domain_size_is_checked_where_typed(trailsetup_bin, moto_reset, boto, aws_env, tmp_path):
    # home eu-west-1: the estimates are us-east-1 prices, and the wizard says so
    env = dict(aws_env, AWS_REGION="eu-west-1", AWS_DEFAULT_REGION="eu-west-1")
    args = ["init", "--dry-run", "--name", "sized", "--trail-mode", "multi-region", "--bucket", "sized-bucket-123", "--kms-key", "",
            "--log-retention-days", "90"]
    child = spawn(trailsetup_bin, args, env, tmp_path)
    child.expect("OpenSearch")
    child.send("\r")  # create the domain
    child.expect("Data node instance type \\(monthly estimate at us-east-1 on-demand prices; eu-west-1 differs\\)")
    child.send("\x1b[B\x1b[B\r")  # m6g.large.search
    child.expect("Number of data nodes")
    child.sendline("5")
    # 5 nodes spread evenly over neither two zones nor three: asked again with the flag's words
    child.expect("--domain-instance-count 5: 5 data nodes cannot be spread evenly over Availability Zones")
    child.expect("counts that work: 1, 2, 3, 4, 6, 8, 9, 10, 12")
    child.expect("Number of data nodes")
    child.sendline("6")
    child.expect("6 data nodes in 3 Availability Zones · ~\\$568/month estimated: 6 × m6g.large.search \\$560.64 \\+ 6 × 10 GiB gp3 \\$7.32")
    child.expect("the domain will be in eu-west-1: these are us-east-1 prices")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before[-3000:]
    text = screen(child.before)
    assert "data nodes: 6 × m6g.large.search, 10 GiB gp3 each, 3 Availability Zones" in text, text[-3000:]
    assert boto("opensearch", "eu-west-1").list_domain_names()["DomainNames"] == []
    nothing_made(boto)


def test_answers_are_checked_where_typed(trailsetup_bin, moto_reset, boto, aws_env, tmp_path, opensearch_url):
    child = spawn(trailsetup_bin, ["init", "--dry-run", "--opensearch-url", opensearch_url, *SINK], aws_env, tmp_path)
    child.expect("Stack name")
    child.sendline("My Stack")
    child.expect("a stack name is 3-32 characters of a-z, 0-9 and -")
    child.expect("Stack name")  # asked again, same message as the flag's
    child.sendline("audit")
    child.expect("Trail mode")
    child.send("\r")
    child.expect("S3 bucket for the logs")
    child.sendline("Bad_Bucket")
    child.expect("is not a valid S3 bucket name")
    child.sendline("")  # the default, now valid
    child.expect("KMS key")
    child.send("\r")
    child.expect("Retention")
    # retention is a choice among the values CloudWatch Logs accepts: a wrong one cannot be typed
    child.send("\x1b[B\r")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before[-3000:]
    text = screen(child.before)
    assert "Stack audit" in text and "audit-notifications" in text
    nothing_made(boto)


def test_no_at_the_confirmation_changes_nothing(trailsetup_bin, moto_reset, boto, aws_env, tmp_path, opensearch_url):
    args = ["init", "--name", "xyz", "--trail-mode", "multi-region", "--bucket", "xyz-bucket-123", "--kms-key", "", "--log-retention-days", "90",
            "--no-backfill", "--opensearch-url", opensearch_url, *SINK]
    child = spawn(trailsetup_bin, args, aws_env, tmp_path)
    child.expect("Apply this plan")
    child.send("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Nothing applied." in child.before
    nothing_made(boto)


def test_ctrl_c_at_a_prompt_changes_nothing_exits_130_and_shows_the_cursor(trailsetup_bin, moto_reset, boto, aws_env, tmp_path, opensearch_url):
    child = spawn(trailsetup_bin, ["init", "--opensearch-url", opensearch_url, *SINK], aws_env, tmp_path)
    child.expect("Stack name")
    child.sendline("")
    child.expect("Trail mode")  # a select prompt: the cursor is hidden while it is up
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    out = child.before
    assert child.exitstatus == 130 or child.signalstatus == 2, (child.exitstatus, child.signalstatus, out[-2000:])
    assert child.exitstatus == 130, "the interrupt is handled: cursor restored, exit 130"
    assert "\x1b[?25h" in out, "the cursor is shown again"
    assert "nothing was changed" in out
    nothing_made(boto)
