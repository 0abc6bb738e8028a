/**
 * Entropy decoding primitives of the JPEG decoder: the bit reader over entropy-coded segments
 * (byte stuffing, markers) and canonical Huffman tables with a 9-bit lookup.
 */

/** A JPEG decoding failure: corrupt, truncated or unsupported data. */
export class JpegError extends Error {
  /** Always "JpegError". */
  override name = "JpegError";
}

const LOOKUP_BITS = 9;

/** A canonical Huffman table (ITU T.81 Annex C) with a `LOOKUP_BITS` fast path. */
export class HuffmanTable {
  /** `(length << 8) | symbol` for codes of up to 9 bits, indexed by the next 9 bits; 0 if longer. */
  readonly lookup = new Uint16Array(1 << LOOKUP_BITS);
  /** Largest code of each length 1..16 (-1 when none), for the slow path. */
  readonly maxCode = new Int32Array(18);
  /** Offset from a code of each length to its symbol index. */
  readonly valOffset = new Int32Array(17);
  /** Symbols in code order. */
  readonly symbols: Uint8Array;

  /** Builds the table from the 16 code-length counts and the symbols of a DHT segment. */
  constructor(counts: Uint8Array, symbols: Uint8Array) {
    this.symbols = symbols;
    let code = 0, k = 0;
    for (let len = 1; len <= 16; len++) {
      const n = counts[len - 1];
      this.valOffset[len] = k - code;
      if (n > 0) {
        for (let i = 0; i < n; i++, k++, code++) {
          if (len <= LOOKUP_BITS) {
            const shift = LOOKUP_BITS - len;
            const entry = (len << 8) | symbols[k];
            for (let j = 0; j < 1 << shift; j++) this.lookup[(code << shift) | j] = entry;
          }
        }
        this.maxCode[len] = code - 1;
      } else this.maxCode[len] = -1;
      if (code > 1 << len) throw new JpegError("invalid Huffman table (too many codes)");
      code <<= 1;
    }
    this.maxCode[17] = 0x7fffffff; // sentinel: a code longer than 16 bits is corrupt data
  }
}

/** Reads bits MSB-first from an entropy-coded segment, undoing 0xFF00 stuffing. */
export class BitReader {
  /** The JPEG bytes. */
  readonly data: Uint8Array;
  /** Next byte to read. */
  pos: number;
  #acc = 0;
  #count = 0;
  /** Zero bits fed past the end of the segment (a marker or the end of data). */
  #padding = 0;
  /** Of those, bits fed past the end of the file. */
  #eofPadding = 0;

  /** A reader starting at byte `pos`. */
  constructor(data: Uint8Array, pos: number) {
    this.data = data;
    this.pos = pos;
  }

  /** Ensures at least 25 bits are buffered; past a marker, zeros are fed (as libjpeg does). */
  #fill(): void {
    const d = this.data;
    while (this.#count <= 24) {
      let byte = 0;
      const p = this.pos;
      if (p < d.length) {
        byte = d[p];
        if (byte === 0xff) {
          const next = p + 1 < d.length ? d[p + 1] : 0xd9;
          if (next === 0) this.pos = p + 2;
          else {
            byte = 0; // a marker: stay before it
            this.#padding += 8;
          }
        } else this.pos = p + 1;
      } else {
        this.#padding += 8;
        this.#eofPadding += 8;
      }
      if (this.#padding > 4096) throw new JpegError("unexpected end of entropy-coded data");
      this.#acc = (this.#acc << 8) | byte;
      this.#count += 8;
    }
  }

  /** The next `n` (0..16) bits as an unsigned integer. */
  bits(n: number): number {
    if (n === 0) return 0;
    if (this.#count < n) this.#fill();
    this.#count -= n;
    return (this.#acc >>> this.#count) & ((1 << n) - 1);
  }

  /** The next bit. */
  bit(): number {
    if (this.#count < 1) this.#fill();
    this.#count--;
    return (this.#acc >>> this.#count) & 1;
  }

  /** `n` bits as a signed value of magnitude category `n` (T.81 F.2.2.1 EXTEND). */
  receiveExtend(n: number): number {
    if (n === 0) return 0;
    const v = this.bits(n);
    return v < 1 << (n - 1) ? v - (1 << n) + 1 : v;
  }

  /** Decodes one Huffman symbol. */
  decode(table: HuffmanTable): number {
    if (this.#count < 16) this.#fill();
    const peek = (this.#acc >>> (this.#count - LOOKUP_BITS)) & ((1 << LOOKUP_BITS) - 1);
    const entry = table.lookup[peek];
    if (entry !== 0) {
      this.#count -= entry >> 8;
      return entry & 0xff;
    }
    let len = LOOKUP_BITS + 1;
    let code = (this.#acc >>> (this.#count - len)) & ((1 << len) - 1);
    while (code > table.maxCode[len]) {
      if (len === 16) throw new JpegError("invalid Huffman code in entropy-coded data");
      len++;
      code = (this.#acc >>> (this.#count - len)) & ((1 << len) - 1);
    }
    this.#count -= len;
    return table.symbols[code + table.valOffset[len]];
  }

  /** Whether bits past the end of the file were consumed: the file is truncated. */
  get truncated(): boolean {
    return this.#count < this.#eofPadding;
  }

  /** Drops buffered bits (at a restart marker or the end of a scan). */
  reset(): void {
    this.#acc = 0;
    this.#count = 0;
    this.#padding = 0;
    this.#eofPadding = 0;
  }
}
