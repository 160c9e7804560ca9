"""A spent budget as the official `openai` SDK meets it: `RateLimitError` with OpenAI's
quota shape (`insufficient_quota` / `budget_exceeded`), and no retry, because commander answers
`x-should-retry: false`."""

import json
import time
import urllib.request

import openai
import pytest

from conftest import BUDGET_ID


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def refusals(url):
    """`commander_budget_refusals_total` of the budget, from `/metrics`."""
    wanted = f'commander_budget_refusals_total{{budget="{BUDGET_ID}"}}'
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def summary_row(url, specialist):
    rows = get_json(f"{url}/usage/summary?group_by=specialist")["rows"]
    return next((row for row in rows if row["key"] == specialist), None)


def test_a_spent_budget_is_a_rate_limit_error_the_sdk_does_not_retry(budget_commander_url):
    client = openai.OpenAI(
        base_url=f"{budget_commander_url}/v1", api_key="unused", max_retries=3, timeout=20
    )
    before = refusals(budget_commander_url)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(
            model="metered", messages=[{"role": "user", "content": "hello"}]
        )
    error = raised.value
    assert error.status_code == 429
    assert error.code == "budget_exceeded"
    assert error.type == "insufficient_quota"
    assert error.body["type"] == "insufficient_quota", error.body
    assert BUDGET_ID in error.body["message"], error.body
    assert error.response.headers["x-should-retry"] == "false"

    # Exactly one refusal reached commander, and one usage row, at no cost.
    assert refusals(budget_commander_url) == before + 1
    deadline = time.monotonic() + 10
    while (row := summary_row(budget_commander_url, "metered")) is None:
        assert time.monotonic() < deadline, "the refusal's usage row was not written"
        time.sleep(0.05)
    assert (row["requests"], row["failures"], row["cost_usd"]) == (1, 1, 0.0), row

    # What no budget covers is answered.
    answer = client.chat.completions.create(
        model="unmetered", messages=[{"role": "user", "content": "hello"}]
    )
    assert answer.choices[0].message.content
