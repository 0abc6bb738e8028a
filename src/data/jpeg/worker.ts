/**
 * The decode worker: reads a JPEG file, decodes it to RGB and sends the pixels back
 * (transferred, not copied). Messages in: `{ id, path }`; out: `{ id, width, height, data }` or
 * `{ id, error, kind }` with kind "missing", "read" or "decode".
 */
import { decodeJpeg } from "./decode.ts";

interface WorkerScope {
  onmessage: ((e: MessageEvent<{ id: number; path: string }>) => void) | null;
  postMessage(message: unknown, transfer?: Transferable[]): void;
}

const scope = globalThis as unknown as WorkerScope;

scope.onmessage = async (e) => {
  const { id, path } = e.data;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    const kind = err instanceof Deno.errors.NotFound ? "missing" : "read";
    scope.postMessage({ id, error: String(err), kind });
    return;
  }
  try {
    const img = decodeJpeg(bytes);
    scope.postMessage({ id, width: img.width, height: img.height, data: img.data }, [
      img.data.buffer as ArrayBuffer,
    ]);
  } catch (err) {
    scope.postMessage({
      id,
      error: err instanceof Error ? err.message : String(err),
      kind: "decode",
    });
  }
};
