"""The CI templates in templates/ci/: the GitHub Actions workflow passes actionlint (with shellcheck on its `run:`
scripts); the GitLab file has its jobs, rules and OIDC token; every trailsetup command line of both files runs with
the real binary — the plan lines offline (exit 0 or 4) — and each job's scripts run for real, in order, against moto
and the loopback OpenSearch node (plan → apply → plan again → health), each job in a fresh directory with no state
file, as on a CI runner. Results are checked with boto3 and the files the scripts write.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_init import ACCOUNT, HOME

REPO = Path(__file__).resolve().parents[2]
GITHUB = REPO / "templates" / "ci" / "github-actions.yml"
GITLAB = REPO / "templates" / "ci" / "gitlab-ci.yml"
SETUP_HINT = "run `scripts/testenv.sh setup` (it installs actionlint into .cache/bin, jq and shellcheck)"


def actionlint() -> Path:
    p = Path(os.environ.get("TS_ACTIONLINT") or REPO / ".cache" / "bin" / "actionlint")
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"actionlint not found at {p}: {SETUP_HINT}", pytrace=False)
    return p


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"{tool} not found: {SETUP_HINT}", pytrace=False)
    return path


def github() -> dict:
    wf = yaml.safe_load(GITHUB.read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as true
    return wf


def gitlab() -> dict:
    return yaml.safe_load(GITLAB.read_text())


def trailsetup_commands(script: str) -> list[list[str]]:
    """The argument lists of every `trailsetup ...` command of a shell script (quoted text stays one word; a
    command ends at a newline, `;`, `&&`, `||`, `|` or a redirection)."""
    lex = shlex.shlex(script, posix=True, punctuation_chars=";&|<>()\n")
    lex.whitespace = " \t"
    lex.whitespace_split = True
    cmds, cur = [], []
    for tok in [*lex, "\n"]:
        if tok and all(c in ";&|<>()\n" for c in tok):
            if cur and cur[0] == "trailsetup":
                cmds.append(cur[1:])
            cur = []
        else:
            cur.append(tok)
    return cmds


def github_scripts(job: dict) -> list[tuple[str, str]]:
    return [(s.get("name") or s.get("id") or "", s["run"]) for s in job["steps"] if "run" in s]


def gitlab_script(job: dict) -> str:
    return "\n".join(job["script"])


def all_command_lines() -> list[list[str]]:
    cmds = []
    for job in github()["jobs"].values():
        for _, script in github_scripts(job):
            cmds += trailsetup_commands(script)
    for name, job in gitlab().items():
        if isinstance(job, dict) and "script" in job:
            cmds += trailsetup_commands(gitlab_script(job))
    return cmds


# --- lint and structure -------------------------------------------------------------------------------------------


def test_actionlint_finds_nothing_in_the_workflow(tmp_path):
    lint = actionlint()
    sc = need("shellcheck")
    r = subprocess.run([str(lint), "-no-color", "-shellcheck", sc, str(GITHUB)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr
    # the linter really looks: a broken copy is refused (a permission that does not exist, an unquoted variable)
    broken = tmp_path / "broken.yml"
    broken.write_text(GITHUB.read_text().replace("id-token: write", "id-token: writ").replace('>> "$GITHUB_OUTPUT"', ">> $GITHUB_OUTPUT"))
    r = subprocess.run([str(lint), "-no-color", "-shellcheck", sc, str(broken)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "writ" in r.stdout and "SC2086" in r.stdout, r.stdout


def test_the_github_workflow_has_its_three_jobs_oidc_and_one_apply_at_a_time():
    wf = github()
    assert set(wf["on"]) >= {"pull_request", "push", "schedule"}
    assert wf["on"]["push"]["branches"] == ["main"] and wf["on"]["schedule"][0]["cron"]
    assert wf["permissions"] == {"id-token": "write", "contents": "read"}
    jobs = wf["jobs"]
    assert set(jobs) == {"plan", "apply", "health"}
    assert jobs["plan"]["if"] == "github.event_name == 'pull_request'"
    assert "github.event_name == 'push'" in jobs["apply"]["if"] and "refs/heads/main" in jobs["apply"]["if"]
    assert "schedule" in jobs["health"]["if"]
    assert jobs["apply"]["concurrency"]["cancel-in-progress"] is False and jobs["apply"]["concurrency"]["group"]
    for name, job in jobs.items():
        creds = [s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
        assert len(creds) == 1 and creds[0]["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}", name
        install = [s for s in job["steps"] if s.get("name") == "Install trailsetup"]
        assert install and install[0]["run"].startswith("cargo install --locked"), name
    upload = [s for s in jobs["plan"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload and upload[0]["with"]["path"] == "plan.json"
    assert "trailsetup permissions --for init" in GITHUB.read_text()


def test_the_gitlab_file_has_its_three_jobs_rules_and_oidc():
    ci = gitlab()
    assert ci["stages"] == ["plan", "apply", "health"]
    base = ci[".trailsetup"]
    assert base["id_tokens"]["AWS_ID_TOKEN"]["aud"] == "sts.amazonaws.com"
    before = "\n".join(base["before_script"])
    assert "aws sts assume-role-with-web-identity" in before and '--web-identity-token "$AWS_ID_TOKEN"' in before
    assert "cargo install --locked" in before
    for name, stage, rule in [
        ("plan", "plan", '$CI_PIPELINE_SOURCE == "merge_request_event"'),
        ("apply", "apply", '$CI_PIPELINE_SOURCE == "push" && $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH'),
        ("health", "health", '$CI_PIPELINE_SOURCE == "schedule"'),
    ]:
        job = ci[name]
        assert job["extends"] == ".trailsetup" and job["stage"] == stage, name
        assert job["rules"] == [{"if": rule}], name
    assert ci["apply"]["resource_group"]
    assert "plan.json" in ci["plan"]["artifacts"]["paths"]
    assert "trailsetup permissions --for init" in GITLAB.read_text()
    # every script line is a bash line shellcheck accepts
    sc = need("shellcheck")
    for name in ("plan", "apply", "health"):
        script = "#!/bin/bash\nset -eo pipefail\n" + "\n".join([*base["before_script"], *ci[name]["script"]]) + "\n"
        r = subprocess.run([sc, "-s", "bash", "-"], input=script, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"{name}:\n{r.stdout}"


def test_every_plan_command_line_runs_offline(run_cli, aws_env, tmp_path):
    cmds = all_command_lines()
    kinds = {("plan" if "--dry-run" in c else c[0]) for c in cmds}
    assert kinds == {"plan", "init", "status"}, cmds
    plans = [c for c in cmds if "--dry-run" in c]
    assert len(plans) == 4, plans  # plan and apply jobs, both files
    for c in plans:
        rc, out, err = run_cli([*c, "--offline", "--account", ACCOUNT, "--region", HOME], cwd=tmp_path)
        assert rc in (0, 4), f"trailsetup {shlex.join(c)}: exit {rc}\n{err}"
        if "--output" in c:
            assert json.loads(out)["plan"]["summary"]["create"] > 0
        assert (tmp_path / "plan.json").exists()
        (tmp_path / "plan.json").unlink()


# --- the jobs' scripts, run for real -----------------------------------------------------------------------------


@pytest.fixture
def runner(aws_env, trailsetup_bin, tmp_path, opensearch_url, os_clean):
    """run(name, script, shell_flags) -> (rc, workdir): a script in a fresh directory and state directory (a new
    CI runner), with trailsetup on PATH and the settings a repository's variables would give."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "trailsetup").symlink_to(trailsetup_bin)
    env = dict(aws_env)
    env.update({
        "PATH": f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}",
        "TRAILSETUP_NAME": "trailsetup",
        "TRAILSETUP_REGIONS": HOME,
        "TRAILSETUP_OPENSEARCH_URL": opensearch_url,
        "TRAILSETUP_INDEX_PREFIX": os_clean,
        "NO_COLOR": "1",
    })
    count = [0]

    def run(name: str, script: str, shell: list[str], extra: dict | None = None) -> tuple[int, Path, str]:
        count[0] += 1
        work = tmp_path / f"{count[0]:02d}-{name}"
        work.mkdir()
        e = dict(env, TRAILSETUP_STATE_DIR=str(work / ".state"), **(extra or {}))
        p = subprocess.run([*shell, script], cwd=work, env=e, capture_output=True, text=True, timeout=600)
        return p.returncode, work, p.stdout + p.stderr

    return run


def github_job(runner, wf: dict, name: str) -> tuple[int, Path, str, str, str]:
    """Run the `run:` steps of job `name` as GitHub would (bash -eo pipefail), skipping the install; returns (rc,
    workdir, output, $GITHUB_OUTPUT, $GITHUB_STEP_SUMMARY)."""
    job = wf["jobs"][name]
    env = {k: re.sub(r"\$\{\{\s*vars\.\w+\s*\|\|\s*'([^']*)'\s*\}\}", r"\1", str(v)) for k, v in wf["env"].items()}
    assert env["AWS_REGION"] == HOME and env["TRAILSETUP_NAME"] == "trailsetup"
    steps = [(n, s) for n, s in github_scripts(job) if n != "Install trailsetup"]
    assert all("${{" not in s for _, s in steps), "expressions in run: scripts (use env:)"
    # one runner for the whole job: the steps share the work directory, the output and summary files
    script = "\n".join(f"( {s}\n)" for _, s in steps)
    outputs = "github-output"
    summary = "github-step-summary"
    rc, work, out = runner(name, script, ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"],
                           dict(env, GITHUB_OUTPUT=outputs, GITHUB_STEP_SUMMARY=summary))
    read = lambda f: (work / f).read_text() if (work / f).exists() else ""  # noqa: E731
    return rc, work, out, read(outputs), read(summary)


def test_the_github_jobs_plan_apply_and_check_health(moto_reset, runner, boto):
    need("jq")
    wf = github()
    # a pull request: the plan, changes pending (not a failure), the table in the summary, plan.json for the artifact
    rc, work, out, outputs, summary = github_job(runner, wf, "plan")
    assert rc == 0, out
    assert "changes=true" in outputs.splitlines(), outputs
    assert "### trailsetup plan for stack trailsetup" in summary and "| action | kind | name | region |" in summary, summary
    assert "| create | cloudtrail-trail | `trailsetup` | us-east-1 |" in summary, summary
    assert json.loads((work / "plan.json").read_text())["format"] == "trailsetup-saved-plan/1"
    assert boto("cloudtrail").describe_trails()["trailList"] == []

    # the merge: plan on the merged commit, apply exactly it
    rc, work, out, _, summary = github_job(runner, wf, "apply")
    assert rc == 0, out
    assert "equals the one saved in plan.json" in out and "to create" in summary, out
    assert [t["Name"] for t in boto("cloudtrail").describe_trails()["trailList"]] == ["trailsetup"]
    assert boto("ssm").describe_parameters()["Parameters"] == []  # the lock was released

    # the next pull request finds nothing to do
    rc, _, out, outputs, summary = github_job(runner, wf, "plan")
    assert rc == 0 and "changes=false" in outputs.splitlines(), out
    assert "No changes" in summary, summary

    # the schedule: status from a runner without state; the job's exit is status's (1 when unhealthy)
    rc, work, out, _, summary = github_job(runner, wf, "health")
    status = json.loads((work / "status.json").read_text())["status"]
    assert rc == (0 if status["healthy"] else 1), out
    assert "### trailsetup status of stack trailsetup" in summary, summary
    not_ok = [c for c in status["checks"] if c["level"] != "ok"]
    assert summary.count("\n| ") - 1 == len(not_ok), summary


def test_the_gitlab_jobs_plan_apply_and_check_health(moto_reset, runner, boto):
    need("jq")
    ci = gitlab()
    env = {k: str(v) for k, v in ci["variables"].items() if k != "CARGO_HOME"}
    shell = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]
    rc, work, out = runner("plan", gitlab_script(ci["plan"]), shell, env)
    assert rc == 0, out
    table = (work / "plan.md").read_text()
    assert "| create | cloudtrail-trail | `trailsetup` | us-east-1 |" in table, table
    assert (work / "plan.json").exists()
    rc, work, out = runner("apply", gitlab_script(ci["apply"]), shell, env)
    assert rc == 0, out
    assert [t["Name"] for t in boto("cloudtrail").describe_trails()["trailList"]] == ["trailsetup"]
    rc, work, out = runner("health", gitlab_script(ci["health"]), shell, env)
    status = json.loads((work / "status.json").read_text())["status"]
    assert rc == (0 if status["healthy"] else 1), out
