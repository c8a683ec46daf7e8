import { open } from 'node:fs/promises';

/**
 * The first `maxBytes` bytes of a file (all of it when shorter). A caller that refuses files
 * above a size asks for one byte more than it accepts: memory stays bounded whatever the file.
 */
export async function readFileHead(path: string, maxBytes: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(maxBytes);
    let filled = 0;
    while (filled < maxBytes) {
      const { bytesRead } = await handle.read(buffer, filled, maxBytes - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buffer.subarray(0, filled);
  } finally {
    await handle.close();
  }
}
