"""Drives the gateway with the official OpenAI Python SDK, unchanged.

Usage: python openai_sdk.py BASE_URL API_KEY
Exits non-zero (with a traceback) on the first failed check.
"""
import json
import sys

import openai
from openai import OpenAI

base_url, key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)

# chat, non-stream
r = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hello sdk"}])
assert r.choices[0].message.content == "This is a mock reply to: hello sdk", r
assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, r.usage

# raw response headers
raw = client.chat.completions.with_raw_response.create(
    model="chat", messages=[{"role": "user", "content": "hello headers"}]
)
assert raw.headers.get("x-switchyard-provider") == "up", dict(raw.headers)

# chat, stream with usage
text, usage = "", None
stream = client.chat.completions.create(
    model="chat",
    messages=[{"role": "user", "content": "hello stream"}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage
assert text == "This is a mock reply to: hello stream", text
assert usage is not None and usage.total_tokens > 0, usage

# embeddings: the SDK asks for base64 and decodes it to floats
e = client.embeddings.create(model="embed", input=["a", "b"])
assert len(e.data) == 2 and len(e.data[0].embedding) == 16, e
assert abs(sum(v * v for v in e.data[0].embedding) - 1.0) < 1e-3

# moderations: OpenAI's format, every category field present
mod = client.moderations.create(input=["I will kill you", "What a nice day"])
assert mod.results[0].flagged and mod.results[0].categories.violence, mod
assert not mod.results[1].flagged, mod
assert mod.results[0].category_scores.violence >= 0.5, mod

# structured outputs with the SDK's parse (a pydantic model becomes a json_schema)
from pydantic import BaseModel


class City(BaseModel):
    name: str
    population: int
    capital: bool


parsed = client.chat.completions.parse(
    model="chat", messages=[{"role": "user", "content": "Lisbon"}], response_format=City
)
city = parsed.choices[0].message.parsed
assert isinstance(city, City) and city.name == "Lisbon" and city.population == 1, parsed
# the same against an Anthropic-served alias (mapped to its output_config.format)
parsed = client.chat.completions.parse(
    model="claude", messages=[{"role": "user", "content": "Lisbon"}], response_format=City
)
assert parsed.choices[0].message.parsed.name == "Lisbon", parsed

# a function tool: the mock calls it with arguments that match its schema
weather = [{"type": "function", "function": {"name": "weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"]}}}]
r = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "Oslo"}], tools=weather)
call = r.choices[0].message.tool_calls[0]
assert r.choices[0].finish_reason == "tool_calls" and call.function.name == "weather", r
assert json.loads(call.function.arguments) == {"city": "Oslo", "days": 1}, call

# models
ids = [m.id for m in client.models.list()]
assert "chat" in ids and "embed" in ids, ids
assert client.models.retrieve("chat").id == "chat"
try:
    client.models.retrieve("no-such-model")
    raise AssertionError("expected NotFoundError")
except openai.NotFoundError:
    pass

# errors map to the SDK's exception types
try:
    client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected NotFoundError")
except openai.NotFoundError as err:
    assert err.status_code == 404

try:
    OpenAI(base_url=base_url + "/v1", api_key="sk-wrong", max_retries=0).models.list()
    raise AssertionError("expected AuthenticationError")
except openai.AuthenticationError:
    pass

# a stream cut mid-way raises instead of ending quietly
try:
    s = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "cut this stream"}],
        stream=True,
        extra_headers={"x-mock-disconnect-after": "2"},
    )
    for _ in s:
        pass
    raise AssertionError("expected APIError from the error event")
except openai.APIError:
    pass

# a prompt-cache breakpoint set the way OpenAI clients write it for Anthropic models
# reaches Anthropic; the cache write comes back in usage
r = client.chat.completions.create(model="claude", messages=[
    {"role": "system", "content": [{"type": "text", "text": "a long system prompt", "cache_control": {"type": "ephemeral"}}]},
    {"role": "user", "content": "cache this"}])
details = r.usage.prompt_tokens_details
assert details.cache_write_tokens == r.usage.prompt_tokens > 0, r.usage

# a model served by Anthropic, with a streamed tool call, through the same SDK
tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"query": {"type": "string"}}}}}]
r = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi claude"}])
assert r.choices[0].message.content == "This is a mock reply to: hi claude", r
args, name = "", None
for chunk in client.chat.completions.create(
    model="claude", messages=[{"role": "user", "content": "find Paris"}], tools=tools, stream=True
):
    for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
        name = call.function.name or name
        args += call.function.arguments or ""
assert name == "lookup" and json.loads(args) == {"query": "find Paris"}, (name, args)

print("openai sdk: all checks passed")
