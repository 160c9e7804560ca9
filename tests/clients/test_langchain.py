"""LangChain's ChatOpenAI against each provider's specialist: bound tools and structured
output."""

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel


@tool
def get_weather(city: str, days: int) -> str:
    """The weather forecast for a city."""
    return f"sunny in {city} for {days} days"


class Forecast(BaseModel):
    """A weather forecast."""

    city: str
    temperature: float
    sunny: bool


def chat(base_url, specialist):
    return ChatOpenAI(model=specialist, base_url=base_url, api_key="unused",
                      timeout=20, max_retries=0)


def test_bind_tools_returns_tool_calls(base_url, specialist):
    message = chat(base_url, specialist).bind_tools([get_weather]).invoke(
        "What is the weather in Paris for three days?")
    [call] = message.tool_calls
    assert call["name"] == "get_weather"
    assert call["args"] == {"city": "x", "days": 1}
    assert call["id"]


def test_with_structured_output_returns_the_model(base_url, specialist):
    forecast = chat(base_url, specialist).with_structured_output(Forecast).invoke(
        "Forecast Paris.")
    assert forecast == Forecast(city="x", temperature=1.0, sunny=True)
