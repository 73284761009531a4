// Autograd fuzzer: seeded random graphs over the differentiable ops, run on the CPU engine and
// checked leaf by leaf against central finite differences of a float64 reference of the same graph.
// A program is a list of nodes (leaves and instructions, a value's id is its node's index); values
// are reused by up to 4 consumers (x op x, linear(x, W) twice with the same W, residual blocks
// h + f(h) whose f reads h again: where the engine adds gradients where they are gathered and where
// add hands one dy to two inputs), parameters keep a grad from before (and across two backward
// passes), some leaves are frozen, some values are computed under noGrad or detached, and
// intermediates may be disposed before the backward. Float32 activations (some parameters in
// bfloat16), and float16 activations throughout.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../../src/tensor/index.ts';
import { Rng, type Tensor } from '../../src/tensor/index.ts';
import { loraBranch } from '../../src/peft/lora-branch.ts';
import { NF4Linear } from '../../src/quant/nf4-linear.ts';
import { dequantizeNf4, quantizeNf4 } from '../../src/quant/nf4.ts';
import { Linear } from '../../src/nn/index.ts';
import { dropoutScale, dropoutThreshold, philox4x32 } from '../../src/backends/cpu/dropout.ts';
import { erf } from '../../src/backends/cpu/elementwise.ts';

/** Norm epsilon of every rmsNorm / layerNorm in the graphs. */
const EPS = 1e-5;
/** Central difference step on the float64 reference: truncation error ~h^2 (< 1e-7 here), rounding ~1e-12. */
const FD_STEP = 1e-4;
/**
 * An analytic gradient (float32 activations) may differ from the finite differences by GRAD_TOL of
 * the leaf's own gradient magnitude (or of a hundredth of the largest leaf's, for a leaf whose
 * gradient nearly cancels), plus ABS_FLOOR: float32 rounding through up to ~25 ops stays below
 * 0.3 x GRAD_TOL over 40 000 graphs, and a gradient added twice, lost, or written into the wrong
 * tensor is off by O(1).
 */
const GRAD_TOL = 2e-3;
const ABS_FLOOR = 1e-5;
/** A bfloat16 parameter's grad is also rounded to bfloat16 each time it is added into (8 bits). */
const BF16_TOL = 3e-2;
/** Float16 activations throughout: every op rounds to 11 bits; only gross errors are the target. */
const HALF_TOL = 1e-1;
const HALF_FLOOR = 2e-2;
/** Graphs whose values leave [-VALUE_BOUND, VALUE_BOUND], or whose norms see a near-constant row, are skipped (finite differences unreliable). */
const VALUE_BOUND = 200;

type LeafDtype = 'float32' | 'bfloat16' | 'float16';
interface Leaf { shape: number[]; vals: Float64Array; grad: boolean; pre: Float64Array | null; dtype: LeafDtype }
/** stop: the value is computed under noGrad, or detached (a constant to the gradient). */
interface Ins { op: string; a: number[]; at: any; shape: number[]; stop?: 'noGrad' | 'detach' }
/**
 * nodes: leaves and instructions in creation order (a value's id is its node's index). The loss of
 * pass k is sum over sinks s of <value s, G[k][s]>, run as sink.backward(G) ('seed', one sink) or
 * as sum(mul(sink, G)) added up and backward() ('ops'). between[k]: after pass k, grads zeroed
 * (fillInPlace) or scaled (scaleInPlace) in place, by leaf index (zero_grad keeping grads, clipping).
 */
interface Prog {
  half: boolean;
  disposeEarly: boolean;
  between: { zero: number[]; scale: [number, number][] }[];
  nodes: (Leaf | Ins)[];
  sinks: number[];
  G: Float64Array[][];
  loss: 'seed' | 'ops';
  passes: number;
}
const isIns = (n: Leaf | Ins): n is Ins => 'op' in n;
const leavesOf = (p: Prog): Leaf[] => p.nodes.filter((n): n is Leaf => !isIns(n));

// ---------- reference tensors ----------
interface R { s: number[]; d: Float64Array }
const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const strides = (s: readonly number[]) => { const st = new Array(s.length).fill(1); for (let i = s.length - 2; i >= 0; i--) st[i] = st[i + 1] * s[i + 1]; return st; };
const mk = (s: number[]): R => ({ s, d: new Float64Array(size(s)) });
const map = (x: R, f: (v: number) => number): R => ({ s: x.s, d: x.d.map(f) });
function bshape(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  return Array.from({ length: n }, (_, i) => {
    const x = a[i - n + a.length] ?? 1, y = b[i - n + b.length] ?? 1;
    return x === 1 ? y : x;
  });
}
function bidx(from: readonly number[], to: readonly number[]): Int32Array {
  // index into `from` for every element of broadcast shape `to`
  const off = to.length - from.length, st = strides(from), out = new Int32Array(size(to)), ts = strides(to);
  for (let i = 0; i < out.length; i++) {
    let j = 0;
    for (let d = 0; d < to.length; d++) {
      const c = Math.floor(i / ts[d]) % to[d]!;
      if (d >= off && from[d - off] !== 1) j += c * st[d - off];
    }
    out[i] = j;
  }
  return out;
}
function bin(a: R, b: R, f: (x: number, y: number) => number): R {
  const s = bshape(a.s, b.s), ia = bidx(a.s, s), ib = bidx(b.s, s), o = mk(s);
  for (let i = 0; i < o.d.length; i++) o.d[i] = f(a.d[ia[i]!]!, b.d[ib[i]!]!);
  return o;
}
function permuteR(x: R, perm: number[]): R {
  const s = perm.map((p) => x.s[p]!), o = mk(s), xs = strides(x.s), os = strides(s);
  for (let i = 0; i < o.d.length; i++) {
    let j = 0;
    for (let d = 0; d < s.length; d++) j += (Math.floor(i / os[d]) % s[d]!) * xs[perm[d]!];
    o.d[i] = x.d[j]!;
  }
  return o;
}
function sumR(x: R, dims: number[], keep: boolean): R {
  const ks = x.s.map((n, i) => (dims.includes(i) ? 1 : n)), o = mk(ks), idx = bidx(ks, x.s);
  for (let i = 0; i < x.d.length; i++) o.d[idx[i]!] += x.d[i]!;
  return keep ? o : { s: x.s.filter((_, i) => !dims.includes(i)), d: o.d };
}
function rowsOf(x: R): [number, number] { const c = x.s[x.s.length - 1]!; return [x.d.length / c, c]; }
const sig = (v: number) => 1 / (1 + Math.exp(-v));
const UNARY: Record<string, (v: number) => number> = {
  silu: (v) => v * sig(v),
  gelu: (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
  geluTanh: (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
  quickGelu: (v) => v * sig(1.702 * v),
  tanh: Math.tanh, sigmoid: sig, neg: (v) => -v, exp: Math.exp,
};
const ENG_UNARY: Record<string, (x: Tensor) => Tensor> = {
  silu: T.silu, gelu: T.gelu, geluTanh: T.geluTanh, quickGelu: T.quickGelu, tanh: T.tanh, sigmoid: T.sigmoid, neg: T.neg, exp: T.exp,
};
function dropMask(n: number, p: number, seed: number): Float64Array {
  const r = new Rng(seed), k0 = r.nextUint32(), k1 = r.nextUint32(), c = new Uint32Array(4);
  return Float64Array.from({ length: n }, (_, i) => {
    c.set([Math.floor(i / 4), 0, 0, 0]);
    philox4x32(c, k0, k1);
    return c[i % 4]! < dropoutThreshold(p) ? 0 : dropoutScale(p);
  });
}
function linR(x: R, w: R, b: R | null): R {
  const [rows, inF] = rowsOf(x), outF = w.s[0]!, o = mk([...x.s.slice(0, -1), outF]);
  for (let r = 0; r < rows; r++) for (let j = 0; j < outF; j++) {
    let s = b ? b.d[j]! : 0;
    for (let i = 0; i < inF; i++) s += x.d[r * inF + i]! * w.d[j * inF + i]!;
    o.d[r * outF + j] = s;
  }
  return o;
}
/** Set when a reference evaluation meets an ill-conditioned spot (finite differences unreliable). */
let illCond = false;
function normR(x: R, w: R, b: R | null, layer: boolean): R {
  const [rows, H] = rowsOf(x), o = mk(x.s);
  for (let r = 0; r < rows; r++) {
    const row = x.d.subarray(r * H, (r + 1) * H);
    const mu = layer ? row.reduce((a, v) => a + v, 0) / H : 0;
    const v = row.reduce((a, t) => a + (t - mu) ** 2, 0) / H;
    if (v < 0.05) illCond = true;
    const rs = 1 / Math.sqrt(v + EPS);
    for (let c = 0; c < H; c++) o.d[r * H + c] = (row[c]! - mu) * rs * w.d[c]! + (b ? b.d[c]! : 0);
  }
  return o;
}
function attnR(q: R, k: R, v: R, at: { Hq: number; Hkv: number; D: number; causal: boolean }): R {
  const T_ = q.s[0]!, { Hq, Hkv, D, causal } = at, o = mk(q.s), sc = 1 / Math.sqrt(D), g = Hq / Hkv;
  for (let h = 0; h < Hq; h++) {
    const kh = Math.floor(h / g);
    for (let i = 0; i < T_; i++) {
      const n = causal ? i + 1 : T_, s = new Float64Array(n);
      let m = -Infinity;
      for (let j = 0; j < n; j++) {
        let d = 0;
        for (let e = 0; e < D; e++) d += q.d[i * Hq * D + h * D + e]! * k.d[j * Hkv * D + kh * D + e]!;
        s[j] = d * sc; m = Math.max(m, s[j]!);
      }
      let z = 0;
      for (let j = 0; j < n; j++) z += (s[j] = Math.exp(s[j]! - m));
      for (let e = 0; e < D; e++) {
        let acc = 0;
        for (let j = 0; j < n; j++) acc += (s[j]! / z) * v.d[j * Hkv * D + kh * D + e]!;
        o.d[i * Hq * D + h * D + e] = acc;
      }
    }
  }
  return o;
}

// ---------- the ops: reference and engine ----------
const disposers: (() => void)[] = [];
type RefFn = (a: R[], at: any, ins: Ins) => R;
type EngFn = (a: Tensor[], at: any, ins: Ins) => Tensor;
let streamsMade = 0;
const OPS: Record<string, { ref: RefFn; eng: EngFn }> = {
  unary: { ref: ([x], at) => map(x!, UNARY[at.f]!), eng: ([x], at) => ENG_UNARY[at.f]!(x!) },
  scale: { ref: ([x], at) => map(x!, (v) => v * at.s), eng: ([x], at) => T.scale(x!, at.s) },
  add: { ref: ([a, b]) => bin(a!, b!, (x, y) => x + y), eng: ([a, b]) => T.add(a!, b!) },
  sub: { ref: ([a, b]) => bin(a!, b!, (x, y) => x - y), eng: ([a, b]) => T.sub(a!, b!) },
  mul: { ref: ([a, b]) => bin(a!, b!, (x, y) => x * y), eng: ([a, b]) => T.mul(a!, b!) },
  div: { ref: ([a, b]) => bin(a!, b!, (x, y) => x / y), eng: ([a, b]) => T.div(a!, b!) },
  linear: { ref: ([x, w, b]) => linR(x!, w!, b ?? null), eng: ([x, w, b]) => T.linear(x!, w!, b ?? null) },
  matmul: {
    ref: ([a, b]) => {
      const K = a!.s[a!.s.length - 1]!, N = b!.s[1]!, M = a!.d.length / K, o = mk([...a!.s.slice(0, -1), N]);
      for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) { let s = 0; for (let k = 0; k < K; k++) s += a!.d[i * K + k]! * b!.d[k * N + j]!; o.d[i * N + j] = s; }
      return o;
    },
    eng: ([a, b]) => T.matmul(a!, b!),
  },
  rmsNorm: { ref: ([x, w]) => normR(x!, w!, null, false), eng: ([x, w]) => T.rmsNorm(x!, w!, EPS) },
  layerNorm: { ref: ([x, w, b]) => normR(x!, w!, b ?? null, true), eng: ([x, w, b]) => T.layerNorm(x!, w!, b ?? null, EPS) },
  softmax: {
    ref: ([x]) => {
      const [rows, c] = rowsOf(x!), o = mk(x!.s);
      for (let r = 0; r < rows; r++) {
        const row = x!.d.subarray(r * c, (r + 1) * c), m = Math.max(...row);
        const e = row.map((v) => Math.exp(v - m)), z = e.reduce((a, v) => a + v, 0);
        for (let j = 0; j < c; j++) o.d[r * c + j] = e[j]! / z;
      }
      return o;
    },
    eng: ([x]) => T.softmax(x!),
  },
  swiglu: { ref: ([a, b]) => bin(a!, b!, (x, y) => x * sig(x) * y), eng: ([a, b]) => T.swiglu(a!, b!) },
  permute: { ref: ([x], at) => permuteR(x!, at.perm), eng: ([x], at) => T.permute(x!, at.perm) },
  transpose: {
    ref: ([x], at) => { const p = x!.s.map((_, i) => i); [p[at.d0], p[at.d1]] = [p[at.d1]!, p[at.d0]!]; return permuteR(x!, p); },
    eng: ([x], at) => T.transpose(x!, at.d0, at.d1),
  },
  reshape: { ref: ([x], at) => ({ s: at.to, d: Float64Array.from(x!.d) }), eng: ([x], at) => T.reshape(x!, at.to) },
  slice: {
    ref: ([x], at) => {
      const s = [...x!.s]; s[at.dim] = at.e - at.s;
      const o = mk(s), os = strides(s), xs = strides(x!.s);
      for (let i = 0; i < o.d.length; i++) { let j = 0; for (let d = 0; d < s.length; d++) j += ((Math.floor(i / os[d]) % s[d]!) + (d === at.dim ? at.s : 0)) * xs[d]; o.d[i] = x!.d[j]!; }
      return o;
    },
    eng: ([x], at) => T.slice(x!, at.dim, at.s, at.e),
  },
  concat: {
    ref: (xs, at) => {
      const s = [...xs[0]!.s]; s[at.dim] = xs.reduce((a, x) => a + x.s[at.dim]!, 0);
      const outer = size(s.slice(0, at.dim)), o = mk(s);
      let p = 0;
      for (let r = 0; r < outer; r++) for (const x of xs) { const n = size(x.s.slice(at.dim)); o.d.set(x.d.subarray(r * n, (r + 1) * n), p); p += n; }
      return o;
    },
    eng: (xs, at) => T.concat(xs, at.dim),
  },
  expand: { ref: ([x], at) => { const o = mk(at.to), idx = bidx(x!.s, at.to); for (let i = 0; i < o.d.length; i++) o.d[i] = x!.d[idx[i]!]!; return o; }, eng: ([x], at) => T.expand(x!, at.to) },
  sum: { ref: ([x], at) => sumR(x!, at.dims, at.keep), eng: ([x], at) => T.sum(x!, at.dims, at.keep) },
  mean: {
    ref: ([x], at) => { const n = at.dims.reduce((a: number, d: number) => a * x!.s[d]!, 1); return map(sumR(x!, at.dims, at.keep), (v) => v / n); },
    eng: ([x], at) => T.mean(x!, at.dims, at.keep),
  },
  embedding: {
    ref: ([w], at) => { const H = w!.s[1]!, o = mk([at.ids.length, H]); at.ids.forEach((id: number, i: number) => o.d.set(w!.d.subarray(id * H, (id + 1) * H), i * H)); return o; },
    eng: ([w], at) => T.embedding(w!, Int32Array.from(at.ids)),
  },
  crossEntropy: {
    ref: ([x], at) => {
      const [N, V] = rowsOf(x!);
      let tot = 0, cnt = 0;
      for (let r = 0; r < N; r++) {
        const y = at.labels[r];
        if (y === -100) continue;
        const row = x!.d.subarray(r * V, (r + 1) * V), m = Math.max(...row);
        tot += Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) + m - row[y]!;
        cnt++;
      }
      return { s: [], d: Float64Array.of(at.sum ? tot : cnt ? tot / cnt : 0) };
    },
    eng: ([x], at) => T.crossEntropy(x!, Int32Array.from(at.labels), { reduction: at.sum ? 'sum' : 'mean' }),
  },
  lora: {
    // out = h W^T + s * dropout(h) A^T B^T, the branch fused into the base output (loraBranch)
    ref: ([h, w, a, b], at) => {
      const m = at.p > 0 ? dropMask(h!.d.length, at.p, at.seed) : null;
      const hd = m ? { s: h!.s, d: h!.d.map((v, i) => v * m[i]!) } : h!;
      const z = linR(hd, a!, null), br = linR(z, b!, null), y = linR(h!, w!, null);
      return { s: y.s, d: y.d.map((v, i) => v + at.scaling * br.d[i]!) };
    },
    eng: ([h, w, a, b], at) => loraBranch(T.linear(h!, w!), h!, a!, b!, { scaling: at.scaling, p: at.p, stream: (at.p > 0 && streamsMade++, new T.DropoutStream(new Rng(at.seed))) }),
  },
  dropout: {
    ref: ([x], at) => { const m = dropMask(x!.d.length, at.p, at.seed); return { s: x!.s, d: x!.d.map((v, i) => v * m[i]!) }; },
    eng: ([x], at) => T.dropout(x!, at.p, { stream: (streamsMade++, new T.DropoutStream(new Rng(at.seed))) }),
  },
  nf4: {
    ref: ([x], at) => linR(x!, { s: [at.out, at.in], d: Float64Array.from(at.deq) }, null),
    eng: ([x], at) => {
      const layer = NF4Linear.fromLinear(new Linear(T.tensor(at.w, [at.out, at.in])));
      disposers.push(() => layer.dispose()); // its quantised tensors live outside tidy
      return layer.forward(x!);
    },
  },
  attention: {
    ref: ([q, k, v], at) => attnR(q!, k!, v!, at),
    eng: ([q, k, v], at) => {
      const [Tn, D] = [q!.shape[0]!, at.D];
      const o = T.attention(T.reshape(q!, [1, Tn, at.Hq, D]), T.reshape(k!, [1, Tn, at.Hkv, D]), T.reshape(v!, [1, Tn, at.Hkv, D]), { causal: at.causal });
      return T.reshape(o, [Tn, at.Hq * D]);
    },
  },
  rope: {
    ref: ([x], at) => {
      const [Tn, W] = x!.s as [number, number], D = at.D, half = D / 2, o = mk(x!.s);
      for (let t = 0; t < Tn; t++) for (let h = 0; h < W / D; h++) for (let i = 0; i < half; i++) {
        const b = t * W + h * D, x1 = x!.d[b + i]!, x2 = x!.d[b + i + half]!;
        const [c1, s1, c2, s2] = [at.cos[t * D + i], at.sin[t * D + i], at.cos[t * D + i + half], at.sin[t * D + i + half]];
        o.d[b + i] = x1 * c1 - x2 * s1; o.d[b + i + half] = x2 * c2 + x1 * s2;
      }
      return o;
    },
    eng: ([x], at) => {
      const [Tn, W] = x!.shape as [number, number];
      const y = T.rope(T.reshape(x!, [1, Tn, W / at.D, at.D]), T.tensor(Float32Array.from(at.cos), [Tn, at.D]), T.tensor(Float32Array.from(at.sin), [Tn, at.D]));
      return T.reshape(y, [Tn, W]);
    },
  },
  checkpoint: {
    // the inner op over the first `nIn` args; the rest (parameters) read from the closure
    ref: (a, at, ins) => OPS[at.inner]!.ref(a, at.innerAt, ins),
    eng: (a, at, ins) => T.checkpoint((...xs: Tensor[]) => OPS[at.inner]!.eng([...xs, ...a.slice(at.nIn)], at.innerAt, ins), a.slice(0, at.nIn)),
  },
};

// ---------- evaluation ----------
function evalRef(p: Prog, leafVals: Float64Array[], base?: R[]): { vals: R[]; loss: number[] } {
  const vals: R[] = [];
  let li = 0;
  p.nodes.forEach((n, i) => vals.push(isIns(n) ? (n.stop && base ? base[i]! : OPS[n.op]!.ref(n.a.map((j) => vals[j]!), n.at, n)) : { s: n.shape, d: leafVals[li++]! }));
  const loss = p.G.map((gs) => p.sinks.reduce((acc, s, k) => acc + vals[s]!.d.reduce((a, v, i) => a + v * gs[k]![i]!, 0), 0));
  return { vals, loss };
}

/** Expected gradient increments per pass, per leaf (null for frozen leaves). */
function fdGrads(p: Prog): (Float64Array | null)[][] {
  const lv = leavesOf(p).map((l) => Float64Array.from(l.vals));
  const base = evalRef(p, lv).vals;
  const out: (Float64Array | null)[][] = p.G.map(() => []);
  leavesOf(p).forEach((l, li) => {
    if (!l.grad) { out.forEach((o) => o.push(null)); return; }
    const g = p.G.map(() => new Float64Array(l.vals.length));
    for (let j = 0; j < l.vals.length; j++) {
      const v = lv[li]![j]!;
      lv[li]![j] = v + FD_STEP; const up = evalRef(p, lv, base).loss;
      lv[li]![j] = v - FD_STEP; const dn = evalRef(p, lv, base).loss;
      lv[li]![j] = v;
      g.forEach((gg, k) => (gg[j] = (up[k]! - dn[k]!) / (2 * FD_STEP)));
    }
    g.forEach((gg, k) => out[k]!.push(gg));
  });
  return out;
}

function wellConditioned(p: Prog): boolean {
  illCond = false;
  const { vals } = evalRef(p, leavesOf(p).map((l) => l.vals));
  if (illCond) return false;
  return vals.every((v) => v.d.every((x) => Number.isFinite(x) && Math.abs(x) < VALUE_BOUND));
}

/** Runs the program's passes on the engine; returns each leaf's grad after every pass (null: none). */
function runEngine(p: Prog): (Float32Array | null)[][] {
  const L = leavesOf(p);
  const leaves = L.map((l) => T.keep(T.tensor(Float32Array.from(l.vals), l.shape, { requiresGrad: l.grad, dtype: l.dtype })));
  L.forEach((l, i) => { if (l.pre) leaves[i]!.grad = T.tensor(Float32Array.from(l.pre), l.shape, { dtype: l.dtype }); });
  const after: (Float32Array | null)[][] = [];
  try {
    for (let pass = 0; pass < p.passes; pass++) {
      T.tidy(() => {
        const vals: Tensor[] = [];
        let li = 0;
        for (const n of p.nodes) {
          if (!isIns(n)) { vals.push(leaves[li++]!); continue; }
          const run = () => OPS[n.op]!.eng(n.a.map((i) => vals[i]!), n.at, n);
          vals.push(n.stop === 'noGrad' ? T.noGrad(run) : n.stop === 'detach' ? run().detach() : run());
        }
        // intermediates let go before the backward (the graph keeps what it needs)
        if (p.disposeEarly) for (const [i, v] of vals.entries()) if (isIns(p.nodes[i]!) && !p.sinks.includes(i) && !leaves.includes(v)) v.dispose();
        const gs = p.G[pass]!;
        if (p.loss === 'seed' && p.sinks.length === 1) {
          const s = vals[p.sinks[0]!]!;
          s.backward(T.tensor(Float32Array.from(gs[0]!), s.shape, { dtype: s.dtype }));
        } else {
          let tot: Tensor | null = null;
          p.sinks.forEach((si, k) => {
            const v = vals[si]!;
            const term = T.sum(T.mul(v, T.tensor(Float32Array.from(gs[k]!), v.shape)));
            tot = tot ? T.add(tot, term) : term;
          });
          tot!.backward();
        }
      });
      for (const d of disposers.splice(0)) d();
      after.push(leaves.map((t) => (t.grad ? t.grad.toFloat32Array() : null)));
      const b = p.between[pass];
      if (b) {
        for (const i of b.zero) if (leaves[i]!.grad) T.fillInPlace(leaves[i]!.grad!, 0);
        for (const [i, s] of b.scale) if (leaves[i]!.grad) T.scaleInPlace(leaves[i]!.grad!, s);
      }
    }
  } finally {
    for (const t of leaves) t.dispose();
  }
  return after;
}

// ---------- checking ----------
interface Mismatch { pass: number; leaf: number; err: number; bound: number; at: number; got: number; want: number }

function check(p: Prog): Mismatch[] {
  const fd = fdGrads(p);
  const got = runEngine(p);
  const bad: Mismatch[] = [];
  const L = leavesOf(p);
  const hist = L.map(() => 0);
  const cum = L.map((l) => (l.pre ? Float64Array.from(l.pre) : new Float64Array(l.vals.length)));
  for (let pass = 0; pass < p.passes; pass++) {
    let globalMax = 0;
    fd[pass]!.forEach((g) => g?.forEach((v) => (globalMax = Math.max(globalMax, Math.abs(v)))));
    L.forEach((l, li) => {
      const inc = fd[pass]![li];
      const g = got[pass]![li];
      if (!l.grad) {
        if (g !== null) bad.push({ pass, leaf: li, err: Infinity, bound: 0, at: -1, got: NaN, want: NaN });
        return;
      }
      const want = cum[li]!;
      for (let j = 0; j < want.length; j++) want[j] += inc![j]!;
      const gv = g ?? new Float32Array(want.length); // no grad: zeros expected
      let incMax = 0, err = 0, at = 0;
      for (let j = 0; j < want.length; j++) {
        incMax = Math.max(incMax, Math.abs(want[j]! - (l.pre?.[j] ?? 0)));
        hist[li] = Math.max(hist[li]!, Math.abs(want[j]!), Math.abs(l.pre?.[j] ?? 0));
        const e = Math.abs(gv[j]! - want[j]!);
        if (!(e <= err)) { err = e; at = j; }
      }
      // relative to the leaf's own gradient (or a hundredth of the largest), plus the rounding of
      // the grad's storage dtype over every value it held so far
      const round = l.dtype === 'bfloat16' ? 2 ** -8 : l.dtype === 'float16' ? 2 ** -11 : 2 ** -23;
      const bound = (p.half ? HALF_TOL : l.dtype === 'bfloat16' ? BF16_TOL : GRAD_TOL) * Math.max(incMax, 1e-2 * globalMax) + (p.half ? HALF_FLOOR : ABS_FLOOR) + round * hist[li]! * 2 * (pass + 1);
      if (!(err <= bound)) bad.push({ pass, leaf: li, err, bound, at, got: gv[at]!, want: want[at]! });
    });
    const b = p.between[pass];
    if (b) {
      for (const i of b.zero) cum[i]!.fill(0);
      for (const [i, s] of b.scale) cum[i] = cum[i]!.map((v) => v * s);
    }
  }
  return bad;
}

// ---------- generation ----------
/** bf16: some graphs keep their parameters in bfloat16; half: float16 everything (LoRA adapters float32); inplace: grads zeroed / scaled in place between the passes. */
interface GenOpts { minIns: number; maxIns: number; bf16: boolean; half?: boolean; inplace?: boolean }

function generate(seed: number, o: GenOpts = { minIns: 3, maxIns: 10, bf16: true }): Prog {
  const rng = new Rng(seed * 7919 + 17);
  const pick = <X>(xs: readonly X[]): X => xs[rng.int(xs.length)]!;
  const chance = (q: number) => rng.uniform() < q;
  const half = o.half ?? false;
  const useBf16 = !half && o.bf16 && chance(0.15);
  const round = (v: number, dt: LeafDtype) => (dt === 'bfloat16' ? T.bf16BitsToF32(T.f32ToBf16Bits(v)) : dt === 'float16' ? T.f16BitsToF32(T.f32ToF16Bits(v)) : v);
  const nodes: (Leaf | Ins)[] = [];
  const shapes: number[][] = [];
  const uses: number[] = [];
  const isParam: boolean[] = [];
  let nIns = 0;
  const forceSinks: number[] = [];
  const vals32 = (n: number, kind: 'normal' | 'positive' | 'small', dt: LeafDtype) =>
    Float64Array.from({ length: n }, () => {
      let v = kind === 'positive' ? 0.5 + 1.5 * rng.uniform() : kind === 'small' ? 0.5 * rng.normal() : rng.normal();
      v = Math.fround(v);
      return round(v, dt);
    });
  function leaf(shape: number[], opts: { kind?: 'normal' | 'positive' | 'small'; param?: boolean; low?: 'yes' | 'no' | 'adapter'; frozenP?: number } = {}): number {
    const low = opts.low ?? (opts.param ? 'yes' : 'no');
    const dt: LeafDtype = half ? (low === 'adapter' ? 'float32' : 'float16') : useBf16 && low !== 'no' ? 'bfloat16' : 'float32';
    const grad = !chance(opts.frozenP ?? 0.3);
    const l: Leaf = { shape, vals: vals32(size(shape), opts.kind ?? 'normal', dt), grad, pre: null, dtype: dt };
    if (grad && chance(0.35)) l.pre = vals32(size(shape), 'normal', dt);
    nodes.push(l);
    shapes.push(shape);
    uses.push(0);
    isParam.push(opts.param ?? false);
    return nodes.length - 1;
  }
  /** A parameter of this shape: an existing one (shared weights) or a new one. */
  function param(shape: number[], kind: 'normal' | 'positive' | 'small' = 'small', low: 'yes' | 'no' | 'adapter' = 'yes'): number {
    const dt = half ? (low === 'adapter' ? 'float32' : 'float16') : useBf16 && low !== 'no' ? 'bfloat16' : 'float32';
    const have = nodes.map((_, i) => i).filter((i) => isParam[i] && shapes[i]!.join() === shape.join() && uses[i]! < 4 && (nodes[i] as Leaf).dtype === dt);
    if (have.length && chance(0.6)) return pick(have);
    return leaf(shape, { kind, param: true, low, frozenP: 0.25 });
  }
  // two inputs to start from
  leaf([3, 4]);
  if (chance(0.6)) leaf([3, pick([4, 6])]);
  const want = o.minIns + rng.int(o.maxIns - o.minIns + 1);
  const avail = (pred: (s: number[], i: number) => boolean = () => true) =>
    shapes.map((s, i) => i).filter((i) => !isParam[i] && uses[i]! < 4 && pred(shapes[i]!, i));
  /** The main operand: the newest value often (depth), else any (fan-out). */
  function primary(pred: (s: number[]) => boolean = () => true): number | null {
    const c = avail(pred);
    if (!c.length) return null;
    return chance(0.55) ? c[c.length - 1]! : pick(c);
  }
  /** Values x was computed from (residual-style diamonds when one is paired with x again). */
  function ancestors(x: number): Set<number> {
    const seen = new Set<number>();
    const go = (i: number) => { const n = nodes[i]!; if (isIns(n)) for (const a of n.a) if (!seen.has(a)) { seen.add(a); go(a); } };
    go(x);
    return seen;
  }
  /** A second operand of this shape: the same value sometimes (x op x), an ancestor of x, another, or a new leaf. */
  function partner(x: number, shape: number[]): number {
    const same = avail((s) => s.join() === shape.join());
    if (chance(0.2) && uses[x]! < 4) return x;
    const anc = ancestors(x);
    const related = same.filter((i) => anc.has(i));
    if (related.length && chance(0.5)) return pick(related);
    if (same.length && chance(0.6)) return pick(same);
    return leaf(shape, { frozenP: 0.4 });
  }
  const emit = (op: string, a: number[], at: any, shape: number[]) => {
    for (const i of a) uses[i]!++;
    nodes.push({ op, a, at, shape });
    shapes.push(shape);
    uses.push(0);
    isParam.push(false);
    nIns++;
  };
  const gens: [number, () => boolean][] = [
    [3, () => { const x = primary(); if (x === null) return false; emit('unary', [x], { f: pick(Object.keys(UNARY).filter((f) => f !== 'exp' || chance(0.3))) }, shapes[x]!); return true; }],
    [1, () => { const x = primary(); if (x === null) return false; emit('scale', [x], { s: pick([-1.5, -0.5, 0.5, 2]) }, shapes[x]!); return true; }],
    [6, () => {
      const x = primary(); if (x === null) return false;
      const s = shapes[x]!;
      const op = pick(['add', 'add', 'sub', 'mul']);
      let y: number;
      if (chance(0.7) || s.length === 0) y = partner(x, s);
      else {
        const bs = pick([[s[s.length - 1]!], [1, s[s.length - 1]!], s.length >= 2 ? [...s.slice(0, -1), 1] : [1], []]);
        const c = avail((t) => t.join() === bs.join());
        y = c.length && chance(0.5) ? pick(c) : leaf(bs, { frozenP: 0.4 });
      }
      const [a, b] = chance(0.3) ? [y, x] : [x, y];
      emit(op, [a, b], {}, bshape(shapes[a]!, shapes[b]!));
      return true;
    }],
    [1, () => { const x = primary(); if (x === null) return false; const s = shapes[x]!; const y = leaf(chance(0.5) || !s.length ? [...s] : [s[s.length - 1]!], { kind: 'positive', frozenP: 0.3 }); emit('div', [x, y], {}, bshape(s, shapes[y]!)); return true; }],
    [6, () => {
      const x = primary((s) => s.length >= 1 && s[s.length - 1]! <= 9); if (x === null) return false;
      const s = shapes[x]!, inF = s[s.length - 1]!;
      const cw = avail((t) => t.length === 2 && t[1] === inF && t[0]! <= 9);
      const w = cw.length && chance(0.25) ? (cw.includes(x) && chance(0.5) ? x : pick(cw)) : param([pick([2, 3, 4, 6]), inF]);
      const outF = shapes[w]![0]!;
      const a = [x, w];
      if (chance(0.4)) a.push(param([outF], 'small'));
      else if (chance(0.2)) a.push(leaf([outF], { frozenP: 0.3 }));
      emit('linear', a, {}, [...s.slice(0, -1), outF]);
      // linear(x, W) again with the same W (and x), sometimes
      if (chance(0.2) && uses[x]! < 4 && uses[w]! < 4) emit('linear', a, {}, [...s.slice(0, -1), outF]);
      return true;
    }],
    [2, () => {
      const x = primary((s) => s.length >= 2); if (x === null) return false;
      const s = shapes[x]!, K = s[s.length - 1]!;
      // x x^T (the same value twice), or x times a [K, N] value / parameter
      if (chance(0.4) && s.length === 2 && uses[x]! < 3) {
        emit('transpose', [x], { d0: 0, d1: 1 }, [K, s[0]!]);
        emit('matmul', [x, shapes.length - 1], {}, [s[0]!, s[0]!]);
        return true;
      }
      const c = avail((t) => t.length === 2 && t[0] === K);
      const b = c.length && chance(0.5) ? pick(c) : param([K, pick([2, 3, 4])]);
      emit('matmul', [x, b], {}, [...s.slice(0, -1), shapes[b]![1]!]);
      return true;
    }],
    [3, () => {
      const x = primary((s) => s.length >= 1 && s[s.length - 1]! >= 3); if (x === null) return false;
      const Hn = shapes[x]![shapes[x]!.length - 1]!;
      if (chance(0.5)) emit('rmsNorm', [x, param([Hn], 'positive')], {}, shapes[x]!);
      else emit('layerNorm', chance(0.5) ? [x, param([Hn], 'positive'), param([Hn], 'small')] : [x, param([Hn], 'positive')], {}, shapes[x]!);
      return true;
    }],
    [2, () => { const x = primary((s) => s.length >= 1); if (x === null) return false; emit('softmax', [x], {}, shapes[x]!); return true; }],
    [2, () => { const x = primary(); if (x === null) return false; emit('swiglu', [x, partner(x, shapes[x]!)], {}, shapes[x]!); return true; }],
    [2, () => {
      const x = primary((s) => s.length >= 2); if (x === null) return false;
      const s = shapes[x]!;
      if (s.length === 3 && chance(0.5)) { const perm = pick([[2, 0, 1], [1, 2, 0], [0, 2, 1]]); emit('permute', [x], { perm }, perm.map((d) => s[d]!)); return true; }
      const t = [...s]; [t[s.length - 2], t[s.length - 1]] = [t[s.length - 1]!, t[s.length - 2]!];
      emit('transpose', [x], { d0: s.length - 2, d1: s.length - 1 }, t);
      return true;
    }],
    [2, () => {
      const x = primary((s) => size(s) > 1); if (x === null) return false;
      const n = size(shapes[x]!);
      const divs = [2, 3, 4, 6, 9].filter((d) => n % d === 0 && d < n);
      const to = divs.length && chance(0.75) ? (() => { const d = pick(divs); const r = n / d; const q = [2, 3].filter((e) => r % e === 0 && e < r); return q.length && chance(0.3) ? [d, q[0]!, r / q[0]!] : [d, r]; })() : [n];
      emit('reshape', [x], { to }, to);
      return true;
    }],
    [2, () => {
      const x = primary((s) => s.some((n) => n >= 2)); if (x === null) return false;
      const s = shapes[x]!, dims = s.map((n, i) => i).filter((i) => s[i]! >= 2), dim = pick(dims);
      const st = rng.int(s[dim]! - 1), e = st + 1 + rng.int(s[dim]! - st);
      const t = [...s]; t[dim] = e - st;
      emit('slice', [x], { dim, s: st, e }, t);
      return true;
    }],
    [2, () => {
      const x = primary((s) => s.length >= 1); if (x === null) return false;
      const s = shapes[x]!, dim = rng.int(s.length);
      const c = avail((t) => t.length === s.length && t.every((n, i) => i === dim || n === s[i]));
      const y = chance(0.35) && uses[x]! < 3 ? x : c.length ? pick(c) : x;
      const t = [...s]; t[dim] = s[dim]! + shapes[y]![dim]!;
      emit('concat', [x, y], { dim }, t);
      return true;
    }],
    [1, () => {
      const x = primary((s) => s.length >= 1 && s.length <= 2 && s.includes(1) || s.length === 1); if (x === null) return false;
      const s = shapes[x]!;
      const to = s.length === 1 ? [3, s[0]!] : s.map((n) => (n === 1 ? 3 : n));
      emit('expand', [x], { to }, to);
      return true;
    }],
    [3, () => {
      const x = primary((s) => s.length >= 1); if (x === null) return false;
      const s = shapes[x]!;
      const dims = chance(0.2) ? s.map((_, i) => i) : [rng.int(s.length)];
      const keep = chance(0.5);
      const t = keep ? s.map((n, i) => (dims.includes(i) ? 1 : n)) : s.filter((_, i) => !dims.includes(i));
      emit(chance(0.5) ? 'sum' : 'mean', [x], { dims, keep }, t);
      return true;
    }],
    [1, () => {
      const Hn = pick([4, 6]);
      const E = param([5, Hn], 'normal', half ? 'yes' : 'no');
      const ids = Array.from({ length: 3 }, () => rng.int(5));
      emit('embedding', [E], { ids }, [3, Hn]);
      return true;
    }],
    [1, () => {
      const x = primary((s) => s.length === 2 && s[1]! >= 2); if (x === null) return false;
      const [N, V] = shapes[x]! as [number, number];
      const labels = Array.from({ length: N }, () => (chance(0.2) ? -100 : rng.int(V)));
      emit('crossEntropy', [x], { labels, sum: chance(0.3) }, []);
      if (half) { uses[nodes.length - 1] = 99; forceSinks.push(nodes.length - 1); } // float32 out: a sink only
      return true;
    }],
    [4, () => {
      const x = primary((s) => s.length >= 1 && s[s.length - 1]! >= 2 && s[s.length - 1]! <= 9); if (x === null) return false;
      const s = shapes[x]!, inF = s[s.length - 1]!, outF = pick([3, 4, 6]), r = pick([1, 2]);
      const w = param([outF, inF]);
      const A = param([r, inF], 'small', 'adapter'), B = param([outF, r], 'small', 'adapter');
      emit('lora', [x, w, A, B], { scaling: pick([0.5, 2]), p: chance(0.3) ? 0.3 : 0, seed: rng.int(1000) }, [...s.slice(0, -1), outF]);
      return true;
    }],
    [1, () => { const x = primary(); if (x === null) return false; emit('dropout', [x], { p: 0.3, seed: rng.int(1000) }, shapes[x]!); return true; }],
    [1, () => {
      const x = primary((s) => s.length >= 1 && s[s.length - 1]! <= 9); if (x === null) return false;
      const s = shapes[x]!, inF = s[s.length - 1]!, outF = pick([3, 4]);
      const w = Float32Array.from({ length: outF * inF }, () => rng.normal() * 0.5);
      emit('nf4', [x], { w, out: outF, in: inF, deq: dequantizeNf4(quantizeNf4(w)) }, [...s.slice(0, -1), outF]);
      return true;
    }],
    [2, () => {
      const q = primary((s) => s.length === 2 && s[1]! % 2 === 0 && s[1]! >= 4); if (q === null) return false;
      const [Tn, W] = shapes[q]! as [number, number], Hq = W / 2;
      const Hkv = pick([1, Hq].filter((h) => Hq % h === 0));
      const kv = (prefer: number) => { const c = avail((t) => t.length === 2 && t[0] === Tn && t[1] === Hkv * 2); return c.includes(prefer) && chance(0.4) ? prefer : c.length && chance(0.5) ? pick(c) : leaf([Tn, Hkv * 2], { frozenP: 0.4 }); };
      const k = kv(q), v = chance(0.3) ? k : kv(q);
      emit('attention', [q, k, v], { Hq, Hkv, D: 2, causal: chance(0.5) }, [Tn, W]);
      return true;
    }],
    [1, () => {
      const x = primary((s) => s.length === 2 && s[1]! % 2 === 0); if (x === null) return false;
      const [Tn, W] = shapes[x]! as [number, number], D = pick([2, W].filter((d) => W % d === 0));
      const ang = Array.from({ length: Tn * D / 2 }, () => rng.uniform() * 6);
      const cos = Array.from({ length: Tn * D }, (_, i) => Math.fround(Math.cos(ang[Math.floor(i / D) * D / 2 + (i % D) % (D / 2)]!)));
      const sin = Array.from({ length: Tn * D }, (_, i) => Math.fround(Math.sin(ang[Math.floor(i / D) * D / 2 + (i % D) % (D / 2)]!)));
      emit('rope', [x], { D, cos, sin }, [Tn, W]);
      return true;
    }],
    [2, () => {
      // checkpoint around linear / rmsNorm (parameters from the closure) or mul / swiglu (both inputs)
      const x = primary((s) => s.length >= 1 && s[s.length - 1]! >= 3 && s[s.length - 1]! <= 9); if (x === null) return false;
      const s = shapes[x]!, Hn = s[s.length - 1]!;
      const kind = pick(['linear', 'rmsNorm', 'mul', 'swiglu']);
      if (kind === 'linear') { const outF = pick([3, 4]); emit('checkpoint', [x, param([outF, Hn])], { inner: 'linear', innerAt: {}, nIn: 1 }, [...s.slice(0, -1), outF]); }
      else if (kind === 'rmsNorm') emit('checkpoint', [x, param([Hn], 'positive')], { inner: 'rmsNorm', innerAt: {}, nIn: 1 }, s);
      else emit('checkpoint', [x, partner(x, s)], { inner: kind, innerAt: {}, nIn: 2 }, s);
      return true;
    }],
  ];
  gens.push([4, () => {
    // residual blocks: h + f(h), f = q + k (linears over h), a LoRA layer, or a linear over rmsNorm(h)
    const h = primary((s) => s.length === 2 && s[1]! >= 3 && s[1]! <= 6); if (h === null || uses[h]! > 1) return false;
    const s = shapes[h]!, F = s[1]!;
    const kind = pick(['qk', 'lora', 'norm', 'qkv']);
    const lin = (x: number) => { emit('linear', [x, param([F, F])], {}, s); return nodes.length - 1; };
    let f: number;
    if (kind === 'qk' || kind === 'qkv') {
      const q = lin(h), k = lin(h);
      emit('add', [q, k], {}, s); f = nodes.length - 1;
      if (kind === 'qkv') { const v = lin(h); emit('add', chance(0.5) ? [f, v] : [v, f], {}, s); f = nodes.length - 1; }
    } else if (kind === 'lora') {
      emit('lora', [h, param([F, F]), param([2, F], 'small', 'adapter'), param([F, 2], 'small', 'adapter')], { scaling: 0.5, p: chance(0.3) ? 0.3 : 0, seed: rng.int(1000) }, s); f = nodes.length - 1;
    } else {
      emit('rmsNorm', [h, param([F], 'positive')], {}, s);
      f = lin(nodes.length - 1);
    }
    emit(chance(0.8) ? 'add' : 'sub', chance(0.5) ? [h, f] : [f, h], {}, s);
    return true;
  }]);
  gens.push([1, () => {
    // two leaves added (their grads are one storage after the backward), then used again
    const a = leaf([3, 4], { frozenP: 0.1 }), b = chance(0.5) ? leaf([3, 4], { frozenP: 0.1 }) : 0;
    emit('add', [a, b], {}, [3, 4]);
    return true;
  }]);
  const total = gens.reduce((a, [w]) => a + w, 0);
  let guard = 0;
  while (nIns < want && guard++ < 200) {
    let r = rng.uniform() * total;
    for (const [w, g] of gens) {
      if ((r -= w) < 0) { g(); break; }
    }
  }
  // sinks: the last value, and sometimes others with few uses
  const outs = nodes.map((n, i) => i).filter((i) => isIns(nodes[i]!));
  const sinks = [outs[outs.length - 1]!];
  for (const i of outs) if (!sinks.includes(i) && uses[i] === 0 && chance(0.5)) sinks.push(i);
  for (const i of forceSinks) if (!sinks.includes(i)) sinks.push(i);
  if (chance(0.2)) { const extra = pick(outs); if (!sinks.includes(extra)) sinks.push(extra); }
  for (const [i, n] of nodes.entries()) if (isIns(n) && !sinks.includes(i) && chance(0.04)) n.stop = chance(0.5) ? 'noGrad' : 'detach';
  // at least one trainable leaf must reach a sink
  const anc = new Set<number>();
  const visit = (i: number) => { if (anc.has(i)) return; anc.add(i); const n = nodes[i]!; if (isIns(n) && !n.stop) n.a.forEach(visit); };
  sinks.forEach(visit);
  let reach = [...anc].filter((i) => !isIns(nodes[i]!));
  if (!reach.length) {
    for (const n of nodes) if (isIns(n)) delete n.stop;
    anc.clear(); sinks.forEach(visit);
    reach = [...anc].filter((i) => !isIns(nodes[i]!));
  }
  if (!reach.some((i) => (nodes[i] as Leaf).grad)) (nodes[pick(reach)] as Leaf).grad = true;
  const passes = chance(0.6) ? 2 : 1;
  const G = Array.from({ length: passes }, () => sinks.map((s) => vals32(size(shapes[s]!), 'normal', half ? 'float16' : 'float32')));
  const L = nodes.filter((n): n is Leaf => !isIns(n));
  const between = o.inplace ? Array.from({ length: passes - 1 }, () => {
    const zero: number[] = [], scl: [number, number][] = [];
    L.forEach((l, i) => { if (l.grad && chance(0.3)) zero.push(i); else if (l.grad && chance(0.2)) scl.push([i, 0.5]); });
    return { zero, scale: scl };
  }) : [];
  return { half, disposeEarly: chance(0.3), between, nodes, sinks, G, loss: sinks.length === 1 && chance(0.5) ? 'seed' : 'ops', passes };
}

// ---------- the tests ----------

/** Checks `seeds` generated graphs; returns a report line per failing seed (and counts). */
function fuzz(seeds: number, opts: GenOpts): { ran: number; failures: string[] } {
  const failures: string[] = [];
  let ran = 0;
  for (let seed = 0; seed < seeds; seed++) {
    const p = generate(seed, opts);
    if (!wellConditioned(p)) continue;
    ran++;
    const live = T.memoryStats().liveTensors - streamsMade; // a DropoutStream keeps its seed buffer
    try {
      const bad = check(p);
      if (bad.length) failures.push(`seed ${seed}: ${JSON.stringify(bad.slice(0, 2))}`);
    } catch (e) {
      failures.push(`seed ${seed}: threw ${(e as Error).message}`);
    }
    const leaked = T.memoryStats().liveTensors - streamsMade - live;
    if (leaked !== 0) failures.push(`seed ${seed}: ${leaked} tensors left alive`);
  }
  return { ran, failures };
}

const SEEDS = 500;
const HALF_SEEDS = 250;

test(`random graphs, float32 activations (some bfloat16 parameters): every leaf's grad over two backward passes against float64 finite differences (${SEEDS} seeds)`, () => {
  const { ran, failures } = fuzz(SEEDS, { minIns: 3, maxIns: 10, bf16: true });
  assert.ok(ran > 0.85 * SEEDS, `only ${ran} of ${SEEDS} graphs were well conditioned`);
  assert.deepEqual(failures, []);
});

test(`random graphs, float16 activations and parameters (float32 LoRA adapters) (${HALF_SEEDS} seeds)`, () => {
  const { ran, failures } = fuzz(HALF_SEEDS, { minIns: 3, maxIns: 10, bf16: false, half: true });
  assert.ok(ran > 0.85 * HALF_SEEDS, `only ${ran} of ${HALF_SEEDS} graphs were well conditioned`);
  assert.deepEqual(failures, []);
});

/** A hand-written program: leaves from `rng`, every one trainable with a kept grad, two passes. */
function program(rng: Rng, leaves: number[][], ins: Omit<Ins, 'shape'>[], shapes: number[][], loss: Prog['loss']): Prog {
  const vals = (n: number) => Float64Array.from({ length: n }, () => Math.fround(rng.normal()));
  const nodes: (Leaf | Ins)[] = leaves.map((s) => ({ shape: s, vals: vals(size(s)), grad: true, pre: vals(size(s)), dtype: 'float32' }));
  ins.forEach((n, i) => nodes.push({ ...n, shape: shapes[i]! }));
  const sink = nodes.length - 1;
  const G = [0, 1].map(() => [vals(size(nodes[sink]!.shape))]);
  return { half: false, disposeEarly: false, between: [], nodes, sinks: [sink], G, loss, passes: 2 };
}

test('x + (x Wq^T + x Wk^T) and x + (x + x Wq^T): one dy handed to two inputs is not written while the other still needs it', () => {
  const rng = new Rng(11);
  const s = [5, 8];
  for (const through of [false, true]) {
    for (const loss of ['seed', 'ops'] as const) {
      const what = `x ${through ? 'through an op' : 'a leaf'}, loss ${loss}`;
      // leaves: x, then the weights; h = x, or scale(x, 1) (then x's gradient is gathered, not a leaf's grad)
      const build = (nW: number, body: (h: number, next: number) => Omit<Ins, 'shape'>[]): Prog => {
        const h = through ? nW + 1 : 0;
        const head: Omit<Ins, 'shape'>[] = through ? [{ op: 'scale', a: [0], at: { s: 1 } }] : [];
        const ins = [...head, ...body(h, nW + 1 + head.length)];
        return program(rng, [s, ...Array.from({ length: nW }, () => [8, 8])], ins, ins.map(() => s), loss);
      };
      // x + (q + k): ids q = n, k = n + 1, q + k = n + 2
      const qk = build(2, (h, n) => [{ op: 'linear', a: [h, 1], at: {} }, { op: 'linear', a: [h, 2], at: {} }, { op: 'add', a: [n, n + 1], at: {} }, { op: 'add', a: [h, n + 2], at: {} }]);
      assert.deepEqual(check(qk), [], `x + (q + k), ${what}`);
      // x + (x + q): q = n, x + q = n + 1
      const xq = build(1, (h, n) => [{ op: 'linear', a: [h, 1], at: {} }, { op: 'add', a: [h, n], at: {} }, { op: 'add', a: [h, n + 1], at: {} }]);
      assert.deepEqual(check(xq), [], `x + (x + q), ${what}`);
    }
  }
});

// One gradient storage can reach two leaves (add passes its dy to both inputs; also reshape, expand
// and sumToShape without a reduction): each leaf's grad must still be its own, so that an in-place
// update of one grad (clipGradNorm's scaleInPlace, zero_grad's fillInPlace) leaves the other. The
// fuzz with `inplace` found this within a few hundred seeds.
test('grads of two parameters given one pass-through gradient are separate: scaling or zeroing one in place leaves the other', () => {
  const w1 = T.tensor([1, 2, 3], [3], { requiresGrad: true });
  const w2 = T.tensor([4, 5, 6], [3], { requiresGrad: true });
  T.tidy(() => T.sum(T.mul(T.add(w1, w2), T.tensor([3, 4, 0], [3]))).backward());
  T.scaleInPlace(w1.grad!, 0.5);
  const w2grad = [...w2.grad!.toFloat32Array()];
  w1.dispose();
  w2.dispose();
  assert.deepEqual(w2grad, [3, 4, 0]);
  const { failures } = fuzz(300, { minIns: 3, maxIns: 10, bf16: true, inplace: true });
  assert.deepEqual(failures, []);
});

test("backward(grad) takes the caller's gradient as a value: cast to the root's dtype, never the storage of a leaf's grad", () => {
  T.tidy(() => {
    const w = T.tensor([1, -2, 3], [3], { requiresGrad: true, dtype: 'bfloat16' });
    const seed = T.tensor([2, 4, 8], [3], { dtype: 'bfloat16' });
    T.reshape(w, [3]).backward(seed); // a pass-through: the seed itself reaches the leaf
    T.fillInPlace(w.grad!, 0);
    assert.deepEqual([...seed.toFloat32Array()], [2, 4, 8]);
    const grads = [seed, T.tensor([2, 4, 8], [3])].map((g) => { // bfloat16, float32
      w.grad = null;
      T.silu(w).backward(g);
      return [...w.grad!.toFloat32Array()];
    });
    assert.deepEqual(grads[1], grads[0]);
    w.dispose();
  });
});

test("a kept grad in another dtype than its parameter's is added to in the grad's dtype", () => {
  T.tidy(() => {
    const w = T.tensor([1, 2], [1, 2], { requiresGrad: true, dtype: 'bfloat16' });
    w.grad = T.tensor([10, 10], [1, 2]); // float32
    T.linear(T.tensor([1, 1], [1, 2], { dtype: 'bfloat16' }), w).backward(T.tensor([1], [1, 1], { dtype: 'bfloat16' }));
    assert.equal(w.grad.dtype, 'float32');
    assert.deepEqual([...w.grad.toFloat32Array()], [11, 11]);
    w.dispose();
  });
});

test('a parameter frozen between forward and backward gets no gradient, with or without a kept grad', () => {
  T.tidy(() => {
    for (const kept of [false, true]) {
      const w = T.tensor([1, 2], [1, 2], { requiresGrad: true });
      if (kept) w.grad = T.tensor([5, 5], [1, 2]);
      const y = T.linear(T.tensor([1, 1], [1, 2]), w);
      w.requiresGrad = false;
      y.backward(T.tensor([1], [1, 1]));
      assert.deepEqual(w.grad === null ? null : [...w.grad.toFloat32Array()], kept ? [5, 5] : null, `kept grad: ${kept}`);
      w.dispose();
    }
  });
});
