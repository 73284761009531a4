import test from 'node:test';
import assert from 'node:assert/strict';
import { closestMatch, didYouMean, editDistance } from '../../src/config/index.ts';

test('edit distance: insertions, deletions, substitutions, adjacent transpositions', () => {
  assert.equal(editDistance('kitten', 'sitting'), 3);
  assert.equal(editDistance('', 'abc'), 3);
  assert.equal(editDistance('abc', 'abc'), 0);
  assert.equal(editDistance('max_lenght', 'max_length'), 1);
  assert.equal(editDistance('lr', 'rl'), 1);
});

test('a suggestion only for a likely typo', () => {
  const keys = ['lr', 'max_length', 'max_epochs', 'lora'];
  assert.equal(closestMatch('max_lenth', keys), 'max_length');
  assert.equal(closestMatch('MAX_EPOCH', keys), 'max_epochs');
  assert.equal(closestMatch('learning_rate', keys), undefined);
  assert.equal(closestMatch('xy', keys), undefined);
  assert.equal(didYouMean('lst-cfg', ['list-cfg', 'copy-cfg']), ' (did you mean "list-cfg"?)');
  assert.equal(didYouMean('train', ['list-cfg']), '');
});
