// ExportModel's stream (header, then data chunks) gathered into one file, checked by SHA-256.
import type { FileChunk } from "../gen/fedmetamal/v1/control_pb";
import { num } from "../api/convert";

export interface ExportedFile {
  filename: string;
  mediaType: string;
  bytes: Uint8Array;
}

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function collectFile(stream: AsyncIterable<FileChunk>): Promise<ExportedFile> {
  let filename = "model";
  let mediaType = "application/octet-stream";
  let expected = -1;
  let digest: Uint8Array | null = null;
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of stream) {
    if (chunk.part.case === "header") {
      filename = chunk.part.value.filename || filename;
      mediaType = chunk.part.value.mediaType || mediaType;
      expected = num(chunk.part.value.totalBytes);
      digest = chunk.part.value.sha256;
    } else if (chunk.part.case === "data") {
      parts.push(chunk.part.value);
      total += chunk.part.value.length;
    }
  }
  if (expected >= 0 && total !== expected) {
    throw new Error(`The download was cut short: ${total} of ${expected} bytes arrived.`);
  }
  const bytes = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    bytes.set(p, off);
    off += p.length;
  }
  if (digest && digest.length === 32 && globalThis.crypto?.subtle) {
    const got = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    if (hex(got) !== hex(digest)) throw new Error("The downloaded model does not match its SHA-256.");
  }
  return { filename, mediaType, bytes };
}
