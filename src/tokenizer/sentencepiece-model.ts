// Reads the vocabulary and special ids out of a SentencePiece `tokenizer.model` (a protobuf
// ModelProto). The WebAssembly SentencePiece encodes and decodes but exposes no vocabulary, piece
// types or special ids; this reader supplies them. It decodes only the fields listed below.
//
// ModelProto { repeated SentencePiece pieces = 1; TrainerSpec trainer_spec = 2; }
// SentencePiece { string piece = 1; float score = 2; Type type = 3; }
// TrainerSpec { int32 unk_id = 40; bos_id = 41; eos_id = 42; pad_id = 43; }   (-1: none)

import { XtunerError } from '../errors.ts';

/** SentencePiece piece types (sentencepiece_model.proto). */
export const PieceType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export interface SentencePieceModel {
  pieces: string[];
  types: Uint8Array; // [vocab] PieceType per id
  unkId: number | null;
  bosId: number | null;
  eosId: number | null;
  padId: number | null;
}

class Reader {
  pos = 0;
  constructor(
    readonly buf: Uint8Array,
    readonly end: number,
    readonly file: string,
  ) {}

  /** Varint as a signed 32-bit value (enough for every field read here; negatives are 10 bytes). */
  varint32(): number {
    let result = 0;
    for (let shift = 0; ; shift += 7) {
      if (this.pos >= this.end) throw this.corrupt();
      const b = this.buf[this.pos++]!;
      if (shift < 32) result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result | 0;
      if (shift > 63) throw this.corrupt();
    }
  }

  skip(wireType: number): void {
    if (wireType === 0) this.varint32();
    else if (wireType === 1) this.pos += 8;
    else if (wireType === 2) {
      const len = this.varint32() >>> 0; // read before adding: `pos += varint()` would add to the old pos
      this.pos += len;
    }
    else if (wireType === 5) this.pos += 4;
    else throw this.corrupt();
    if (this.pos > this.end) throw this.corrupt();
  }

  corrupt(): XtunerError {
    return new XtunerError(`${this.file}: not a SentencePiece model (bad protobuf at byte ${this.pos})`);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

function readPiece(r: Reader, end: number): { piece: string; type: number } {
  let piece = '';
  let type: number = PieceType.NORMAL;
  while (r.pos < end) {
    const key = r.varint32() >>> 0;
    const field = key >>> 3;
    const wire = key & 7;
    if (field === 1 && wire === 2) {
      const len = r.varint32() >>> 0;
      piece = utf8.decode(r.buf.subarray(r.pos, r.pos + len));
      r.pos += len;
    } else if (field === 3 && wire === 0) type = r.varint32();
    else r.skip(wire);
  }
  return { piece, type };
}

export function parseSentencePieceModel(buf: Uint8Array, file: string): SentencePieceModel {
  const r = new Reader(buf, buf.length, file);
  const pieces: string[] = [];
  const typeList: number[] = [];
  // sentencepiece's defaults when the trainer spec does not set them
  let unkId = 0;
  let bosId = 1;
  let eosId = 2;
  let padId = -1;
  while (r.pos < r.end) {
    const key = r.varint32() >>> 0;
    const field = key >>> 3;
    const wire = key & 7;
    if (field === 1 && wire === 2) {
      const len = r.varint32() >>> 0;
      const end = r.pos + len;
      if (end > r.end) throw r.corrupt();
      const p = readPiece(r, end);
      pieces.push(p.piece);
      typeList.push(p.type);
      r.pos = end;
    } else if (field === 2 && wire === 2) {
      const len = r.varint32() >>> 0;
      const end = r.pos + len;
      if (end > r.end) throw r.corrupt();
      while (r.pos < end) {
        const k = r.varint32() >>> 0;
        const f = k >>> 3;
        const w = k & 7;
        if (w === 0 && f === 40) unkId = r.varint32();
        else if (w === 0 && f === 41) bosId = r.varint32();
        else if (w === 0 && f === 42) eosId = r.varint32();
        else if (w === 0 && f === 43) padId = r.varint32();
        else r.skip(w);
      }
      r.pos = end;
    } else r.skip(wire);
  }
  if (pieces.length === 0) throw new XtunerError(`${file}: not a SentencePiece model (no pieces found)`);
  const inRange = (id: number): number | null => (id >= 0 && id < pieces.length ? id : null);
  return {
    pieces,
    types: Uint8Array.from(typeList),
    unkId: inRange(unkId),
    bosId: inRange(bosId),
    eosId: inRange(eosId),
    padId: inRange(padId),
  };
}
