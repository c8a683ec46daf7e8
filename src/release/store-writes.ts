import { isErrnoCode, errorMessage } from '../shared/errors.js';
import { StoreError, type ReleaseStore } from '../store/release-store.js';
import { ReleaseError } from './release-error.js';

const NOT_WRITABLE_ERRNO = ['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EISDIR', 'EEXIST'];

/**
 * Run a store write and name the failure for the operator: a folder that cannot be written
 * (permissions, read-only mount, a file where a folder should be) or an S3 refusal is
 * `store_not_writable`; other store errors keep their own code.
 */
export async function storeWrite(store: ReleaseStore, key: string, write: () => Promise<void>): Promise<void> {
  try {
    await write();
  } catch (err) {
    if (err instanceof StoreError) {
      if (err.code === 'store_not_writable') {
        throw new ReleaseError('store_not_writable', `cannot write ${key} to ${store.location}: ${err.message}`, { cause: err });
      }
      throw err;
    }
    if (NOT_WRITABLE_ERRNO.some((code) => isErrnoCode(err, code))) {
      throw new ReleaseError('store_not_writable', `cannot write ${key} to ${store.location}: ${errorMessage(err)}`, { cause: err });
    }
    throw err;
  }
}
