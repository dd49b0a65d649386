"""Drives the Batch API with the official OpenAI Python SDK, unchanged.

Usage: python openai_batch.py BASE_URL API_KEY
Exits non-zero (with a traceback) on the first failed check.
"""
import io
import json
import sys
import time

import openai
from openai import OpenAI

base_url, key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)

lines = [
    {"custom_id": f"q-{i}", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "chat", "messages": [{"role": "user", "content": f"sdk batch {i}"}]}}
    for i in range(4)
]
data = "\n".join(json.dumps(l) for l in lines).encode()

f = client.files.create(file=("requests.jsonl", io.BytesIO(data)), purpose="batch")
assert f.id.startswith("file-") and f.bytes == len(data) and f.purpose == "batch", f
assert client.files.retrieve(f.id).filename == "requests.jsonl"
assert client.files.content(f.id).content == data

b = client.batches.create(
    input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"who": "sdk"}
)
assert b.status == "in_progress" and b.request_counts.total == 4, b
assert b.metadata == {"who": "sdk"}, b.metadata

deadline = time.time() + 30
while b.status not in ("completed", "failed", "cancelled"):
    assert time.time() < deadline, f"batch never finished: {b}"
    time.sleep(0.1)
    b = client.batches.retrieve(b.id)
assert b.status == "completed", b
assert b.request_counts.completed == 4 and b.request_counts.failed == 0, b.request_counts
assert b.error_file_id is None

out = client.files.content(b.output_file_id).text
answers = {}
for raw in out.splitlines():
    row = json.loads(raw)
    assert row["response"]["status_code"] == 200, row
    answers[row["custom_id"]] = row["response"]["body"]["choices"][0]["message"]["content"]
assert sorted(answers) == ["q-0", "q-1", "q-2", "q-3"], answers
assert answers["q-2"] == "This is a mock reply to: sdk batch 2", answers

listed = [x.id for x in client.batches.list(limit=10)]
assert b.id in listed, listed

# a finished batch cannot be cancelled; an unknown one is a 404
try:
    client.batches.cancel(b.id)
    raise AssertionError("expected BadRequestError")
except openai.BadRequestError:
    pass
try:
    client.batches.retrieve("batch_unknown")
    raise AssertionError("expected NotFoundError")
except openai.NotFoundError:
    pass

# cancel a batch while it runs
slow = client.with_options(default_headers={"x-mock-latency-ms": "200"})
b2 = slow.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
c = client.batches.cancel(b2.id)
assert c.status in ("cancelling", "cancelled"), c
deadline = time.time() + 30
while c.status != "cancelled":
    assert time.time() < deadline, f"batch never cancelled: {c}"
    time.sleep(0.1)
    c = client.batches.retrieve(b2.id)
assert c.request_counts.completed + c.request_counts.failed == 4, c.request_counts

print("openai sdk batch: all checks passed")
