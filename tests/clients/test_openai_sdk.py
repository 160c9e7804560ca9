"""The OpenAI Python SDK against each provider's specialist: structured parsing and a
tool-calling round trip, whole and streamed."""

import json

from openai import OpenAI
from pydantic import BaseModel

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}


class Address(BaseModel):
    street: str
    number: int


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]
    address: Address
    nickname: str | None = None


def client(base_url):
    return OpenAI(base_url=base_url, api_key="unused", timeout=20, max_retries=0)


def test_parse_returns_the_pydantic_model(base_url, specialist):
    completion = client(base_url).chat.completions.parse(
        model=specialist,
        messages=[{"role": "user", "content": "Make up a person."}],
        response_format=Person,
    )
    person = completion.choices[0].message.parsed
    assert isinstance(person, Person)
    assert person.address.number == 1
    assert person.tags == ["x"]


def round_trip_messages(call_id, arguments):
    return [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21 degrees"},
    ]


def test_tool_call_round_trip_whole(base_url, specialist):
    openai = client(base_url)
    first = openai.chat.completions.create(
        model=specialist,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "x", "unit": "celsius"}

    second = openai.chat.completions.create(
        model=specialist,
        messages=round_trip_messages(call.id, call.function.arguments),
        tools=[WEATHER_TOOL],
    )
    assert "sunny, 21 degrees" in second.choices[0].message.content
    assert second.choices[0].finish_reason == "stop"


def test_tool_call_round_trip_streamed(base_url, specialist):
    openai = client(base_url)
    calls = {}
    finish = None
    with openai.chat.completions.create(
        model=specialist,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    ) as stream:
        for chunk in stream:
            for choice in chunk.choices:
                for delta in choice.delta.tool_calls or []:
                    call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
                    if delta.id:
                        call["id"] = delta.id
                    if delta.function and delta.function.name:
                        call["name"] = delta.function.name
                    if delta.function and delta.function.arguments:
                        call["arguments"] += delta.function.arguments
                finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0]
    call = calls[0]
    assert call["id"] and call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "x", "unit": "celsius"}

    text = ""
    with openai.chat.completions.create(
        model=specialist,
        messages=round_trip_messages(call["id"], call["arguments"]),
        tools=[WEATHER_TOOL],
        stream=True,
    ) as stream:
        for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
    assert "sunny, 21 degrees" in text
