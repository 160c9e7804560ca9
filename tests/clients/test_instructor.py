"""instructor in its default mode (TOOLS: a forced function call) against each provider's
specialist."""

import instructor
from openai import OpenAI
from pydantic import BaseModel


class User(BaseModel):
    name: str
    age: int
    emails: list[str]


def test_instructor_tools_mode_returns_the_model(base_url, specialist):
    client = instructor.from_openai(
        OpenAI(base_url=base_url, api_key="unused", timeout=20, max_retries=0))
    user = client.chat.completions.create(
        model=specialist,
        response_model=User,
        max_retries=0,
        messages=[{"role": "user", "content": "Ada is 36, ada@example.com."}],
    )
    assert isinstance(user, User)
    assert user.model_dump() == {"name": "x", "age": 1, "emails": ["x"]}
