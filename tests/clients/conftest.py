"""The official OpenAI and Anthropic clients against the gateway's local stack.

`cargo xtask test` sets the URLs: GATEWAY_BASE_URL is invoke-with-cache (answers whole, as
behind API Gateway's HTTP API), GATEWAY_STREAM_BASE_URL is invoke-stream (the Function URL
that streams), both under `cargo lambda watch`, and EMULATOR_URL the Bedrock emulator whose
admin API injects faults.
"""

import json
import os
import urllib.request
import uuid

import pytest

TENANT = "official-sdks"


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests through `cargo xtask test`")
    return value.rstrip("/")


@pytest.fixture(scope="session")
def base_url():
    return _env("GATEWAY_BASE_URL")


@pytest.fixture(scope="session")
def stream_base_url():
    return _env("GATEWAY_STREAM_BASE_URL")


@pytest.fixture(scope="session")
def emulator_url():
    return _env("EMULATOR_URL")


@pytest.fixture
def fresh_prompt():
    """A prompt no earlier run asked, so its first answer is a MISS."""
    return f"Name three uses of a cache. (run {uuid.uuid4().hex[:12]})"


def _admin(url, method, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


@pytest.fixture
def faulty_model(emulator_url):
    """Sets fault rates on one model for the test, and always clears them afterwards."""
    touched = []

    def apply(model_id, **rates):
        touched.append(model_id)
        _admin(f"{emulator_url}/_emulator/faults/{model_id}", "PUT", rates)

    yield apply
    for model_id in touched:
        _admin(f"{emulator_url}/_emulator/faults/{model_id}", "DELETE")
