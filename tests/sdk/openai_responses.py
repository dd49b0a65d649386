"""Drives the gateway's Responses API with the official OpenAI Python SDK, unchanged:
create, stream (raw events and the SDK's stream helper), function tools across turns
with previous_response_id, structured output through `parse`, retrieve, input items,
delete, and errors. The `chat` alias is an OpenAI-format (chat) upstream, `claude` an
Anthropic one (the request is translated both ways), `gpt` an `openai` provider's
Responses endpoint (the request passed through whole).

Usage: python openai_responses.py BASE_URL API_KEY
Exits non-zero (with a traceback) on the first failed check.
"""
import json
import sys

import openai
from openai import OpenAI
from pydantic import BaseModel

base_url, key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)

for model in ["chat", "claude", "gpt"]:
    # create: text in, text out, usage, instructions echoed
    r = client.responses.create(model=model, instructions="be brief", input="hello responses")
    assert r.object == "response" and r.status == "completed", r
    assert r.id.startswith("resp_"), r.id
    assert r.output_text == "This is a mock reply to: hello responses", r.output_text
    assert r.instructions == "be brief", r
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0, r.usage
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens, r.usage

    # a later turn continues it; the stored one can be read back
    r2 = client.responses.create(model=model, previous_response_id=r.id, input="and again")
    assert r2.previous_response_id == r.id and r2.output_text == "This is a mock reply to: and again", r2
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text, got
    items = client.responses.input_items.list(r2.id, order="asc")
    texts = [i.content[0].text for i in items.data if i.type == "message"]
    assert texts == ["hello responses", r.output_text, "and again"], texts
    assert all(i.id for i in items.data), items

    # streamed: the documented events, in order, numbered
    kinds, text, seqs = [], "", []
    for ev in client.responses.create(model=model, input="hello stream", stream=True):
        kinds.append(ev.type)
        seqs.append(ev.sequence_number)
        if ev.type == "response.output_text.delta":
            text += ev.delta
        if ev.type == "response.completed":
            final = ev.response
    assert text == "This is a mock reply to: hello stream", text
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
    assert seqs == list(range(len(seqs))), seqs
    assert final.output_text == text and final.usage.output_tokens > 0, final
    # a streamed response is stored too, before its last event reaches the client
    assert client.responses.retrieve(final.id).output_text == text

    # the SDK's stream helper
    with client.responses.stream(model=model, input="helper stream") as s:
        for _ in s:
            pass
        done = s.get_final_response()
    assert done.output_text == "This is a mock reply to: helper stream", done

    # function tools: the call, then its output in the next turn
    tools = [{"type": "function", "name": "weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    r = client.responses.create(model=model, input="Oslo", tools=tools)
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "weather", r.output
    # (the OpenAI-format mock fills the schema from the prompt; the Anthropic one sends `query`)
    assert "Oslo" in json.loads(calls[0].arguments).values(), calls[0]
    r = client.responses.create(model=model, previous_response_id=r.id, tools=tools, input=[
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}])
    # (the Anthropic mock answers the last user turn's text, which is the tool result there)
    assert r.output_text.startswith("This is a mock reply to:"), r.output_text
    assert not [o for o in r.output if o.type == "function_call"], r.output
    if model == "chat":
        assert r.output_text == "This is a mock reply to: Oslo", r.output_text

    # a streamed function call
    args, name = "", None
    for ev in client.responses.create(model=model, input="Bergen", tools=tools, stream=True):
        if ev.type == "response.output_item.added" and ev.item.type == "function_call":
            name = ev.item.name
        if ev.type == "response.function_call_arguments.delta":
            args += ev.delta
    assert name == "weather" and "Bergen" in json.loads(args).values(), (name, args)


# web search, the hosted tool every format has: run by the provider, its sources cited
for model in ["chat", "claude"]:
    r = client.responses.create(model=model, input="Lisbon weather today", tools=[{"type": "web_search"}])
    kinds = [o.type for o in r.output]
    assert kinds == ["web_search_call", "message"], (model, kinds)
    ann = r.output[1].content[0].annotations
    assert ann and ann[0].type == "url_citation" and ann[0].url == "https://search.mock/lisbon", (model, ann)
    added = [ev for ev in client.responses.create(model=model, input="Porto news", tools=[{"type": "web_search"}], stream=True)
             if ev.type == "response.output_text.annotation.added"]
    assert added and added[0].annotation["url"] == "https://search.mock/porto", (model, added)
r = client.responses.create(model="gpt", input="Faro", tools=[{"type": "web_search"}])
assert r.output[1].type == "web_search_call", r.output  # OpenAI's own search, passed through

# structured output with the SDK's parse (text.format json_schema)
class City(BaseModel):
    name: str
    population: int


for model in ["chat", "claude", "gpt"]:
    parsed = client.responses.parse(model=model, input="Lisbon", text_format=City)
    assert isinstance(parsed.output_parsed, City) and parsed.output_parsed.name == "Lisbon", (model, parsed)

# not stored: no later turn, no retrieve
r = client.responses.create(model="chat", input="forget me", store=False)
try:
    client.responses.retrieve(r.id)
    raise AssertionError("expected NotFoundError")
except openai.NotFoundError:
    pass

# delete
r = client.responses.create(model="chat", input="delete me")
client.responses.delete(r.id)
try:
    client.responses.retrieve(r.id)
    raise AssertionError("expected NotFoundError after delete")
except openai.NotFoundError:
    pass

# errors in the SDK's exception types
for bad in [
    dict(model="chat", input="x", previous_response_id="resp_doesnotexist"),
    dict(model="chat", input="x", tools=[{"type": "file_search", "vector_store_ids": ["vs_1"]}]),
    dict(model="chat", input="x", background=True),
]:
    try:
        client.responses.create(**bad)
        raise AssertionError(f"expected BadRequestError for {bad}")
    except openai.BadRequestError as err:
        assert err.status_code == 400, err
try:
    client.responses.create(model="nope", input="x")
    raise AssertionError("expected NotFoundError")
except openai.NotFoundError:
    pass

print("openai responses sdk: all checks passed")
