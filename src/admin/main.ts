#!/usr/bin/env node
import { Agent } from 'undici';
import { runCli } from './cli.js';

/** Connect, first response byte and idle body: an admin call that takes longer than this has failed. */
const REQUEST_TIMEOUT_MS = 30_000;

// The admin tool's only wiring point: real stdout/stderr, the process environment, one HTTP agent
// (closed at the end so keep-alive sockets do not hold the process open).
const dispatcher = new Agent({ connect: { timeout: REQUEST_TIMEOUT_MS }, headersTimeout: REQUEST_TIMEOUT_MS, bodyTimeout: REQUEST_TIMEOUT_MS });
try {
  process.exitCode = await runCli(process.argv.slice(2), {
    io: { out: (line) => process.stdout.write(`${line}\n`), err: (line) => process.stderr.write(`${line}\n`) },
    env: process.env,
    dispatcher,
  });
} finally {
  await dispatcher.close();
}
