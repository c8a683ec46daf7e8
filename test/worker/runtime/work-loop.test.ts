import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../../src/shared/logger.js';
import { UnitsLog, WorkLoop } from '../../../src/worker/runtime/work-loop.js';
import { hashChainWorkload } from '../../../src/worker/runtime/workload.js';

const dirs: string[] = [];
after(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));
const log = createLogger({ name: 't', destination: new Writable({ write: (_c, _e, done) => done() }) });

async function logPath(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bytebiota-units-'));
  dirs.push(dir);
  return join(dir, 'work', 'units.log');
}

async function records(path: string) {
  return (await readFile(path, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as { unit: number; result: string; version: string });
}

test('the hash-chain workload is deterministic per unit', async () => {
  const workload = hashChainWorkload({ iterationsPerUnit: 1000, iterationsPerSlice: 100 });
  assert.equal(await workload.runUnit(5), await workload.runUnit(5));
  assert.notEqual(await workload.runUnit(5), await workload.runUnit(6));
});

test('stop requested mid-unit: the unit finishes and is recorded; the next run continues the numbering', async () => {
  const path = await logPath();
  const workload = hashChainWorkload({ iterationsPerUnit: 2000, iterationsPerSlice: 100 });
  const unitsLog = await UnitsLog.open(path);
  let stopAfter = 3;
  const loop: WorkLoop = new WorkLoop({
    workload: { name: 'counting', runUnit: async (unit) => { if (unit === stopAfter) loop.requestStop(); return workload.runUnit(unit); } },
    unitsLog,
    version: '1.0.0',
    log,
    betweenUnits: async () => 'continue',
  });
  assert.equal(await loop.run(), 'stopped');
  await unitsLog.close();
  assert.deepEqual((await records(path)).map((r) => r.unit), [1, 2, 3]);

  const reopened = await UnitsLog.open(path);
  assert.equal(reopened.nextUnit, 4);
  stopAfter = 5;
  const second: WorkLoop = new WorkLoop({ workload: { name: 'n', runUnit: async (unit) => { if (unit === stopAfter) second.requestStop(); return String(unit); } }, unitsLog: reopened, version: '2.0.0', log, betweenUnits: async () => 'continue' });
  await second.run();
  await reopened.close();
  assert.deepEqual((await records(path)).map((r) => [r.unit, r.version]), [[1, '1.0.0'], [2, '1.0.0'], [3, '1.0.0'], [4, '2.0.0'], [5, '2.0.0']]);
});

test('a restart asked between units returns restart after the unit is recorded', async () => {
  const path = await logPath();
  const unitsLog = await UnitsLog.open(path);
  let between = 0;
  const loop = new WorkLoop({
    workload: { name: 'n', runUnit: async (unit) => `r${unit}` },
    unitsLog,
    version: '1.0.0',
    log,
    betweenUnits: async () => (++between === 2 ? 'restart' : 'continue'),
  });
  assert.equal(await loop.run(), 'restart');
  await unitsLog.close();
  assert.deepEqual((await records(path)).map((r) => r.unit), [1, 2]);
});

test('a line torn by power loss is cut off and that unit is redone', async () => {
  const path = await logPath();
  const first = await UnitsLog.open(path);
  await first.append({ unit: 1, result: 'a', version: '1.0.0' });
  await first.close();
  await appendFile(path, '{"unit":2,"res');
  const reopened = await UnitsLog.open(path);
  assert.equal(reopened.nextUnit, 2);
  await reopened.append({ unit: 2, result: 'b', version: '1.0.0' });
  await reopened.close();
  assert.deepEqual((await records(path)).map((r) => r.unit), [1, 2]);
});
