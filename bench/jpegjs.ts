/**
 * jpeg-js 0.4.4 (pure JavaScript) for `bench/decode_bench.ts --jpeg-js` only: a comparison
 * point for the engine's decoder. Nothing else imports it.
 */
// Kept out of deno.json's import map on purpose: only this benchmark module uses it.
// deno-lint-ignore no-import-prefix
import jpeg from "npm:jpeg-js@0.4.4";

/** Decodes to RGBA with jpeg-js (its fastest path: no colour transform options). */
export function decodeWithJpegJs(bytes: Uint8Array): { width: number; height: number } {
  const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true });
  return { width: img.width, height: img.height };
}
