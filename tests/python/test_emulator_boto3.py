"""The Bedrock emulator seen through boto3, as Python clients of the gateway would see Bedrock.

Runs against a running emulator whose base URL is in BEDROCK_EMULATOR_URL (the test stack
starts one with tests/emulator-test.toml). The emulator is shared with other test suites, so
these tests never reset it as a whole: tests that need throttling or faults change one quota
bucket that nothing else uses, through the admin API, and restore it afterwards.
"""

import json
import os
import urllib.parse
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
# Buckets (model x scope) reserved for the tests below that change emulator state; each test
# owns one so that they can run in any order or in parallel.
THROTTLE_BUCKET = "jp.anthropic.claude-sonnet-4-5-20250929-v1:0"
STREAM_FAULT_BUCKET = "au.anthropic.claude-sonnet-4-6"
# Past its Bedrock end of life (2026-06-19).
RETIRED = "us.anthropic.claude-3-5-haiku-20241022-v1:0"


@pytest.fixture(scope="session")
def url():
    value = os.environ.get("BEDROCK_EMULATOR_URL")
    if not value:
        pytest.fail("BEDROCK_EMULATOR_URL is not set: start the emulator and point it there")
    return value.rstrip("/")


@pytest.fixture(scope="session")
def client(url):
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        # One attempt in total (botocore's `max_attempts` counts retries only): a throttle
        # must surface, not be retried away.
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def admin(url, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method)
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def quoted(model_id):
    return urllib.parse.quote(model_id, safe="")


def user(text):
    return [{"role": "user", "content": [{"text": text}]}]


def converse(client, text, **kwargs):
    kwargs.setdefault("inferenceConfig", {"maxTokens": 500})
    return client.converse(modelId=kwargs.pop("modelId", HAIKU), messages=user(text), **kwargs)


def text_of(response):
    return "".join(block.get("text", "") for block in response["output"]["message"]["content"])


def test_health(url):
    assert admin(url, "GET", "/_emulator/health") == {"status": "ok"}


def test_converse(client):
    response = converse(client, "What is an inference profile?")
    text = text_of(response)
    assert text.startswith('You asked: "What is an inference profile?".')
    assert response["stopReason"] == "end_turn"
    usage = response["usage"]
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert response["metrics"]["latencyMs"] > 0
    assert response["ResponseMetadata"]["RequestId"]


def test_converse_is_deterministic(client):
    first = text_of(converse(client, "Same question, same answer?"))
    assert text_of(converse(client, "Same question, same answer?")) == first
    assert text_of(converse(client, "A different question?")) != first


def test_converse_stream_events_in_order_with_the_converse_text(client):
    whole = converse(client, "Stream this answer")
    stream = client.converse_stream(
        modelId=HAIKU, messages=user("Stream this answer"), inferenceConfig={"maxTokens": 500}
    )["stream"]
    kinds, text, metadata = [], "", None
    for event in stream:
        (kind,) = event.keys()
        kinds.append(kind)
        if kind == "contentBlockDelta":
            text += event[kind]["delta"]["text"]
        elif kind == "messageStop":
            assert event[kind]["stopReason"] == "end_turn"
        elif kind == "metadata":
            metadata = event[kind]
    assert kinds[0] == "messageStart"
    assert kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert set(kinds[1:-3]) == {"contentBlockDelta"} and len(kinds) > 5
    assert text == text_of(whole)
    assert metadata["usage"] == whole["usage"]


def test_invoke_model_with_an_anthropic_body(client):
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "system": "Answer briefly.",
        "messages": [{"role": "user", "content": "Hello from boto3"}],
    }
    response = client.invoke_model(modelId=HAIKU, body=json.dumps(body))
    message = json.loads(response["body"].read())
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"][0]["type"] == "text"
    assert message["stop_reason"] in ("end_turn", "max_tokens")
    assert message["usage"]["output_tokens"] <= 64
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert int(headers["x-amzn-bedrock-input-token-count"]) == message["usage"]["input_tokens"]
    assert int(headers["x-amzn-bedrock-output-token-count"]) == message["usage"]["output_tokens"]
    assert int(headers["x-amzn-bedrock-invocation-latency"]) > 0


def test_invoke_model_with_response_stream(client):
    body = json.dumps({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Stream via invoke"}],
    })
    whole = json.loads(client.invoke_model(modelId=HAIKU, body=body)["body"].read())
    events = [
        json.loads(event["chunk"]["bytes"])
        for event in client.invoke_model_with_response_stream(modelId=HAIKU, body=body)["body"]
    ]
    assert [e["type"] for e in events[:2]] == ["message_start", "content_block_start"]
    assert [e["type"] for e in events[-3:]] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == whole["content"][0]["text"]


def test_count_tokens_matches_converse_input_tokens(client):
    messages = user("Count these tokens, please")
    counted = client.count_tokens(modelId=HAIKU, input={"converse": {"messages": messages}})
    answered = client.converse(modelId=HAIKU, messages=messages, inferenceConfig={"maxTokens": 50})
    assert counted["inputTokens"] == answered["usage"]["inputTokens"]

    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50, "messages": messages_as_anthropic()}
    counted = client.count_tokens(modelId=HAIKU, input={"invokeModel": {"body": json.dumps(body)}})
    assert counted["inputTokens"] == answered["usage"]["inputTokens"]


def messages_as_anthropic():
    return [{"role": "user", "content": "Count these tokens, please"}]


def test_validation_exception(client):
    with pytest.raises(ClientError) as raised:
        converse(client, "x", inferenceConfig={"maxTokens": 1_000_000})
    error = raised.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert "exceeds the model limit" in error["Message"]
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(client.exceptions.ValidationException, match="model identifier is invalid"):
        converse(client, "x", modelId="anthropic.claude-does-not-exist")


def test_a_retired_model_is_resource_not_found(client):
    with pytest.raises(client.exceptions.ResourceNotFoundException) as raised:
        converse(client, "x", modelId=RETIRED)
    assert "reached the end of its life" in raised.value.response["Error"]["Message"]
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_throttling_after_the_rpm_quota(client, url):
    bucket = quoted(THROTTLE_BUCKET)
    # Resetting one bucket clears its window and statistics only; other suites keep theirs.
    admin(url, "POST", f"/_emulator/reset?model={bucket}")
    admin(url, "PUT", f"/_emulator/quotas/{bucket}", {"rpm": 2})
    try:
        for _ in range(2):
            converse(client, "hi", modelId=THROTTLE_BUCKET, inferenceConfig={"maxTokens": 10})
        with pytest.raises(client.exceptions.ThrottlingException) as raised:
            converse(client, "hi", modelId=THROTTLE_BUCKET, inferenceConfig={"maxTokens": 10})
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        stats = admin(url, "GET", "/_emulator/stats")["models"][THROTTLE_BUCKET]
        assert stats["throttled"] == {"rpm": 1, "tpm": 0}
        assert stats["succeeded"] == 2
        assert stats["window"]["rpm_limit"] == 2 and stats["window"]["requests"] == 2
    finally:
        admin(url, "DELETE", f"/_emulator/quotas/{bucket}")
    converse(client, "hi", modelId=THROTTLE_BUCKET, inferenceConfig={"maxTokens": 10})


def test_in_stream_error_arrives_inside_the_200(client, url):
    bucket = quoted(STREAM_FAULT_BUCKET)
    admin(url, "PUT", f"/_emulator/faults/{bucket}", {"stream_error_rate": 1.0})
    try:
        response = client.converse_stream(
            modelId=STREAM_FAULT_BUCKET, messages=user("Tell me a story"), inferenceConfig={"maxTokens": 300}
        )
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
        kinds = []
        with pytest.raises(EventStreamError) as raised:
            for event in response["stream"]:
                kinds.extend(event.keys())
        assert raised.value.response["Error"]["Code"] == "modelStreamErrorException"
        assert kinds[0] == "messageStart" and "contentBlockDelta" in kinds
        assert "messageStop" not in kinds
    finally:
        admin(url, "DELETE", f"/_emulator/faults/{bucket}")


def test_prompt_router_reports_the_invoked_model(client):
    router = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1"
    response = converse(client, "Short prompt", modelId=router)
    invoked = response["trace"]["promptRouter"]["invokedModelId"]
    assert invoked.startswith("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.")


def test_stats_report_requests_per_model(client, url):
    before = admin(url, "GET", "/_emulator/stats")["models"].get(HAIKU, {}).get("requests", 0)
    converse(client, "Counted?")
    after = admin(url, "GET", "/_emulator/stats")["models"][HAIKU]
    assert after["requests"] >= before + 1
    assert {"rpm", "tpm"} <= after["throttled"].keys()
    assert after["window"]["tpm_limit"] > 0

