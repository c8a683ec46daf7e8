import { open } from 'node:fs/promises';
import { CodedError } from '../../shared/errors.js';

const HEADER_BYTES = 4096;
const PE32_MAGIC = 0x10b;
const PE32_PLUS_MAGIC = 0x20b;
/** IMAGE_DIRECTORY_ENTRY_SECURITY: the certificate table, whose address is a file offset. */
const SECURITY_DIRECTORY_INDEX = 4;
/** WIN_CERTIFICATE entries are 8-byte aligned, so the table may end in up to 7 padding bytes. */
const CERTIFICATE_ALIGNMENT = 8;

function notPe(file: string, why: string): CodedError {
  return new CodedError('sea_sign_failed', `cannot remove the Authenticode signature of ${file}: ${why}`);
}

/** File offset of the security data directory entry (8 bytes: offset, size) in a PE header. */
function securityEntryOffset(header: Buffer, file: string): number {
  if (header.length < 0x40 || header.toString('latin1', 0, 2) !== 'MZ') throw notPe(file, 'no MZ header');
  const pe = header.readUInt32LE(0x3c);
  if (pe + 24 + 2 > header.length || header.toString('latin1', pe, pe + 4) !== 'PE\0\0') throw notPe(file, 'no PE header');
  const optional = pe + 24;
  const magic = header.readUInt16LE(optional);
  if (magic !== PE32_MAGIC && magic !== PE32_PLUS_MAGIC) throw notPe(file, `unknown optional header magic 0x${magic.toString(16)}`);
  const countOffset = optional + (magic === PE32_PLUS_MAGIC ? 108 : 92);
  const directories = optional + (magic === PE32_PLUS_MAGIC ? 112 : 96);
  if (header.readUInt32LE(countOffset) <= SECURITY_DIRECTORY_INDEX) return -1;
  const entry = directories + SECURITY_DIRECTORY_INDEX * 8;
  if (entry + 8 > header.length) throw notPe(file, 'header larger than expected');
  return entry;
}

/**
 * Remove a PE file's Authenticode signature in place, as `signtool remove /s` does: empty the
 * certificate table's directory entry and cut the table off the end of the file, where
 * Authenticode puts it. Node's SEA documentation lists this step (as optional) before injecting
 * on Windows; without it postject (LIEF) moves the resource section onto the certificate's bytes
 * and keeps the directory entry pointing there, a malformed signature rather than none. The result is
 * unsigned; signing it is the operator's step, on Windows (docs/packaging.md).
 * Returns whether there was a signature.
 */
export async function removeAuthenticodeSignature(file: string): Promise<boolean> {
  const handle = await open(file, 'r+');
  try {
    const { size: fileSize } = await handle.stat();
    const header = Buffer.alloc(Math.min(HEADER_BYTES, fileSize));
    await handle.read(header, 0, header.length, 0);
    const entry = securityEntryOffset(header, file);
    if (entry === -1) return false;
    const tableOffset = header.readUInt32LE(entry);
    const tableSize = header.readUInt32LE(entry + 4);
    if (tableOffset === 0 && tableSize === 0) return false;
    if (tableOffset + tableSize > fileSize) throw notPe(file, 'the certificate table lies beyond the end of the file');

    await handle.write(Buffer.alloc(8), 0, 8, entry);
    if (tableOffset + tableSize + CERTIFICATE_ALIGNMENT > fileSize) await handle.truncate(tableOffset);
    return true;
  } finally {
    await handle.close();
  }
}
