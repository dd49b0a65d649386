"""Drives POST /v1/messages with the official Anthropic Python SDK, unchanged, against
models served by an OpenAI-format upstream ("chat") and an Anthropic one ("claude").

Usage: python anthropic_sdk.py BASE_URL API_KEY
Exits non-zero (with a traceback) on the first failed check.
"""
import json
import sys

import anthropic
from anthropic import Anthropic

base_url, key = sys.argv[1], sys.argv[2]
client = Anthropic(base_url=base_url, api_key=key, max_retries=0)

# non-stream, served by an OpenAI-compatible upstream
m = client.messages.create(
    model="chat", max_tokens=128, system="be brief", messages=[{"role": "user", "content": "hello sdk"}]
)
assert m.content[0].type == "text" and m.content[0].text == "This is a mock reply to: hello sdk", m
assert m.stop_reason == "end_turn" and m.usage.input_tokens > 0 and m.usage.output_tokens > 0, m

# streaming helpers: text_stream and the final message
with client.messages.stream(
    model="chat", max_tokens=128, messages=[{"role": "user", "content": "stream sdk"}]
) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
assert text == "This is a mock reply to: stream sdk", text
assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0, final

# tools through an Anthropic upstream, streamed, then the tool result
tools = [{"name": "lookup", "description": "find", "input_schema": {"type": "object",
          "properties": {"query": {"type": "string"}}}}]
with client.messages.stream(
    model="claude", max_tokens=128, tools=tools, messages=[{"role": "user", "content": "find Lisbon"}]
) as stream:
    final = stream.get_final_message()
use = [b for b in final.content if b.type == "tool_use"][0]
assert final.stop_reason == "tool_use" and use.name == "lookup" and use.input == {"query": "find Lisbon"}, final
m = client.messages.create(
    model="claude", max_tokens=128, tools=tools,
    messages=[
        {"role": "user", "content": "find Lisbon"},
        {"role": "assistant", "content": final.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "found"}]},
    ],
)
assert m.stop_reason == "end_turn", m

# count_tokens: the gateway's count, in Anthropic's shape
short = client.messages.count_tokens(model="claude", messages=[{"role": "user", "content": "hi"}])
long = client.messages.count_tokens(
    model="claude", system="be brief", messages=[{"role": "user", "content": "hi " * 200}]
)
assert 0 < short.input_tokens < long.input_tokens, (short, long)
try:
    client.messages.count_tokens(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected NotFoundError")
except anthropic.NotFoundError:
    pass

# a system turn inside the conversation (Claude Code sends one)
m = client.messages.create(
    model="claude",
    max_tokens=64,
    messages=[
        {"role": "user", "content": "first"},
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "second"},
    ],
)
assert m.type == "message", m

# structured output with the SDK's parse (output_config.format): natively to the
# Anthropic upstream, and mapped to response_format for the OpenAI-format one
from pydantic import BaseModel


class City(BaseModel):
    name: str
    population: int


for model in ["claude", "chat"]:
    parsed = client.messages.parse(
        model=model, max_tokens=256, output_format=City, messages=[{"role": "user", "content": "Porto"}]
    )
    assert isinstance(parsed.parsed_output, City) and parsed.parsed_output.name == "Porto", (model, parsed)

# thinking and output_config reach an OpenAI-format target as reasoning_effort and
# response_format: nothing is reported dropped
raw = client.messages.with_raw_response.create(
    model="chat", max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048},
    output_config={"format": {"type": "json_schema", "schema": {"type": "object", "properties": {"a": {"type": "string"}},
                                                               "required": ["a"], "additionalProperties": False}}},
    messages=[{"role": "user", "content": "think"}],
)
assert raw.headers.get("x-switchyard-dropped-fields") is None, dict(raw.headers)
assert json.loads(raw.parse().content[0].text) == {"a": "think"}, raw.parse()

# a cache_control breakpoint reaches Anthropic (same format, same bytes): it writes the cache
m = client.messages.create(model="claude", max_tokens=64,
                           system=[{"type": "text", "text": "a long system prompt", "cache_control": {"type": "ephemeral"}}],
                           messages=[{"role": "user", "content": "cached"}])
assert m.usage.cache_creation_input_tokens > 0 and m.usage.cache_read_input_tokens == 0, m.usage

# web search: natively to Anthropic (its server tool blocks as they came), and mapped
# for an OpenAI-format target (its annotations as Anthropic citations)
search = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]
m = client.messages.create(model="claude", max_tokens=256, tools=search,
                           messages=[{"role": "user", "content": "Lisbon weather"}])
assert [b.type for b in m.content] == ["server_tool_use", "web_search_tool_result", "text"], m.content
assert m.content[2].citations[0].url == "https://search.mock/lisbon", m.content[2]
m = client.messages.create(model="chat", max_tokens=256, tools=search,
                           messages=[{"role": "user", "content": "Porto weather"}])
assert m.content[0].citations[0].url == "https://search.mock/porto", m.content
with client.messages.stream(model="chat", max_tokens=256, tools=search,
                            messages=[{"role": "user", "content": "Faro weather"}]) as s:
    final = s.get_final_message()
assert final.content[0].citations[0].url == "https://search.mock/faro", final.content

# errors map to the SDK's exception types
try:
    client.messages.create(model="nope", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected NotFoundError")
except anthropic.NotFoundError:
    pass
try:
    Anthropic(base_url=base_url, api_key="sk-wrong", max_retries=0).messages.create(
        model="chat", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected AuthenticationError")
except anthropic.AuthenticationError:
    pass

print("anthropic sdk: all checks passed")
