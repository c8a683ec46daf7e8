import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { createLogger, REDACTED_PATHS, redactSecrets } from '../../src/shared/logger.js';

/** The lines a logger wrote, parsed, without the fields that differ between two loggers. */
function capture(make: (sink: { write: (line: string) => void }) => pino.Logger, objects: Array<Record<string, unknown>>) {
  const lines: string[] = [];
  const logger = make({ write: (line) => lines.push(line) });
  for (const object of objects) logger.info(object, 'm');
  return lines.map((line) => {
    const { time: _time, pid: _pid, hostname: _hostname, level: _level, name: _name, ...rest } = JSON.parse(line) as Record<string, unknown>;
    return rest;
  });
}

describe('logger', () => {
  const cases: Array<Record<string, unknown>> = [
    { authorization: 'Bearer bbt_x', event: 'e' },
    { token: 't', password: 'p', secret: 's', private_key: 'k', keep: 1 },
    { req: { headers: { authorization: 'a', cookie: 'c', host: 'h' } } },
    { request: { headers: { authorization: 'a', accept: '*/*' } } },
    { headers: { authorization: 'a', accept: '*/*' } },
    { config: { token: 't', password: 'p', private_key: 'k', secret: 'not in the list', url: 'u' } },
    { deep: { deeper: { token: 'two levels down is not a listed path' } } },
    { list: [{ token: 'inside an array' }], token_id: 'abc' },
    { event: 'http_request', method: 'GET', status: 200, token: undefined },
    { body: { enrollment_token: 'bbe_x', worker_id: 'w' }, credential: 'bbw_x', credential_id: 'abc' },
  ];

  test('redactSecrets censors exactly what pino redact with REDACTED_PATHS censors', () => {
    const ours = capture((sink) => createLogger({ name: 't', destination: sink }), cases);
    const reference = capture(
      (sink) => pino({ name: 't', redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }, sink),
      cases,
    );
    assert.deepEqual(ours, reference);
    assert.equal(JSON.stringify(ours).includes('Bearer bbt_x'), false);
  });

  test('redactSecrets never modifies the object it is given, and copies only when it must', () => {
    const given = { req: { headers: { authorization: 'a' } }, token: 't' };
    const redacted = redactSecrets(given);
    assert.deepEqual(given, { req: { headers: { authorization: 'a' } }, token: 't' });
    assert.deepEqual(redacted, { req: { headers: { authorization: '[redacted]' } }, token: '[redacted]' });
    const clean = { event: 'x', nested: { a: 1 } };
    assert.equal(redactSecrets(clean), clean);
  });

  test('a buffered logger loses no line when the process flushes and exits', async () => {
    const lineCount = 5000;
    const script = `
      import { createLogger, flushLogger } from './src/shared/logger.ts';
      const logger = createLogger({ name: 't', buffered: { flushIntervalMs: 60000 } });
      for (let i = 0; i < ${lineCount}; i += 1) logger.info({ event: 'line', i, token: 'secret-value' }, 'm');
      await flushLogger(logger);
      process.exit(0);
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0);
    const lines = out.trim().split('\n').map((line) => JSON.parse(line) as { i: number; token: string });
    assert.deepEqual(lines.map((line) => line.i), Array.from({ length: lineCount }, (_, i) => i));
    assert.equal(out.includes('secret-value'), false);
  });

  test('a buffered logger writes a quiet process\'s line within its flush interval', async () => {
    const script = `
      import { createLogger } from './src/shared/logger.ts';
      const logger = createLogger({ name: 't', buffered: { flushIntervalMs: 20 } });
      logger.info({ event: 'only_line' }, 'm');
      setTimeout(() => {}, 5000);
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const [chunk] = (await once(child.stdout, 'data')) as [Buffer];
      assert.match(chunk.toString(), /"event":"only_line"/);
    } finally {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });
});
