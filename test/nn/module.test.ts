import test from 'node:test';
import assert from 'node:assert/strict';
import { XtunerError } from '../../src/errors.ts';
import { Embedding, LayerNorm, Linear, Module, RMSNorm } from '../../src/nn/index.ts';
import { tensor, type Tensor } from '../../src/tensor/index.ts';

const w = (rows: number[][]) => tensor(rows);

class Block extends Module {
  proj: Linear;
  norm: RMSNorm;
  constructor(shared?: Tensor) {
    super();
    this.proj = new Linear(shared ?? w([[1, 0], [0, 1]]), tensor([0, 0]));
    this.norm = new RMSNorm(tensor([1, 1]), 1e-6);
  }
}

class Net extends Module {
  embed = new Embedding(w([[1, 2], [3, 4], [5, 6]]));
  layers: Block[];
  head: Linear;
  #notAParam = tensor([1]); // private fields are not parameters
  constructor() {
    super();
    this.layers = [new Block(), new Block()];
    this.head = new Linear(this.embed.weight); // tied
  }
  hidden(): Tensor {
    return this.#notAParam;
  }
}

test('namedParameters: dotted HF-style names, list indices, a shared tensor listed once', () => {
  const net = new Net();
  assert.deepEqual([...net.namedParameters()].map(([n]) => n), [
    'embed.weight',
    'layers.0.proj.weight',
    'layers.0.proj.bias',
    'layers.0.norm.weight',
    'layers.1.proj.weight',
    'layers.1.proj.bias',
    'layers.1.norm.weight',
  ]);
  assert.deepEqual([...net.namedParameters('model')][0]![0], 'model.embed.weight');
  assert.deepEqual([...net.namedModules()].map(([n]) => n), ['', 'embed', 'layers.0', 'layers.0.proj', 'layers.0.norm', 'layers.1', 'layers.1.proj', 'layers.1.norm', 'head']);
  assert.equal(net.hidden().size, 1);
});

test('getSubmodule / setSubmodule by path, including list elements; errors name the path', () => {
  const net = new Net();
  assert.equal(net.getSubmodule('layers.1.proj'), net.layers[1]!.proj);
  const replacement = new Linear(w([[2, 0], [0, 2]]));
  net.setSubmodule('layers.1.proj', replacement);
  assert.equal(net.layers[1]!.proj, replacement);
  const block = new Block();
  net.setSubmodule('layers.0', block);
  assert.equal(net.layers[0], block);
  assert.throws(() => net.getSubmodule('layers.5.proj'), (e: unknown) => e instanceof XtunerError && e.message.includes('layers.5.proj'));
  assert.throws(() => net.setSubmodule('layers.0.nope', block), (e: unknown) => e instanceof XtunerError && e.message.includes('layers.0.nope'));
  assert.throws(() => net.setSubmodule('layers.9', block), (e: unknown) => e instanceof XtunerError && e.message.includes('layers.9'));
});

test('train / eval reach every module', () => {
  const net = new Net();
  net.eval();
  assert.ok([...net.namedModules()].every(([, m]) => !m.training));
  net.train();
  assert.ok(net.layers[1]!.norm.training);
});

test('Linear, Embedding, RMSNorm and LayerNorm compute the textbook formulas', () => {
  const lin = new Linear(w([[1, 2, 3], [-1, 0, 1]]), tensor([0.5, -0.5]));
  assert.equal(lin.inFeatures, 3);
  assert.equal(lin.outFeatures, 2);
  // [1, 1, 2] . rows + bias = [1+2+6+0.5, -1+0+2-0.5]
  assert.deepEqual([...lin.forward(w([[1, 1, 2]])).toFloat32Array()], [9.5, 0.5]);

  const emb = new Embedding(w([[1, 2], [3, 4], [5, 6]]));
  assert.deepEqual([...emb.forward(tensor([2, 0], [2], { dtype: 'int32' })).toFloat32Array()], [5, 6, 1, 2]);

  // RMSNorm [3, 4] with weight [1, 2]: rms = sqrt((9 + 16) / 2); eps 0.
  const rms = Math.sqrt(12.5);
  const r = new RMSNorm(tensor([1, 2]), 0).forward(w([[3, 4]])).toFloat32Array();
  assert.ok(Math.abs(r[0]! - 3 / rms) < 1e-6 && Math.abs(r[1]! - 8 / rms) < 1e-6);

  // LayerNorm [1, 3]: mean 2, var 1 -> [-1, 1] * w + b.
  const ln = new LayerNorm(tensor([2, 3]), tensor([0.5, 0]), 0).forward(w([[1, 3]])).toFloat32Array();
  assert.ok(Math.abs(ln[0]! - -1.5) < 1e-6 && Math.abs(ln[1]! - 3) < 1e-6);
});
