// Dataset map functions: records of each format to XTuner's conversation turns, expected values
// written from XTuner's map functions; bad records name the field at fault.

import test from 'node:test';
import assert from 'node:assert/strict';
import { mapRecord, RecordError, type DatasetFormat } from '../../src/data/formats.ts';

function fails(format: DatasetFormat, record: unknown, field: string | undefined, message: RegExp): void {
  assert.throws(
    () => mapRecord(format, record),
    (e: unknown) => e instanceof RecordError && e.field === field && message.test(e.message),
    `${format} ${JSON.stringify(record)}`,
  );
}

test('alpaca: instruction + "\\n" + input; <nooutput> gives no turn', () => {
  assert.deepEqual(mapRecord('alpaca', { instruction: 'Add.', input: '1 2', output: '3' }), [{ input: 'Add.\n1 2', output: '3' }]);
  assert.deepEqual(mapRecord('alpaca', { instruction: 'Hi.', input: '', output: 'Hello' }), [{ input: 'Hi.\n', output: 'Hello' }]);
  assert.deepEqual(mapRecord('alpaca', { instruction: 'Hi.', input: '', output: '<nooutput>' }), []);
});

test('alpaca_zh: the _zh fields', () => {
  assert.deepEqual(mapRecord('alpaca_zh', { instruction_zh: '加', input_zh: '1 2', output_zh: '3' }), [{ input: '加\n1 2', output: '3' }]);
});

test('openai: system goes with the next answer, users concatenate, "loss": false kept, leading assistant skipped', () => {
  const turns = mapRecord('openai', {
    messages: [
      { role: 'assistant', content: 'ignored' },
      { role: 'system', content: 'S' },
      { role: 'user', content: 'a' },
      { role: 'user', content: 'b' },
      { role: 'assistant', content: 'A1', loss: false },
      { role: 'user', content: 'c' },
      { role: 'assistant', content: 'A2' },
      { role: 'user', content: 'dangling' },
    ],
  });
  assert.deepEqual(turns, [
    { system: 'S', input: 'ab', output: 'A1', outputWithLoss: false },
    { system: '', input: 'c', output: 'A2', outputWithLoss: true },
  ]);
});

test('conversation: XTuner format, input may be null, output_with_loss read', () => {
  assert.deepEqual(
    mapRecord('conversation', { conversation: [{ system: 'S', input: null, output: 'o' }, { input: 'i', output: 'p', output_with_loss: false }] }),
    [{ system: 'S', input: '', output: 'o' }, { input: 'i', output: 'p', outputWithLoss: false }],
  );
});

test('llava: the image token moved to the front of its input, on its own line', () => {
  assert.deepEqual(
    mapRecord('llava', {
      conversations: [
        { from: 'human', value: 'What is this?\n<image>' },
        { from: 'gpt', value: 'A cat.' },
        { from: 'human', value: 'Sure?' },
        { from: 'gpt', value: 'Yes.' },
      ],
    }),
    [{ input: '<image>\nWhat is this?', output: 'A cat.' }, { input: 'Sure?', output: 'Yes.' }],
  );
});

test('sharegpt: human/gpt turns, optional system', () => {
  assert.deepEqual(
    mapRecord('sharegpt', { conversations: [{ from: 'system', value: 'S' }, { from: 'human', value: 'q' }, { from: 'gpt', value: 'a' }] }),
    [{ system: 'S', input: 'q', output: 'a' }],
  );
});

test('oasst1: "### Human: / ### Assistant:" turns; a trailing human message dropped', () => {
  assert.deepEqual(
    mapRecord('oasst1', { text: '### Human: Hi there ### Assistant: Hello! ### Human: More? ### Assistant: Sure. ### Human: bye' }),
    [{ input: 'Hi there', output: 'Hello!' }, { input: 'More?', output: 'Sure.' }],
  );
});

test('pretrain: the stripped text, supervised, EOS after it', () => {
  assert.deepEqual(mapRecord('pretrain', { text: '  Some document.\n' }), [{ input: '', output: 'Some document.', needEosToken: true }]);
});

test('bad records: missing field, wrong type, unknown role, not an object', () => {
  fails('alpaca', { input: 'x', output: 'y' }, 'instruction', /missing/);
  fails('alpaca', { instruction: 'x', input: 'x' }, 'output', /missing/);
  fails('alpaca', { instruction: 3, output: 'y' }, 'instruction', /expected a string, got number 3/);
  fails('alpaca_zh', { instruction_zh: 'x', input_zh: '' }, 'output_zh', /missing/);
  fails('openai', { message: [] }, 'messages', /missing \(an array is required\)/);
  fails('openai', { messages: [{ role: 'user', content: 'q' }, { role: 'tool', content: 'r' }] }, 'messages[1].role', /unknown role 'tool' \(expected system, user or assistant\)/);
  fails('openai', { messages: [{ role: 'user' }] }, 'messages[0].content', /missing/);
  fails('openai', { messages: ['hi'] }, 'messages[0]', /expected an object, got string "hi"/);
  fails('conversation', { conversation: [{ input: 'q' }] }, 'conversation[0].output', /missing/);
  fails('conversation', { conversation: [{ input: 'q', output: 'a', output_with_loss: 'no' }] }, 'conversation[0].output_with_loss', /expected true or false/);
  fails('llava', { conversations: [{ from: 'human', value: 'q' }, { from: 'bot', value: 'a' }] }, 'conversations[1].from', /unknown role 'bot' \(expected human or gpt\)/);
  fails('oasst1', { txt: '' }, 'text', /missing/);
  fails('pretrain', { text: null }, 'text', /expected a string, got null/);
  fails('pretrain', [1, 2], undefined, /expected an object, got an array/);
});
