// --cfg-options values as XTuner's tools/train.py parses them: mmengine's DictAction
// (mmengine/config/config.py, DictAction._parse_int_float_bool and _parse_iterable):
// int(val), else float(val), else 'true'/'false' in any case -> bool, 'None' -> None, else the
// string; 'a,b' and '[a,b]' -> list, '(a,b)' -> tuple, each element parsed the same way.
// So the Python spellings an XTuner user types (False, None, (0.9, 0.95)) give typed values.
import test from 'node:test';
import assert from 'node:assert/strict';
import { parseCfgOptions } from '../../src/config/cfg-options.ts';

const value = (opt: string): unknown => parseCfgOptions([opt])[0]!.value;

test('JSON spellings (the documented ones) parse to typed values', () => {
  assert.equal(value('lr=1e-5'), 1e-5);
  assert.equal(value('pack_to_max_length=false'), false);
  assert.equal(value('lora=null'), null);
  assert.deepEqual(value('betas=[0.9,0.95]'), [0.9, 0.95]);
  assert.equal(value('prompt_template=qwen_chat'), 'qwen_chat');
});

for (const [opt, want] of [
  ['pack_to_max_length=False', false], // val.lower() in ['true', 'false']
  ['use_activation_checkpointing=True', true],
  ['lora=None', null], // val == 'None' -> None
  ['betas=0.9,0.95', [0.9, 0.95]], // 'KEY=V1,V2' -> list
  ['betas=(0.9,0.95)', [0.9, 0.95]], // tuple
  ['evaluation_inputs=[hello,world]', ['hello', 'world']], // '[a, b]' -> ['a', 'b']
] as const) {
  test(`mmengine DictAction: ${opt} -> ${JSON.stringify(want)}`, () => {
    assert.deepEqual(value(opt), want);
  });
}
