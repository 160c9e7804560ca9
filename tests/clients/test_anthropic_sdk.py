"""The official Anthropic Python SDK against each provider's specialist through
`/v1/messages`: messages.create, messages.stream (text and the final message), a tool round
trip whole and streamed, count_tokens, and a bad key."""

import anthropic
import pytest

from conftest import KEYED_API_KEY

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
}
ASKED = {"role": "user", "content": "What is the weather in Paris?"}


def client(url, api_key="unused"):
    # The SDK sends the key as x-api-key, as Claude Code does.
    return anthropic.Anthropic(base_url=url, api_key=api_key, timeout=20, max_retries=0)


def test_messages_create(commander_url, specialist):
    message = client(commander_url).messages.create(
        model=specialist,
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": "Say hello to Paris"}],
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.stop_reason == "end_turn"
    [block] = message.content
    assert block.type == "text"
    assert "Say hello to Paris" in block.text
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0


def test_messages_stream_text_and_final_message(commander_url, specialist):
    with client(commander_url).messages.stream(
        model=specialist,
        max_tokens=200,
        messages=[{"role": "user", "content": "Stream to Rome"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "Stream to Rome" in text
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def tool_use_of(message):
    [call] = [b for b in message.content if b.type == "tool_use"]
    assert call.name == "get_weather"
    assert call.input == {"city": "x", "unit": "celsius"}
    return call


def test_tool_round_trip_whole(commander_url, specialist):
    sdk = client(commander_url)
    first = sdk.messages.create(
        model=specialist, max_tokens=200, tools=[WEATHER_TOOL], messages=[ASKED]
    )
    assert first.stop_reason == "tool_use"
    call = tool_use_of(first)
    second = sdk.messages.create(
        model=specialist,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[
            ASKED,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 degrees"},
            ]},
        ],
    )
    assert second.stop_reason == "end_turn"
    assert "sunny, 21 degrees" in second.content[0].text


def test_tool_call_streamed(commander_url, specialist):
    with client(commander_url).messages.stream(
        model=specialist,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[ASKED],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    tool_use_of(final)


def test_count_tokens(commander_url, specialist):
    sdk = client(commander_url)
    short = sdk.messages.count_tokens(
        model=specialist, messages=[{"role": "user", "content": "hi"}]
    ).input_tokens
    long = sdk.messages.count_tokens(
        model=specialist, messages=[{"role": "user", "content": "word " * 400}]
    ).input_tokens
    assert 0 < short < long


def test_a_bad_key_is_an_authentication_error(keyed_commander_url):
    with pytest.raises(anthropic.AuthenticationError) as refused:
        client(keyed_commander_url, api_key="cmdr_wrong").messages.create(
            model="keyed", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.status_code == 401
    assert "authentication_error" in str(refused.value.body)
    message = client(keyed_commander_url, api_key=KEYED_API_KEY).messages.create(
        model="keyed", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].type == "text"


def test_an_unknown_model_is_not_found(commander_url):
    with pytest.raises(anthropic.NotFoundError) as refused:
        client(commander_url).messages.create(
            model="claude-nobody", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )
    assert "claude-nobody" in str(refused.value)


THINKING = {"type": "enabled", "budget_tokens": 1024}


def test_thinking_on_anthropic_comes_back_whole_and_streamed_and_goes_back(commander_url):
    sdk = client(commander_url)
    message = sdk.messages.create(
        model="anthropic_specialist",
        max_tokens=2000,
        thinking=THINKING,
        messages=[{"role": "user", "content": "Think about Oslo"}],
    )
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert "Think about Oslo" in message.content[0].thinking
    assert message.content[0].signature == "fake-thinking-signature"

    with sdk.messages.stream(
        model="anthropic_specialist",
        max_tokens=2000,
        thinking=THINKING,
        messages=[{"role": "user", "content": "Think about Bergen"}],
    ) as stream:
        thought = "".join(
            event.thinking for event in stream if event.type == "thinking"
        )
        final = stream.get_final_message()
    assert "Think about Bergen" in thought
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == thought
    assert final.content[0].signature == "fake-thinking-signature"

    # A tool round trip while thinking sends the signed thinking block back, as Anthropic
    # requires; the upstream takes it.
    first = sdk.messages.create(
        model="anthropic_specialist",
        max_tokens=2000,
        thinking=THINKING,
        tools=[WEATHER_TOOL],
        messages=[ASKED],
    )
    assert first.content[0].type == "thinking"
    call = tool_use_of(first)
    second = sdk.messages.create(
        model="anthropic_specialist",
        max_tokens=2000,
        thinking=THINKING,
        tools=[WEATHER_TOOL],
        messages=[
            ASKED,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 degrees"},
            ]},
        ],
    )
    assert "sunny, 21 degrees" in second.content[-1].text
