#!/usr/bin/env node
import { systemClock } from '../shared/clock.js';
import { runCli } from './cli.js';

// The release tool's only wiring point: real stdout/stderr, the process environment, the system clock.
const exitCode = await runCli(process.argv.slice(2), {
  io: { out: (line) => process.stdout.write(`${line}\n`), err: (line) => process.stderr.write(`${line}\n`) },
  env: process.env,
  clock: systemClock,
});
process.exitCode = exitCode;
