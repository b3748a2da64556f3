// The official TypeScript SDK against claude-proxy: the beta tool runner (threads on by default) and
// messages.parse with a zod output format. Prints one JSON line with what it saw.
import Anthropic from '@anthropic-ai/sdk';
import { betaZodTool } from '@anthropic-ai/sdk/helpers/beta/zod';
import { zodOutputFormat } from '@anthropic-ai/sdk/helpers/zod';
import { z } from 'zod';

const client = new Anthropic({ baseURL: process.env.BASE_URL, apiKey: 'client-key', maxRetries: 0 });
const model = process.env.MODEL ?? 'claude-sonnet-5-5';
const out = {};

if (process.env.CASE === 'runner') {
  const calls = [];
  const weather = betaZodTool({
    name: 'get_weather',
    description: 'The weather in a city',
    inputSchema: z.object({ city: z.string() }),
    run: async ({ city }) => { calls.push(city); return `sunny in ${city}`; },
  });
  const runner = client.beta.messages.toolRunner({
    model, max_tokens: 200, tools: [weather], stream: process.env.STREAM === '1',
    messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
  });
  const final = await runner.runUntilDone();
  out.calls = calls;
  out.final = final.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
  out.history = runner.params.messages.length;
} else {
  const Person = z.object({ name: z.string(), age: z.number().int() });
  const message = await client.messages.parse({
    model, max_tokens: 200, messages: [{ role: 'user', content: 'Ada Lovelace, 36' }],
    output_config: { format: zodOutputFormat(Person) },
  });
  out.parsed = message.parsed_output;
}
console.log(JSON.stringify(out));
