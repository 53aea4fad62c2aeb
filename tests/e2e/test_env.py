"""Smoke test of the test environment itself: both emulators answer."""

import re

import requests


def test_moto_answers_sts_get_caller_identity(boto, moto_reset):
    ident = boto("sts").get_caller_identity()
    assert re.fullmatch(r"\d{12}", ident["Account"]), ident
    assert ident["Arn"].startswith("arn:aws:"), ident


def test_opensearch_answers_with_a_version(opensearch_url):
    r = requests.get(f"{opensearch_url}/", timeout=10)
    assert r.status_code == 200, r.text
    version = r.json()["version"]["number"]
    assert re.match(r"^\d+\.\d+\.\d+", version), version


def test_os_clean_removes_prefixed_indices(opensearch_url, os_clean):
    prefix = os_clean
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", prefix), prefix
    r = requests.put(f"{opensearch_url}/{prefix}-x", json={"settings": {"number_of_replicas": 0}}, timeout=30)
    assert r.status_code == 200, r.text
