// Reverse-mode autograd. An op that runs while grad is enabled, with an input that requires grad,
// records a node: its inputs, the tensors its backward needs (held as extra handles on their
// storage, so scopes may dispose the forward's tensors), and the backward itself. `backward()`
// walks the nodes in reverse topological order, frees each node's saved tensors and each
// intermediate gradient as soon as they have been used, and accumulates into `grad` of leaves
// that require grad. Nodes are reference counted (their output tensor + the nodes that consume
// them), so a graph nobody runs backward on is freed when its tensors are disposed.

import { XtunerError } from '../errors.ts';
import { closeScope, enterNoGrad, exitNoGrad, isGradEnabled, markWritten, openScope, type StorageRef } from './engine.ts';
import { fmt, sameShape } from './shape.ts';
import type { DType } from './dtype.ts';
import { Tensor } from './tensor.ts';

/**
 * Gradients for each input (null: none, or not needed). `into[i]`, where not null, is the gradient
 * gathered so far for input i (a leaf's `grad`), held by nothing else, of the input's dtype: a
 * backward may add its gradient to it in place and return it in slot i (a GEMM with beta = 1, or a
 * kernel that adds), which saves a buffer and the engine's addition.
 */
export type BackwardFn = (saved: Tensor[], dy: Tensor, needs: readonly boolean[], into: readonly (Tensor | null)[]) => (Tensor | null)[];

export interface GradNode {
  readonly op: string;
  /** The op's differentiable inputs, null for absent optional ones. */
  readonly inputs: readonly (Tensor | null)[];
  readonly needs: readonly boolean[];
  saved: Tensor[];
  readonly backward: BackwardFn;
  refs: number;
  /** Backward already ran through this node (its saved tensors are gone). */
  used: boolean;
}

function needsGrad(t: Tensor): boolean {
  return t.requiresGrad || t._node !== null;
}

/** Whether an op on these inputs must record a node. */
export function isRecording(inputs: readonly (Tensor | null | undefined)[]): boolean {
  return isGradEnabled() && inputs.some((t) => t != null && needsGrad(t));
}

/**
 * Attach a backward to `out` when recording. `inputs` are the differentiable inputs (null for
 * absent optional ones), `save` what the backward reads; it receives them in the same order.
 * The backward returns one gradient (or null) per input, each the input's shape.
 */
export function recordOp(
  op: string,
  out: Tensor,
  inputs: readonly (Tensor | null)[],
  save: readonly Tensor[],
  backward: BackwardFn,
  /** Record even when no input needs a gradient (the op reaches parameters another way). */
  force = false,
): Tensor {
  if (!(force ? isGradEnabled() : isRecording(inputs))) return out;
  const node: GradNode = {
    op,
    inputs: [...inputs],
    needs: inputs.map((t) => t !== null && needsGrad(t)),
    saved: save.map((t) => t._share(t.shape, false)),
    backward,
    refs: 1,
    used: false,
  };
  for (const t of inputs) if (t?._node) t._node.refs++;
  out._node = node;
  out.requiresGrad = true;
  return out;
}

function releaseSaved(node: GradNode): void {
  for (const t of node.saved) t.dispose();
  node.saved = [];
}

export function decRefNode(node: GradNode): void {
  if (--node.refs > 0) return;
  releaseSaved(node);
  for (const t of node.inputs) if (t?._node) decRefNode(t._node);
}

/** Nodes reachable from `root`, each after all nodes that consume it. */
function reverseTopo(root: GradNode): GradNode[] {
  const order: GradNode[] = [];
  const seen = new Set<GradNode>([root]);
  const stack: [GradNode, number][] = [[root, 0]];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const [node, i] = top;
    if (i < node.inputs.length) {
      top[1]++;
      const child = node.inputs[i]?._node;
      if (node.needs[i] && child && !seen.has(child)) {
        seen.add(child);
        stack.push([child, 0]);
      }
    } else {
      stack.pop();
      order.push(node); // post-order: inputs before consumers
    }
  }
  return order.reverse();
}

function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (leaf.isDisposed) {
    g.dispose();
    return;
  }
  const existing = leaf.grad;
  // in the kept grad's dtype (else the parameter's); a grad of its own, never a storage another
  // handle shares (a pass-through dy reaching two leaves, or the caller's seed): clipping or
  // zeroing one grad in place must not touch another tensor
  const grad = g.dtype !== (existing ?? leaf).dtype || !heldOnce(g._live()) ? copyOf(g, (existing ?? leaf).dtype) : g;
  if (existing === null) {
    leaf.grad = grad;
  } else {
    leaf.grad = sumGrads(existing, grad);
    markWritten(leaf.grad._live());
  }
}

/** A new tensor holding `t`'s values in `dtype`; `t` given up. */
function copyOf(t: Tensor, dtype: DType): Tensor {
  const copy = Tensor._alloc(t.shape, dtype, t.device, false);
  t.backend.cast(t.storage, t.dtype, copy.storage, dtype, t.size);
  t.dispose();
  return copy;
}

/**
 * acc + g, the two handles given up: added in place into acc's storage where acc alone holds it,
 * else into g's, else into a copy. A gradient an op passed through (add's dy, to both inputs) is
 * one storage under two handles until both are used: adding into it in place would change the
 * other input's gradient too.
 */
function sumGrads(acc: Tensor, g: Tensor): Tensor {
  if (!heldOnce(acc._live())) {
    if (heldOnce(g._live())) return sumGrads(g, acc);
    acc = copyOf(acc, acc.dtype);
  }
  acc.backend.axpy(g.storage, acc.storage, acc.size, 1, acc.floatDtype);
  g.dispose();
  return acc;
}

/**
 * For each input of `node`, the gradient gathered so far where the backward may add into it: the
 * engine's for an input with a node of its own, `grad` for a leaf (a parameter's, kept from step to
 * step under CUDA graphs), where the input is in no other slot of this node and no other handle
 * shares the gradient's storage (a pass-through dy is shared until its other holder has run).
 */
function gatheredFor(node: GradNode, grads: ReadonlyMap<GradNode, Tensor>): (Tensor | null)[] {
  return node.inputs.map((t, i) => {
    if (!t || !node.needs[i] || node.inputs.indexOf(t) !== node.inputs.lastIndexOf(t)) return null;
    const acc = t._node ? grads.get(t._node) : t.isDisposed || !t.requiresGrad ? null : t.grad; // frozen since the forward: no grad
    return acc && acc.dtype === t.dtype && heldOnce(acc._live()) ? acc : null;
  });
}

/** Whether one handle alone reaches the storage (a view's included: then it alone holds its base). */
function heldOnce(ref: StorageRef): boolean {
  return ref.refs === 1 && (ref.parent === undefined || heldOnce(ref.parent));
}

export function runBackward(root: Tensor, grad?: Tensor): void {
  root._live();
  let seed: Tensor;
  if (grad === undefined) {
    if (root.size !== 1) {
      throw new XtunerError(`backward() without a gradient needs a single-element tensor, got ${fmt(root.shape)}`);
    }
    seed = Tensor._alloc(root.shape, root.dtype, root.device, false);
    seed.backend.fill(seed.storage, seed.dtype, 0, 1, 1);
  } else {
    if (!sameShape(grad.shape, root.shape)) {
      throw new XtunerError(`backward(grad): grad shape ${fmt(grad.shape)} differs from ${fmt(root.shape)}`);
    }
    // in the root's dtype, as PyTorch's engine casts it
    seed = grad.dtype === root.dtype ? grad._share(grad.shape, false) : copyOf(grad._share(grad.shape, false), root.dtype);
  }
  const rootNode = root._node;
  if (rootNode === null) {
    if (!root.requiresGrad) {
      seed.dispose();
      throw new XtunerError('backward(): the tensor does not require grad (no parameter with requiresGrad reached it, or it was computed under noGrad)');
    }
    accumulateLeaf(root, seed);
    return;
  }
  const grads = new Map<GradNode, Tensor>([[rootNode, seed]]);
  enterNoGrad();
  try {
    for (const node of reverseTopo(rootNode)) {
      const dy = grads.get(node);
      if (dy === undefined) continue;
      grads.delete(node);
      if (node.used) {
        dy.dispose();
        throw new XtunerError(`backward() ran twice through the graph of "${node.op}"; run the forward again`);
      }
      const into = gatheredFor(node, grads);
      // Tensors the backward creates and does not return are disposed with this scope.
      const scope = openScope();
      let inGrads: (Tensor | null)[];
      try {
        inGrads = node.backward(node.saved, dy, node.needs, into);
      } catch (e) {
        closeScope(scope, []);
        throw e;
      }
      // a gradient added into what was gathered: nothing left to add (a leaf's grad was written in place)
      inGrads = inGrads.map((g, i) => {
        if (g === null || g !== into[i]) return g;
        if (!node.inputs[i]!._node) markWritten(g._live());
        return null;
      });
      // Each gradient must be owned once: one returned twice, or not made here (dy itself, a
      // saved tensor), becomes its own handle on the same storage.
      const seen = new Set<Tensor>();
      inGrads = inGrads.map((g) => {
        if (g === null) return null;
        const own = g._scope === scope && !seen.has(g);
        seen.add(g);
        return own ? g : g._share(g.shape, false);
      });
      closeScope(scope, inGrads.filter((g): g is Tensor => g !== null), false);
      dy.dispose();
      node.used = true;
      releaseSaved(node);
      for (let i = 0; i < node.inputs.length; i++) {
        const g = inGrads[i];
        if (!g) continue;
        const input = node.inputs[i];
        if (!input || !node.needs[i]) {
          g.dispose();
          continue;
        }
        if (!sameShape(g.shape, input.shape)) {
          throw new Error(`autograd: ${node.op} returned a gradient ${fmt(g.shape)} for input ${i} of shape ${fmt(input.shape)}`);
        }
        if (input._node) {
          const acc = grads.get(input._node);
          grads.set(input._node, acc === undefined ? g : sumGrads(acc, g));
        } else if (input.requiresGrad) {
          accumulateLeaf(input, g);
        } else {
          g.dispose();
        }
      }
    }
  } finally {
    exitNoGrad();
    for (const g of grads.values()) g.dispose();
  }
}
