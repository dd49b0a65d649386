// Drives the gateway with the Node clients platform teams run, unchanged: the OpenAI
// Node SDK, the Anthropic TypeScript SDK and the Vercel AI SDK's default `openai()`
// (Responses API) and `anthropic()` providers. The `chat` alias is an OpenAI-format
// (chat) upstream, `claude` an Anthropic one, `gpt` an `openai` provider's Responses
// endpoint (a Responses request passed through whole).
//
// Usage: node clients.mjs BASE_URL API_KEY  (exits non-zero on the first failed check)
import assert from "node:assert/strict";

import Anthropic from "@anthropic-ai/sdk";
import { zodOutputFormat } from "@anthropic-ai/sdk/helpers/zod";
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, Output, stepCountIs, streamText, tool } from "ai";
import OpenAI from "openai";
import { zodResponseFormat, zodTextFormat } from "openai/helpers/zod";
import { z } from "zod";

const [baseURL, apiKey] = process.argv.slice(2);
const City = z.object({ name: z.string(), population: z.number().int() });
const reply = (text) => `This is a mock reply to: ${text}`;

async function check(name, f) {
  try {
    await f();
  } catch (e) {
    console.error(`FAILED: ${name}`);
    throw e;
  }
}

// ---- the OpenAI Node SDK
const openai = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey, maxRetries: 0 });
await check("openai chat", async () => {
  const r = await openai.chat.completions.create({ model: "chat", messages: [{ role: "user", content: "hi node" }] });
  assert.equal(r.choices[0].message.content, reply("hi node"));
  let text = "";
  const s = await openai.chat.completions.create({
    model: "claude", stream: true, messages: [{ role: "user", content: "stream node" }],
  });
  for await (const c of s) text += c.choices[0]?.delta?.content ?? "";
  assert.equal(text, reply("stream node"));
  const e = await openai.embeddings.create({ model: "embed", input: ["a", "b"] });
  assert.equal(e.data.length, 2);
  assert.equal((await openai.models.retrieve("chat")).id, "chat");
  const p = await openai.chat.completions.parse({
    model: "claude", messages: [{ role: "user", content: "Lisbon" }], response_format: zodResponseFormat(City, "city"),
  });
  assert.equal(p.choices[0].message.parsed.name, "Lisbon");
});
await check("openai responses", async () => {
  for (const model of ["chat", "claude", "gpt"]) {
    const r = await openai.responses.create({ model, instructions: "be brief", input: "hello node" });
    assert.equal(r.output_text, reply("hello node"));
    const r2 = await openai.responses.create({ model, previous_response_id: r.id, input: "again" });
    assert.equal(r2.output_text, reply("again"));
    const stream = openai.responses.stream({ model, input: "stream it" });
    const types = [];
    for await (const ev of stream) types.push(ev.type);
    const done = await stream.finalResponse();
    assert.equal(done.output_text, reply("stream it"));
    assert.equal(types.at(-1), "response.completed");
    const parsed = await openai.responses.parse({ model, input: "Porto", text: { format: zodTextFormat(City, "city") } });
    assert.equal(parsed.output_parsed.name, "Porto");
    const tools = [{ type: "function", name: "weather", strict: false,
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } }];
    const call = (await openai.responses.create({ model, input: "Oslo", tools })).output.find((o) => o.type === "function_call");
    assert.equal(call.name, "weather");
    assert.ok(Object.values(JSON.parse(call.arguments)).includes("Oslo"), call.arguments);
    const retrieved = await openai.responses.retrieve(r.id);
    assert.equal(retrieved.id, r.id);
  }
  await assert.rejects(openai.responses.create({ model: "nope", input: "x" }), OpenAI.NotFoundError);
});

// ---- the Anthropic TypeScript SDK
const anthropic = new Anthropic({ baseURL, apiKey, maxRetries: 0 });
await check("anthropic sdk", async () => {
  for (const model of ["claude", "chat"]) {
    const m = await anthropic.messages.create({ model, max_tokens: 128, messages: [{ role: "user", content: "hi ts" }] });
    assert.equal(m.content[0].text, reply("hi ts"));
    const stream = anthropic.messages.stream({ model, max_tokens: 128, messages: [{ role: "user", content: "ts stream" }] });
    const final = await stream.finalMessage();
    assert.equal(final.content[0].text, reply("ts stream"));
    const parsed = await anthropic.messages.parse({
      model, max_tokens: 256, messages: [{ role: "user", content: "Faro" }], output_config: { format: zodOutputFormat(City) },
    });
    assert.equal(parsed.parsed_output.name, "Faro");
  }
  const n = await anthropic.messages.countTokens({ model: "claude", messages: [{ role: "user", content: "hi" }] });
  assert.ok(n.input_tokens > 0);
  await assert.rejects(
    anthropic.messages.create({ model: "nope", max_tokens: 8, messages: [{ role: "user", content: "x" }] }),
    Anthropic.NotFoundError,
  );
});

// ---- the Vercel AI SDK: `openai()` speaks the Responses API, `anthropic()` Messages
const aiOpenAI = createOpenAI({ baseURL: `${baseURL}/v1`, apiKey });
const aiAnthropic = createAnthropic({ baseURL: `${baseURL}/v1`, apiKey });
for (const [name, model] of [
  ["ai-sdk openai() (Responses)", aiOpenAI("chat")],
  ["ai-sdk openai() to an Anthropic upstream", aiOpenAI("claude")],
  ["ai-sdk openai() to OpenAI's Responses endpoint", aiOpenAI("gpt")],
  ["ai-sdk openai.chat()", aiOpenAI.chat("chat")],
  ["ai-sdk anthropic()", aiAnthropic("claude")],
  ["ai-sdk anthropic() to an OpenAI upstream", aiAnthropic("chat")],
]) {
  await check(name, async () => {
    const t = await generateText({ model, prompt: "hello ai sdk" });
    assert.equal(t.text, reply("hello ai sdk"));
    assert.ok(t.usage.inputTokens > 0 && t.usage.outputTokens > 0, JSON.stringify(t.usage));
    const s = streamText({ model, prompt: "stream ai sdk" });
    let text = "";
    for await (const part of s.textStream) text += part;
    assert.equal(text, reply("stream ai sdk"));
    const o = await generateText({ model, prompt: "Braga", output: Output.object({ schema: City }) });
    assert.equal(o.output.name, "Braga");
    let called = null;
    const withTools = await generateText({
      model,
      prompt: "Bergen",
      tools: { weather: tool({ inputSchema: z.object({ query: z.string() }), execute: async (args) => { called = args; return "sunny"; } }) },
      stopWhen: stepCountIs(3),
    });
    assert.ok(called && Object.values(called).join(" ").includes("Bergen"), JSON.stringify(called));
    assert.ok(withTools.steps.length >= 2, `${withTools.steps.length} steps`);
    assert.ok(withTools.text.startsWith("This is a mock reply to:"), withTools.text);
  });
}

console.log("node clients: all checks passed");
