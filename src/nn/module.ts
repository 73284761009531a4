// Module: a tree of layers whose parameter names are the checkpoint's own names (Contract 2).
// Children are own properties holding a Module or a Module[] (named `layers.0`, `layers.1`, ...);
// parameters are own properties holding a Tensor. Anything that must not count as a parameter
// (caches, tables) lives in `#private` fields or plain arrays. No hooks, no buffers registry.

import { XtunerError } from '../errors.ts';
import { Tensor } from '../tensor/index.ts';

export abstract class Module {
  training = true;

  /** [name, tensor] for every parameter below this module; a tensor shared by two modules is listed once (first name). */
  *namedParameters(prefix = ''): IterableIterator<[string, Tensor]> {
    const seen = new Set<Tensor>();
    for (const [path, m] of this.namedModules(prefix)) {
      for (const [key, value] of Object.entries(m)) {
        if (value instanceof Tensor && !seen.has(value)) {
          seen.add(value);
          yield [path ? `${path}.${key}` : key, value];
        }
      }
    }
  }

  *parameters(): IterableIterator<Tensor> {
    for (const [, p] of this.namedParameters()) yield p;
  }

  /** This module (named `prefix`) and every descendant, depth first, in declaration order. */
  *namedModules(prefix = ''): IterableIterator<[string, Module]> {
    yield [prefix, this];
    for (const [key, value] of Object.entries(this)) {
      const name = prefix ? `${prefix}.${key}` : key;
      if (value instanceof Module) yield* value.namedModules(name);
      else if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) if (value[i] instanceof Module) yield* (value[i] as Module).namedModules(`${name}.${i}`);
      }
    }
  }

  getSubmodule(path: string): Module {
    let m: Module = this;
    if (path === '') return m;
    const parts = path.split('.');
    for (let i = 0; i < parts.length; i++) {
      const v: unknown = (m as unknown as Record<string, unknown>)[parts[i]!];
      if (v instanceof Module) m = v;
      else if (Array.isArray(v) && v[Number(parts[i + 1])] instanceof Module) m = v[Number(parts[++i])] as Module;
      else throw new XtunerError(`no submodule '${path}' (stopped at '${parts.slice(0, i + 1).join('.')}')`);
    }
    return m;
  }

  /** Replaces an existing submodule (e.g. a Linear by a LoRA wrapper). */
  setSubmodule(path: string, module: Module): void {
    const parts = path.split('.');
    const last = parts.pop()!;
    const parent = parts.length && /^\d+$/.test(last) ? null : this.getSubmodule(parts.join('.'));
    if (parent) {
      if (!((parent as unknown as Record<string, unknown>)[last] instanceof Module)) throw new XtunerError(`no submodule '${path}' to replace`);
      (parent as unknown as Record<string, unknown>)[last] = module;
      return;
    }
    // `path` ends in a list index: parent path names the list.
    const listKey = parts.pop()!;
    const owner = this.getSubmodule(parts.join('.')) as unknown as Record<string, unknown>;
    const list = owner[listKey];
    if (!Array.isArray(list) || !(list[Number(last)] instanceof Module)) throw new XtunerError(`no submodule '${path}' to replace`);
    list[Number(last)] = module;
  }

  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Sets a child under a name chosen at run time (architectures name their parts differently). */
  protected addModule(name: string, module: Module | Module[]): void {
    (this as unknown as Record<string, unknown>)[name] = module;
  }

  /** The child named `name`, read at call time so a replacement by setSubmodule takes effect. */
  protected child<T extends Module = Module>(name: string): T {
    const v = (this as unknown as Record<string, unknown>)[name];
    if (!(v instanceof Module)) throw new XtunerError(`${this.constructor.name} has no submodule '${name}'`);
    return v as T;
  }
}
