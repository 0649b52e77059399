// The official OpenAI Node.js client against anyprec-server's HTTP front, as an application
// would use it: `node client.mjs BASE_URL API_KEY MODEL` lists the models, runs a completion at
// widths 3 and 8, and a chat completion at width 4 whole (with logprobs) and streamed, all greedy, and prints
// what it received as one JSON object for tests/http_front_test.cc to check.
import OpenAI from "openai";

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const out = {};

out.models = [];
for await (const m of client.models.list()) out.models.push(m.id);

out.completions = {};
for (const bits of [3, 8]) {
  const c = await client.completions.create({ model: `${model}@${bits}`, prompt: "Once upon a time", max_tokens: 16, temperature: 0 });
  out.completions[bits] = { text: c.choices[0].text, finish_reason: c.choices[0].finish_reason, usage: c.usage, model: c.model };
}

const messages = [
  { role: "system", content: "Tell a story." },
  { role: "user", content: "A cat" },
];
const whole = await client.chat.completions.create({
  model: `${model}@4`, messages, max_completion_tokens: 12, temperature: 0, logprobs: true, top_logprobs: 2,
});
out.chat = {
  content: whole.choices[0].message.content, finish_reason: whole.choices[0].finish_reason, usage: whole.usage,
  logprobs: whole.choices[0].logprobs.content.map((c) => ({ token: c.token, logprob: c.logprob, top: c.top_logprobs.map((t) => t.token) })),
};

const stream = await client.chat.completions.create({
  model: `${model}@4`, messages, max_completion_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
});
out.stream = { content: "", chunks: 0, finish_reason: null, usage: null };
for await (const chunk of stream) {
  out.stream.chunks += 1;
  if (chunk.usage) out.stream.usage = chunk.usage;
  for (const choice of chunk.choices) {
    out.stream.content += choice.delta?.content ?? "";
    if (choice.finish_reason) out.stream.finish_reason = choice.finish_reason;
  }
}

try {
  await client.completions.create({ model: `${model}@99`, prompt: "x" });
  out.unknown_model = "no error";
} catch (e) {
  out.unknown_model = { status: e.status, message: e.message };
}
console.log(JSON.stringify(out));
