#!/usr/bin/env node
// `npm run test:chaos -- --trials N [--parallel P]`: the crash-consistency test with more trials.
// CHAOS_SEED=S replays a run whose seed was printed.
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { trials: { type: 'string', default: '100' }, parallel: { type: 'string', default: '2' } },
});
for (const [name, value] of Object.entries(values)) {
  if (!/^[1-9]\d*$/.test(value)) {
    console.error(`--${name} takes a positive whole number, got ${JSON.stringify(value)}`);
    process.exit(2);
  }
}
const child = spawn(process.execPath, ['scripts/run-tests.mjs', 'test/integration/crash-consistency'], {
  stdio: 'inherit',
  env: { ...process.env, CHAOS_TRIALS: values.trials, CHAOS_PARALLEL: values.parallel },
});
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
