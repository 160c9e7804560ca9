"""The OpenAI Python SDK's `embeddings.create` against embedding specialists on OpenAI's and
Gemini's fakes and on the mock: the SDK's default (base64, which it decodes itself), floats,
a list, dimensions, and a chat specialist refused."""

import openai
import pytest
from openai import OpenAI


def client(base_url):
    return OpenAI(base_url=base_url, api_key="unused", timeout=20, max_retries=0)


def test_the_sdk_default_base64_decodes_to_the_float_answer(base_url, embedder):
    sdk = client(base_url)
    # No encoding_format: the SDK asks for base64 and decodes the little-endian f32 bytes.
    default = sdk.embeddings.create(model=embedder, input="quarterly revenue")
    floats = sdk.embeddings.create(
        model=embedder, input="quarterly revenue", encoding_format="float"
    )
    assert len(default.data) == 1
    vector = default.data[0].embedding
    assert len(vector) == 8 and all(isinstance(x, float) for x in vector)
    assert vector == pytest.approx(floats.data[0].embedding, rel=1e-6, abs=1e-7)
    assert default.usage.prompt_tokens > 0
    assert default.usage.total_tokens == default.usage.prompt_tokens


def test_a_list_comes_back_in_input_order(base_url, embedder):
    texts = ["alpha", "beta", "gamma", "alpha"]
    result = client(base_url).embeddings.create(
        model=embedder, input=texts, encoding_format="float"
    )
    assert [item.index for item in result.data] == [0, 1, 2, 3]
    vectors = [item.embedding for item in result.data]
    assert vectors[0] == vectors[3], "the same text, the same vector"
    assert vectors[0] != vectors[1]
    assert result.object == "list" and result.model


def test_dimensions_are_honoured(base_url, embedder):
    result = client(base_url).embeddings.create(model=embedder, input=["a", "b"], dimensions=3)
    assert [len(item.embedding) for item in result.data] == [3, 3]


def test_a_chat_specialist_is_a_bad_request(base_url):
    with pytest.raises(openai.BadRequestError) as refused:
        client(base_url).embeddings.create(model="openai_specialist", input="x")
    assert "chat specialist" in str(refused.value)
