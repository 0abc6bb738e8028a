/**
 * A minimal in-memory tar reader (POSIX ustar, plus GNU long names), enough to unpack the
 * CIFAR binary archives.
 */
import { damagedFile } from "./errors.ts";

/** One member of a tar archive. */
export interface TarEntry {
  /** Path inside the archive (ustar prefix joined, GNU long names resolved). */
  name: string;
  /** Type flag: "0" (or "") regular file, "5" directory, etc. */
  type: string;
  /** Size of the member's data in bytes, from its header. */
  size: number;
  /** The member's bytes (a view into the archive; empty for non-files). */
  data: Uint8Array;
}

const decoder = new TextDecoder();

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return decoder.decode(end < 0 ? bytes : bytes.subarray(0, end));
}

function octal(bytes: Uint8Array, file: string, field: string): number {
  if (bytes[0] & 0x80) {
    // GNU base-256 encoding for large values.
    let v = 0;
    for (let i = 1; i < bytes.length; i++) v = v * 256 + bytes[i];
    return v;
  }
  const s = cString(bytes).trim();
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s)) {
    throw damagedFile(file, `corrupt tar header: ${field} field "${s}" is not an octal number`);
  }
  return parseInt(s, 8);
}

/**
 * Iterates over the members of an uncompressed tar archive. Throws a {@linkcode DataError}
 * naming `file` on a bad header checksum or a truncated member, with a hint to replace it.
 */
export function* readTar(bytes: Uint8Array, file = "tar archive"): Generator<TarEntry> {
  let at = 0;
  let longName: string | null = null;
  while (at + 512 <= bytes.length) {
    const h = bytes.subarray(at, at + 512);
    if (h.every((b) => b === 0)) return; // end-of-archive marker
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
    const stored = octal(h.subarray(148, 156), file, "checksum");
    if (stored !== sum) {
      throw damagedFile(
        file,
        `corrupt tar header at offset ${at}: stored checksum ${stored}, computed ${sum}`,
      );
    }
    const size = octal(h.subarray(124, 136), file, "size");
    const type = String.fromCharCode(h[156] || 0x30);
    const magic = decoder.decode(h.subarray(257, 262));
    let name = cString(h.subarray(0, 100));
    if (magic === "ustar") {
      const prefix = cString(h.subarray(345, 500));
      if (prefix && h[263] === 0x30) name = `${prefix}/${name}`; // POSIX ustar "00" version
    }
    const start = at + 512;
    if (start + size > bytes.length) {
      throw damagedFile(
        file,
        `truncated tar archive: member "${name}" needs ${size} bytes, ${bytes.length - start} left`,
      );
    }
    const data = bytes.subarray(start, start + size);
    at = start + Math.ceil(size / 512) * 512;
    if (type === "L") {
      longName = cString(data);
      continue;
    }
    if (type === "x" || type === "g") continue; // pax headers: ignored
    if (longName !== null) {
      name = longName;
      longName = null;
    }
    yield { name, type, size, data };
  }
}

/**
 * Writes a minimal ustar archive of regular files (names up to 100 bytes), e.g. to build
 * test fixtures.
 */
export function writeTar(files: { name: string; data: Uint8Array }[]): Uint8Array {
  const enc = new TextEncoder();
  const field = (h: Uint8Array, at: number, len: number, value: number) =>
    h.set(enc.encode(value.toString(8).padStart(len - 1, "0") + "\0"), at);
  const size = files.reduce((s, f) => s + 512 + Math.ceil(f.data.length / 512) * 512, 1024);
  const out = new Uint8Array(size);
  let at = 0;
  for (const f of files) {
    const name = enc.encode(f.name);
    if (name.length > 100) throw new RangeError(`tar name too long: ${f.name}`);
    const h = out.subarray(at, at + 512);
    h.set(name, 0);
    field(h, 100, 8, 0o644);
    field(h, 108, 8, 0);
    field(h, 116, 8, 0);
    field(h, 124, 12, f.data.length);
    field(h, 136, 12, 0);
    h[156] = 0x30;
    h.set(enc.encode("ustar\u000000"), 257);
    h.fill(32, 148, 156);
    const sum = h.reduce((a, b) => a + b, 0);
    h.set(enc.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
    out.set(f.data, at + 512);
    at += 512 + Math.ceil(f.data.length / 512) * 512;
  }
  return out;
}
