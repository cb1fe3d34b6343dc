"""The emulator's CloudWatch seen through boto3's cloudwatch client (Smithy RPCv2-CBOR).

Runs against the emulator the test stack starts, whose CloudWatch endpoint is in
CLOUDWATCH_EMULATOR_URL. The emulator is shared, so each test writes under a namespace of its
own and reads call counts as differences rather than resetting.
"""

import datetime
import json
import os
import time
import urllib.request
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError


def endpoint():
    value = os.environ.get("CLOUDWATCH_EMULATOR_URL")
    if not value:
        pytest.fail("CLOUDWATCH_EMULATOR_URL is not set: start the emulator with --cloudwatch-addr and point it there")
    return value.rstrip("/")


@pytest.fixture(scope="module")
def cloudwatch():
    return boto3.client(
        "cloudwatch",
        endpoint_url=endpoint(),
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )


@pytest.fixture
def namespace():
    return f"Boto3Test/{uuid.uuid4().hex[:12]}"


def admin(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(endpoint() + path, data=data, method=method)
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def minute_an_hour_ago():
    now = int(time.time())
    return datetime.datetime.fromtimestamp(now // 300 * 300 - 3600, tz=datetime.timezone.utc)


def query(query_id, namespace, name, stat, period=60):
    metric = {"Namespace": namespace, "MetricName": name, "Dimensions": [{"Name": "Model", "Value": "m"}]}
    return {"Id": query_id, "MetricStat": {"Metric": metric, "Period": period, "Stat": stat}}


def test_put_then_get_every_statistic(cloudwatch, namespace):
    at = minute_an_hour_ago()
    dims = [{"Name": "Model", "Value": "m"}]
    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {"MetricName": "Latency", "Dimensions": dims, "Timestamp": at, "Values": [10.0, 20.0], "Counts": [3.0, 1.0]},
            {"MetricName": "Latency", "Dimensions": dims, "Timestamp": at + datetime.timedelta(seconds=70), "Value": 40.0},
        ],
    )
    stats = ["SampleCount", "Sum", "Average", "Minimum", "Maximum", "p50", "p75"]
    queries = [query(f"q{i}", namespace, "Latency", stat, period=300) for i, stat in enumerate(stats)]
    output = cloudwatch.get_metric_data(
        MetricDataQueries=queries, StartTime=at, EndTime=at + datetime.timedelta(seconds=300)
    )
    by_id = {r["Id"]: r for r in output["MetricDataResults"]}
    assert [by_id[f"q{i}"]["Values"] for i in range(len(stats))] == [[5.0], [90.0], [18.0], [10.0], [40.0], [10.0], [20.0]]
    assert by_id["q0"]["Timestamps"] == [at]
    assert by_id["q0"]["StatusCode"] == "Complete"

    minutes = cloudwatch.get_metric_data(
        MetricDataQueries=[query("m", namespace, "Latency", "Sum")],
        StartTime=at,
        EndTime=at + datetime.timedelta(seconds=300),
        ScanBy="TimestampAscending",
    )["MetricDataResults"][0]
    assert minutes["Timestamps"] == [at, at + datetime.timedelta(seconds=60)]
    assert minutes["Values"] == [50.0, 40.0]

    listed = cloudwatch.list_metrics(Namespace=namespace, Dimensions=[{"Name": "Model"}])["Metrics"]
    assert listed == [{"Namespace": namespace, "MetricName": "Latency", "Dimensions": dims}]


def test_errors_carry_the_aws_codes(cloudwatch, namespace):
    with pytest.raises(ClientError) as reserved:
        cloudwatch.put_metric_data(Namespace="AWS/Bedrock", MetricData=[{"MetricName": "X", "Value": 1.0}])
    assert reserved.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert reserved.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as both:
        cloudwatch.put_metric_data(
            Namespace=namespace, MetricData=[{"MetricName": "X", "Value": 1.0, "Values": [2.0]}]
        )
    assert both.value.response["Error"]["Code"] == "InvalidParameterCombination"
    at = minute_an_hour_ago()
    with pytest.raises(ClientError) as math:
        cloudwatch.get_metric_data(
            MetricDataQueries=[{"Id": "e1", "Expression": "SUM(METRICS())"}],
            StartTime=at,
            EndTime=at + datetime.timedelta(seconds=60),
        )
    assert math.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "metric math" in math.value.response["Error"]["Message"]


def test_boto3_retries_through_injected_throttling(cloudwatch, namespace):
    before = admin("GET", "/_emulator/cloudwatch/calls").get("PutMetricData", 0)
    admin("PUT", "/_emulator/cloudwatch/faults/PutMetricData", {"error": "throttling", "count": 1})
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=[{"MetricName": "Retried", "Value": 1.0}])
    after = admin("GET", "/_emulator/cloudwatch/calls")["PutMetricData"]
    assert after - before == 2
    assert [m["MetricName"] for m in cloudwatch.list_metrics(Namespace=namespace)["Metrics"]] == ["Retried"]
