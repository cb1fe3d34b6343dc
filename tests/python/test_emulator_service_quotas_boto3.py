"""The emulator's Service Quotas seen through boto3's service-quotas client.

Runs against the emulator the test stack starts, whose Service Quotas endpoint is in
SERVICE_QUOTAS_EMULATOR_URL and its Bedrock endpoint in BEDROCK_EMULATOR_URL. The values it
lists are the ones it enforces, so the test changes one quota no other suite uses through the
admin API and restores it afterwards.
"""

import json
import os
import urllib.parse
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError

# Owned by this file: no other suite throttles or configures Claude 3.5 Sonnet v2 in-Region.
OWNED_QUOTA = "anthropic.claude-3-5-sonnet-20241022-v2:0"
OWNED_NAME = "On-demand model inference requests per minute for Anthropic Claude 3.5 Sonnet V2"


def endpoint(variable):
    value = os.environ.get(variable)
    if not value:
        pytest.fail(f"{variable} is not set: start the emulator with --service-quotas-addr and point it there")
    return value.rstrip("/")


@pytest.fixture(scope="module")
def quotas():
    return boto3.client(
        "service-quotas",
        endpoint_url=endpoint("SERVICE_QUOTAS_EMULATOR_URL"),
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def admin(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(endpoint("BEDROCK_EMULATOR_URL") + path, data=data, method=method)
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def listed(quotas):
    paginator = quotas.get_paginator("list_service_quotas")
    return [q for page in paginator.paginate(ServiceCode="bedrock", PaginationConfig={"PageSize": 4}) for q in page["Quotas"]]


def test_quotas_have_aws_shapes_and_follow_runtime_overrides(quotas):
    path = "/_emulator/quotas/" + urllib.parse.quote(OWNED_QUOTA, safe="")
    admin("PUT", path, {"rpm": 3})
    try:
        by_name = {q["QuotaName"]: q for q in listed(quotas)}
        quota = by_name[OWNED_NAME]
        assert quota["Value"] == 3.0
        assert quota["ServiceCode"] == "bedrock"
        assert quota["Unit"] == "None"
        assert quota["Adjustable"] is True
        assert quota["QuotaCode"].startswith("L-") and len(quota["QuotaCode"]) == 10
        assert quota["QuotaArn"].endswith(":bedrock/" + quota["QuotaCode"])
        got = quotas.get_service_quota(ServiceCode="bedrock", QuotaCode=quota["QuotaCode"])["Quota"]
        assert got == quota
    finally:
        admin("DELETE", path)
    restored = {q["QuotaName"]: q for q in listed(quotas)}[OWNED_NAME]
    assert restored["Value"] == 50.0


def test_errors_are_the_documented_exceptions(quotas):
    with pytest.raises(ClientError) as unknown_service:
        quotas.list_service_quotas(ServiceCode="ec2")
    assert unknown_service.value.response["Error"]["Code"] == "NoSuchResourceException"
    with pytest.raises(ClientError) as unknown_code:
        quotas.get_service_quota(ServiceCode="bedrock", QuotaCode="L-00000000")
    assert unknown_code.value.response["Error"]["Code"] == "NoSuchResourceException"
    with pytest.raises(ClientError) as bad_token:
        quotas.list_service_quotas(ServiceCode="bedrock", NextToken="bm9wZQ==")
    assert bad_token.value.response["Error"]["Code"] == "InvalidPaginationTokenException"
