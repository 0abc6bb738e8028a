/** Deterministic synthetic test images: smooth gradients, a ripple and some texture. */

/** Interleaved RGB (`width * height * 3` bytes) with structure at several scales. */
export function testImage(width: number, height: number, seed: number): Uint8Array {
  const out = new Uint8Array(width * height * 3);
  let s = seed * 2654435761 >>> 0;
  const noise = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s >>> 24) / 255 - 0.5;
  };
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      const u = x / width, v = y / height;
      out[i] = clamp(255 * u + 20 * Math.sin((x + seed) / 3) + 16 * noise());
      out[i + 1] = clamp(255 * v + 30 * Math.cos((x * y) / (17 + seed)) + 16 * noise());
      out[i + 2] = clamp(128 + 100 * Math.sin((x - y + seed) / 5) + 16 * noise());
    }
  }
  return out;
}

function clamp(v: number): number {
  return Math.max(0, Math.min(255, Math.round(v)));
}
