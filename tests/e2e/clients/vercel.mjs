// The Vercel AI SDK with @ai-sdk/anthropic and a Claude model name, against claude-proxy:
// generateText / streamText with a tool, and Output.object (structured outputs).
import { createAnthropic } from '@ai-sdk/anthropic';
import { generateText, streamText, tool, Output, stepCountIs } from 'ai';
import { z } from 'zod';

const anthropic = createAnthropic({ baseURL: process.env.BASE_URL + '/v1', apiKey: 'client-key' });
const model = anthropic(process.env.MODEL ?? 'claude-sonnet-4-5');
const out = {};
const calls = [];
const tools = {
  get_weather: tool({
    description: 'The weather in a city',
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => { calls.push(city); return `sunny in ${city}`; },
  }),
};
const prompt = 'What is the weather in Paris?';

if (process.env.CASE === 'tools') {
  const generated = await generateText({ model, tools, prompt, stopWhen: stepCountIs(3), maxRetries: 0 });
  out.generate = { text: generated.text, steps: generated.steps.length };
  const streamed = streamText({ model, tools, prompt, stopWhen: stepCountIs(3), maxRetries: 0 });
  out.stream = { text: await streamed.text, steps: (await streamed.steps).length };
  out.calls = calls;
} else {
  const Person = z.object({ name: z.string(), age: z.number().int() });
  const generated = await generateText({
    model, prompt: 'Ada Lovelace, 36', output: Output.object({ schema: Person }), maxRetries: 0,
  });
  out.object = generated.output;
}
console.log(JSON.stringify(out));
