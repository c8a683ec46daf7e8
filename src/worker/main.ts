import { runCli } from './cli.js';

// No top-level await: the release build bundles this file to CommonJS.
runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() }).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bytebiota-worker: ${String(err)}\n`);
    process.exit(1);
  },
);
