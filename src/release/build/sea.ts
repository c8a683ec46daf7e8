import { execFile } from 'node:child_process';
import { chmod, copyFile, readFile, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { CodedError, errorMessage } from '../../shared/errors.js';
import { fsyncDirectory, fsyncFile } from '../../shared/atomic-file.js';
import { removeAuthenticodeSignature } from './pe-signature.js';

const execFileAsync = promisify(execFile);

/** Node's SEA fuse: present as `<fuse>:0` in a SEA-capable binary, flipped to `:1` by injection. */
export const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
/** The section (ELF), resource (PE) or Mach-O section Node looks for the blob in. */
export const SEA_RESOURCE_NAME = 'NODE_SEA_BLOB';
const MACHO_SEGMENT_NAME = 'NODE_SEA';
const EXECUTABLE_MODE = 0o755;

export interface MakeSingleExecutableOptions {
  /** The CommonJS bundle that becomes the executable's main script. */
  bundleFile: string;
  /** Final path; it appears only once complete, by rename from workDir. */
  outFile: string;
  /** Scratch directory on the same filesystem as outFile (for an atomic rename). */
  workDir: string;
  /** The Node binary to embed; defaults to the one running this build. */
  nodeBinary?: string;
  /**
   * The Node that writes the blob; defaults to nodeBinary. Only a cross build sets it (the
   * running node writing the blob for a Windows node.exe): the blob format is specific to the
   * Node version, so both must be the same version.
   */
  blobWriter?: string;
  /** The executable's operating system, as process.platform names it; defaults to this machine's. */
  targetOs?: NodeJS.Platform;
}

/**
 * Refuse binaries that cannot become a SEA: builds without the fuse (e.g. some distribution
 * packages, or a node linked against a shared libnode), and binaries that already carry a blob
 * (e.g. when this tool itself runs as a SEA).
 */
async function assertSeaCapable(nodeBinary: string): Promise<void> {
  const bytes = await readFile(nodeBinary);
  if (bytes.includes(`${SEA_FUSE}:0`)) return;
  const reason = bytes.includes(`${SEA_FUSE}:1`)
    ? 'already contains an injected SEA blob (is the build itself running as a single executable?)'
    : 'was built without single executable application support (no SEA fuse)';
  throw new CodedError(
    'sea_unsupported',
    `cannot build a single executable: node binary ${nodeBinary} ${reason}. ` +
      'Use an official Node.js >= 20 binary, or ship the bundle to run with a system node (docs/packaging.md).',
  );
}

async function run(code: string, command: string, args: string[], cwd: string): Promise<void> {
  try {
    await execFileAsync(command, args, { cwd, maxBuffer: 16 * 1024 * 1024 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new CodedError(code, `${command} ${args.join(' ')} failed: ${stderr || errorMessage(err)}`, { cause: err });
  }
}

/**
 * Write the SEA preparation blob with a node of the same version as the one that will run it.
 * The blob records the `main` path exactly as configured, so it is given relative to workDir (a
 * random temp directory): an absolute path would make every build's bytes different.
 *
 * No startup snapshot and no code cache (Node 20's defaults, stated here because the cross build
 * depends on them): both are specific to the platform that writes the blob, and Node's SEA
 * documentation allows injecting a blob into another platform's binary only without them.
 */
async function writeBlob(nodeBinary: string, bundleFile: string, workDir: string): Promise<string> {
  const configFile = join(workDir, 'sea-config.json');
  const blobFile = join(workDir, 'sea-prep.blob');
  const config = {
    main: relative(workDir, bundleFile),
    output: relative(workDir, blobFile),
    disableExperimentalSEAWarning: true,
    useSnapshot: false,
    useCodeCache: false,
  };
  await writeFile(configFile, JSON.stringify(config, null, 2));
  await run('sea_blob_failed', nodeBinary, ['--experimental-sea-config', configFile], workDir);
  return blobFile;
}

/**
 * postject runs in a worker thread, through its JS API, because it is an Emscripten module that
 * (a) installs process-wide 'uncaughtException' and 'unhandledRejection' handlers that rethrow,
 * (b) holds the whole executable several times in a WebAssembly heap (about 700 MB peak for a
 * 99 MB node) and (c) prints LIEF warnings straight to the console. In a worker all three end
 * with the thread. The worker is plain CommonJS passed as a string so it runs the same under
 * tsx and from compiled output.
 */
const INJECT_WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const { readFileSync } = require('node:fs');
const diagnostics = [];
const collect = (...parts) => { diagnostics.push(parts.join(' ')); };
console.log = collect;
console.warn = collect;
console.error = collect;
const { inject } = require(workerData.postjectPath);
inject(workerData.file, workerData.resourceName, readFileSync(workerData.blobFile), workerData.options).then(
  () => parentPort.postMessage({ ok: true, diagnostics }),
  (err) => parentPort.postMessage({ ok: false, message: String((err && err.message) || err), diagnostics }),
);
`;

interface InjectReply {
  ok: boolean;
  message?: string;
  diagnostics: string[];
}

async function injectBlob(file: string, blobFile: string, targetOs: NodeJS.Platform): Promise<void> {
  const postjectPath = createRequire(import.meta.url).resolve('postject');
  const options = {
    sentinelFuse: SEA_FUSE,
    ...(targetOs === 'darwin' ? { machoSegmentName: MACHO_SEGMENT_NAME } : {}),
  };
  const reply = await new Promise<InjectReply>((resolve, reject) => {
    const worker = new Worker(INJECT_WORKER_SOURCE, {
      eval: true,
      workerData: { postjectPath, file, blobFile, resourceName: SEA_RESOURCE_NAME, options },
    });
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (exitCode) => reject(new Error(`postject worker exited with code ${exitCode} without a reply`)));
  }).catch((err: unknown) => {
    throw new CodedError('sea_inject_failed', `postject failed on ${file}: ${errorMessage(err)}`, { cause: err });
  });
  if (!reply.ok) {
    const diagnostics = reply.diagnostics.length > 0 ? `\n${reply.diagnostics.join('\n')}` : '';
    throw new CodedError('sea_inject_failed', `postject failed on ${file}: ${reply.message}${diagnostics}`);
  }
}

/**
 * Turn a CommonJS bundle into a Node single executable application (Node 20 SEA):
 * blob from sea-config.json, copy of the node binary, blob injected with postject, then the
 * finished file is made executable, fsynced and renamed onto outFile. Every intermediate file
 * lives in workDir, so outFile is either absent or complete.
 *
 * macOS (untested here, as this runs on Linux): the copied binary's signature is removed
 * before injection and replaced with an ad-hoc one (`codesign --sign -`) after, as Node's SEA
 * documentation prescribes; without it the kernel kills the modified binary. Windows: the
 * copy's Authenticode signature is removed before injection (which would invalidate it), so the
 * result is a well-formed unsigned executable; sign it with signtool on Windows if the fleet
 * enforces signing.
 */
export async function makeSingleExecutable(options: MakeSingleExecutableOptions): Promise<void> {
  const nodeBinary = options.nodeBinary ?? process.execPath;
  const targetOs = options.targetOs ?? process.platform;
  await assertSeaCapable(nodeBinary);
  const blobFile = await writeBlob(options.blobWriter ?? nodeBinary, options.bundleFile, options.workDir);

  const draft = join(options.workDir, basename(options.outFile));
  await copyFile(nodeBinary, draft);
  // A node installed read-only (0555) would otherwise refuse postject's write.
  await chmod(draft, EXECUTABLE_MODE);
  if (targetOs === 'darwin') {
    await run('sea_sign_failed', 'codesign', ['--remove-signature', draft], options.workDir);
  }
  if (targetOs === 'win32') await removeAuthenticodeSignature(draft);
  await injectBlob(draft, blobFile, targetOs);
  if (targetOs === 'darwin') {
    await run('sea_sign_failed', 'codesign', ['--sign', '-', draft], options.workDir);
  }

  await chmod(draft, EXECUTABLE_MODE);
  await fsyncFile(draft);
  await rename(draft, options.outFile);
  await fsyncDirectory(dirname(options.outFile));
}
