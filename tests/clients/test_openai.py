"""The `openai` package, unchanged, pointed at the gateway with `base_url`."""

import json

import openai
import pytest

from conftest import TENANT

OPUS_BASE_MODEL = "anthropic.claude-opus-4-5-20251101-v1:0"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def client(url):
    # No retries: a test must see the gateway's first answer, not the SDK's third try.
    return openai.OpenAI(base_url=url, api_key="local", max_retries=0, default_headers={"x-tenant-id": TENANT})


def test_chat_completion_answers_whole_on_both_endpoints(base_url, stream_base_url, fresh_prompt):
    for url in (base_url, stream_base_url):
        completion = client(url).chat.completions.create(
            model="haiku",
            messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": fresh_prompt}],
            max_tokens=200,
            temperature=0,
        )
        assert completion.object == "chat.completion"
        choice = completion.choices[0]
        assert choice.message.role == "assistant"
        assert choice.message.content
        assert choice.finish_reason in ("stop", "length")
        assert completion.model.startswith("us.anthropic.claude-haiku")
        usage = completion.usage
        assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_streaming_with_usage_matches_the_whole_answer_and_a_hit_replays(stream_base_url, fresh_prompt):
    c = client(stream_base_url)
    request = dict(
        model="sonnet",
        messages=[{"role": "user", "content": fresh_prompt}],
        max_completion_tokens=300,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts, caches = [], []
    for _ in range(2):
        raw = c.chat.completions.with_raw_response.create(**request)
        caches.append(raw.headers.get("x-cache"))
        chunks = list(raw.parse())
        assert chunks[0].choices[0].delta.role == "assistant"
        content = [ch.choices[0].delta.content or "" for ch in chunks if ch.choices]
        assert sum(1 for piece in content if piece) > 1, "the answer arrives in several chunks"
        finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
        assert finishes in (["stop"], ["length"])
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
        texts.append("".join(content))
    assert caches == ["MISS", "HIT"]
    assert texts[0] == texts[1], "a HIT is the same answer, replayed as a stream"
    whole = c.chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": fresh_prompt}], max_completion_tokens=300, temperature=0
    )
    assert whole.choices[0].message.content == texts[0]
    assert whole.usage.prompt_tokens_details.cached_tokens == 0


def test_tool_calls_whole_and_streamed(stream_base_url, fresh_prompt):
    c = client(stream_base_url)
    messages = [{"role": "user", "content": f"What is the weather in Paris? {fresh_prompt}"}]
    completion = c.chat.completions.create(
        model="haiku", messages=messages, tools=[WEATHER_TOOL], tool_choice="required", max_tokens=200
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)

    stream = c.chat.completions.create(
        model="haiku",
        messages=messages,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=200,
        stream=True,
    )
    name, arguments, finish = None, "", None
    for chunk in stream:
        for delta_call in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            name = delta_call.function.name or name
            arguments += delta_call.function.arguments or ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert name == "get_weather" and finish == "tool_calls"
    assert "city" in json.loads(arguments)

    # The tool's result goes back as a `tool` message and the model answers in text.
    follow_up = messages + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 18}'},
    ]
    answer = c.chat.completions.create(model="haiku", messages=follow_up, tools=[WEATHER_TOOL], max_tokens=200)
    assert answer.choices[0].message.content


def test_errors_come_in_openais_shape(base_url, stream_base_url):
    c = client(stream_base_url)
    with pytest.raises(openai.BadRequestError) as unknown_model:
        c.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert unknown_model.value.status_code == 400
    assert unknown_model.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as unknown_parameter:
        c.chat.completions.create(
            model="haiku", messages=[{"role": "user", "content": "hi"}], extra_body={"frobnicate": True}
        )
    assert unknown_parameter.value.body["param"] == "frobnicate"
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="haiku", messages=[])
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="haiku", messages=[{"role": "wizard", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as buffered_stream:
        client(base_url).chat.completions.create(
            model="haiku", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    assert buffered_stream.value.body["param"] == "stream"


def test_a_throttled_model_is_a_rate_limit_error(stream_base_url, faulty_model, fresh_prompt):
    faulty_model(OPUS_BASE_MODEL, throttling_rate=1.0)
    with pytest.raises(openai.RateLimitError) as throttled:
        client(stream_base_url).chat.completions.create(
            model="opus", messages=[{"role": "user", "content": fresh_prompt}], max_tokens=100, stream=True
        )
    assert throttled.value.status_code == 429
    assert throttled.value.response.headers.get("retry-after")


def test_a_stream_cut_midway_ends_with_an_error_not_a_silent_stop(stream_base_url, faulty_model, fresh_prompt):
    faulty_model(OPUS_BASE_MODEL, stream_error_rate=1.0)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in client(stream_base_url).chat.completions.create(
            model="opus", messages=[{"role": "user", "content": fresh_prompt}], max_tokens=300, stream=True
        ):
            received.append(chunk)
    assert received, "what came before the cut was delivered"


def test_models_lists_tiers_auto_and_bedrock_ids(stream_base_url, base_url):
    for url in (stream_base_url, base_url):
        ids = {model.id for model in client(url).models.list()}
        assert {"auto", "haiku", "sonnet", "opus"} <= ids
        assert any(i.startswith("us.anthropic.claude-") for i in ids)
