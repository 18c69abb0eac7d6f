"""tests/support/aws_models.py (tests/conftest.py turns it on): sessions share botocore's parsed
service models, and nothing else; each mock_aws() still starts from an empty account."""

from __future__ import annotations

import boto3
import botocore.session
from moto import mock_aws
from support.alarms import put_alarm


def test_sessions_with_one_data_path_share_one_loader_and_another_path_gets_its_own(tmp_path, monkeypatch):
    first, second = botocore.session.Session(), botocore.session.Session()
    assert first.get_component("data_loader") is second.get_component("data_loader")
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    elsewhere = botocore.session.Session().get_component("data_loader")
    assert elsewhere is not first.get_component("data_loader")
    assert str(tmp_path) in elsewhere.search_paths


def alarm_names() -> list[str]:
    return [
        a["AlarmName"] for a in boto3.client("cloudwatch", region_name="eu-west-1").describe_alarms()["MetricAlarms"]
    ]


def test_each_mock_account_starts_empty_in_a_session_of_its_own():
    sessions = []
    for name in ("first", "second"):
        with mock_aws():
            assert alarm_names() == []
            put_alarm(boto3.client("cloudwatch", region_name="eu-west-1"), name)
            assert alarm_names() == [name]
            sessions.append(boto3.DEFAULT_SESSION)
    first, second = sessions
    assert first is not second
    assert first._session.get_component("data_loader") is second._session.get_component("data_loader")
