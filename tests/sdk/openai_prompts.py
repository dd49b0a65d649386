"""Prompts from the gateway's registry through the official SDKs, unchanged: the OpenAI
Python SDK passes the `prompt` object through `extra_body` on chat completions and as
its own `prompt` parameter on the Responses API; the Anthropic SDK through `extra_body`.
The gateway runs with the `support` prompt of tests/it/prompts.rs (production -> 1,
staging -> 2).

Usage: python openai_prompts.py BASE_URL API_KEY
"""
import sys

import anthropic
import openai
from openai import OpenAI

base_url, key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)
variables = {"company": "ACME", "question": "how do refunds work"}

# chat completions: the object in extra_body; the version in a response header
raw = client.chat.completions.with_raw_response.create(
    model="chat", messages=[], extra_body={"prompt": {"id": "support", "variables": variables}}
)
assert raw.headers["x-switchyard-prompt"] == "support@1", raw.headers
c = raw.parse()
assert c.choices[0].message.content.endswith("Question: how do refunds work"), c

# streamed, with a label
text = ""
for chunk in client.chat.completions.create(
    model="chat",
    messages=[{"role": "user", "content": "one more"}],
    stream=True,
    extra_body={"prompt": {"id": "support", "label": "production", "variables": variables}},
):
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
assert text.endswith("one more"), text

# the Responses API's own parameter (OpenAI writes versions as strings)
r = client.responses.with_raw_response.create(
    model="chat", input="and shipping?", prompt={"id": "support", "version": "2", "variables": variables}
)
assert r.headers["x-switchyard-prompt"] == "support@2", r.headers
resp = r.parse()
assert resp.status in ("completed", "incomplete"), resp
assert resp.output_text.startswith("This is a mock reply to:"), resp.output_text

# a mistake is the SDK's own BadRequestError, with the variable named
try:
    client.chat.completions.create(
        model="chat", messages=[], extra_body={"prompt": {"id": "support", "variables": {"company": "ACME"}}}
    )
    raise AssertionError("a missing variable was accepted")
except openai.BadRequestError as e:
    assert "variable `question` is missing" in str(e), e

# the Anthropic SDK, extra_body on messages.create
ac = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0)
raw = ac.messages.with_raw_response.create(
    model="claude",
    max_tokens=64,
    messages=[{"role": "user", "content": "thanks"}],
    extra_body={"prompt": {"id": "support", "variables": variables}},
)
assert raw.headers["x-switchyard-prompt"] == "support@1", raw.headers
m = raw.parse()
assert m.content[0].text.endswith("thanks"), m
print("ok")
