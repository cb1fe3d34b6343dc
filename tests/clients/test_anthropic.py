"""The `anthropic` package, unchanged, pointed at the gateway with `base_url`."""

import anthropic
import pytest

from conftest import TENANT

OPUS_BASE_MODEL = "anthropic.claude-opus-4-5-20251101-v1:0"

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def client(v1_url):
    # The Anthropic SDK adds /v1 itself.
    root = v1_url.removesuffix("/v1")
    return anthropic.Anthropic(base_url=root, api_key="local", max_retries=0, default_headers={"x-tenant-id": TENANT})


def test_messages_answer_whole(base_url, stream_base_url, fresh_prompt):
    for url in (base_url, stream_base_url):
        message = client(url).messages.create(
            model="haiku",
            max_tokens=200,
            system="You are terse.",
            messages=[{"role": "user", "content": fresh_prompt}],
        )
        assert message.type == "message" and message.role == "assistant"
        assert message.content[0].type == "text" and message.content[0].text
        assert message.stop_reason in ("end_turn", "max_tokens")
        assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_streaming_and_a_hit_replayed_as_a_stream(stream_base_url, fresh_prompt):
    c = client(stream_base_url)
    texts = []
    for _ in range(2):
        with c.messages.stream(
            model="sonnet", max_tokens=300, messages=[{"role": "user", "content": fresh_prompt}]
        ) as stream:
            pieces = list(stream.text_stream)
            final = stream.get_final_message()
        assert len([p for p in pieces if p]) > 1
        assert final.usage.output_tokens > 0
        assert final.stop_reason in ("end_turn", "max_tokens")
        texts.append("".join(pieces))
    assert texts[0] == texts[1]
    whole = c.messages.create(model="sonnet", max_tokens=300, messages=[{"role": "user", "content": fresh_prompt}])
    assert whole.content[0].text == texts[0]


def test_tool_use(stream_base_url, fresh_prompt):
    c = client(stream_base_url)
    messages = [{"role": "user", "content": f"What is the weather in Paris? {fresh_prompt}"}]
    message = c.messages.create(
        model="haiku", max_tokens=200, tools=[WEATHER_TOOL], tool_choice={"type": "any"}, messages=messages
    )
    assert message.stop_reason == "tool_use"
    call = next(block for block in message.content if block.type == "tool_use")
    assert call.name == "get_weather" and "city" in call.input

    with c.messages.stream(
        model="haiku",
        max_tokens=200,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=messages,
    ) as stream:
        final = stream.get_final_message()
    streamed = next(block for block in final.content if block.type == "tool_use")
    assert streamed.name == "get_weather" and "city" in streamed.input

    follow_up = messages + [
        {"role": "assistant", "content": [call.model_dump()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees"}]},
    ]
    answer = c.messages.create(model="haiku", max_tokens=200, tools=[WEATHER_TOOL], messages=follow_up)
    assert answer.content[0].type == "text"


def test_errors_come_in_anthropics_shape(stream_base_url):
    c = client(stream_base_url)
    with pytest.raises(anthropic.BadRequestError) as unknown_model:
        c.messages.create(model="no-such-model", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert unknown_model.value.status_code == 400
    assert unknown_model.value.body["type"] == "error"
    assert unknown_model.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError):
        c.messages.create(model="haiku", max_tokens=50, messages=[])


def test_a_stream_cut_midway_raises(stream_base_url, faulty_model, fresh_prompt):
    faulty_model(OPUS_BASE_MODEL, stream_error_rate=1.0)
    with pytest.raises(anthropic.APIStatusError):
        with client(stream_base_url).messages.stream(
            model="opus", max_tokens=300, messages=[{"role": "user", "content": fresh_prompt}]
        ) as stream:
            for _ in stream.text_stream:
                pass
