"""The OpenAI Python SDK's Responses API (`/v1/responses`) against each provider's specialist:
whole, streamed (raw events and the `responses.stream` helper, which checks the events
strictly), a function-call round trip, structured output, and the stateless door's refusal
of `previous_response_id`."""

import json

import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

WEATHER_TOOL = {
    "type": "function",
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
    "strict": False,
}


class City(BaseModel):
    name: str
    population: int


def client(base_url):
    return OpenAI(base_url=base_url, api_key="unused", timeout=20, max_retries=0)


def test_create_returns_a_response(base_url, specialist):
    response = client(base_url).responses.create(
        model=specialist,
        input="Hello there",
        instructions="Be brief.",
        metadata={"suite": "clients"},
    )
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text == "You said: Hello there"
    assert response.output[0].type == "message"
    assert response.instructions == "Be brief."
    assert response.metadata == {"suite": "clients"}
    assert response.store is False
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_create_streamed_gives_numbered_typed_events(base_url, specialist):
    events = list(client(base_url).responses.create(
        model=specialist, input="Stream this", stream=True,
    ))
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "You said: Stream this"
    final = events[-1].response
    assert final.status == "completed"
    assert final.output_text == text
    assert final.usage.output_tokens > 0


def test_stream_helper_accumulates_the_final_response(base_url, specialist):
    with client(base_url).responses.stream(model=specialist, input="Stream me") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "You said: Stream me" == "".join(deltas)
    assert final.usage.total_tokens > 0


def function_call_of(response):
    [call] = [item for item in response.output if item.type == "function_call"]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "x", "unit": "celsius"}
    return call


def test_function_call_round_trip(base_url, specialist):
    sdk = client(base_url)
    conversation = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = sdk.responses.create(model=specialist, input=conversation, tools=[WEATHER_TOOL])
    call = function_call_of(first)
    # The SDK's documented loop: the output items go back in, then the tool's result.
    conversation += first.output
    conversation.append(
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 degrees"}
    )
    second = sdk.responses.create(model=specialist, input=conversation, tools=[WEATHER_TOOL])
    assert "sunny, 21 degrees" in second.output_text
    assert second.status == "completed"


def test_function_call_round_trip_streamed(base_url, specialist):
    sdk = client(base_url)
    conversation = [{"role": "user", "content": "What is the weather in Paris?"}]
    with sdk.responses.stream(model=specialist, input=conversation, tools=[WEATHER_TOOL]) as stream:
        argument_deltas = [
            event.delta for event in stream
            if event.type == "response.function_call_arguments.delta"
        ]
        first = stream.get_final_response()
    call = function_call_of(first)
    assert "".join(argument_deltas) == call.arguments
    conversation += first.output
    conversation.append(
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 degrees"}
    )
    with sdk.responses.stream(model=specialist, input=conversation, tools=[WEATHER_TOOL]) as stream:
        second = stream.get_final_response()
    assert "sunny, 21 degrees" in second.output_text


def test_parse_returns_the_pydantic_model(base_url, specialist):
    response = client(base_url).responses.parse(
        model=specialist, input="Name a city.", text_format=City,
    )
    city = response.output_parsed
    assert isinstance(city, City)
    assert city == City(name="x", population=1)


def test_previous_response_id_is_refused_as_stateless(base_url, specialist):
    with pytest.raises(openai.BadRequestError) as refused:
        client(base_url).responses.create(
            model=specialist, input="And then?", previous_response_id="resp_earlier",
        )
    error = refused.value
    assert error.status_code == 400
    assert error.param == "previous_response_id"
    assert "stateless" in error.message
