import { test } from 'node:test';
import assert from 'node:assert/strict';
import { autoUpdateAllowed, decideStart, EXIT_CODES, nextCheckDelayMs, type StartDecision } from '../../../src/worker/runtime/policy.js';

const CURRENT = '1.2.0';

/**
 * The whole table: auto_update_enabled x pool policy x --force-update x minimum version
 * (below, equal, unknown) x --force-start x trust configured.
 */
function expected(row: {
  enabled: boolean;
  pool: boolean;
  force: boolean;
  minimum: string | null;
  forceStart: boolean;
  configured: boolean;
}): StartDecision {
  const below = row.minimum === '2.0.0';
  const updateFirst = row.configured && (row.force || (below && row.enabled && row.pool));
  return { updateFirst, otherwise: below ? (row.forceStart ? 'start_forced' : 'refuse') : 'start' };
}

test('decideStart: every combination', () => {
  let rows = 0;
  for (const enabled of [true, false])
    for (const pool of [true, false])
      for (const force of [true, false])
        for (const minimum of ['2.0.0', '1.2.0', '1.0.0', null])
          for (const forceStart of [true, false])
            for (const configured of [true, false]) {
              const decision = decideStart({
                currentVersion: CURRENT,
                minimumVersion: minimum,
                autoUpdateEnabled: enabled,
                poolAutoUpdate: pool,
                forceUpdate: force,
                forceStart,
                updatesConfigured: configured,
              });
              assert.deepEqual(decision, expected({ enabled, pool, force, minimum, forceStart, configured }), JSON.stringify({ enabled, pool, force, minimum, forceStart, configured }));
              rows += 1;
            }
  assert.equal(rows, 128);
});

test('decideStart: the named cases, with the exit code and log event each leads to', () => {
  const base = { currentVersion: CURRENT, autoUpdateEnabled: true, poolAutoUpdate: true, forceUpdate: false, forceStart: false, updatesConfigured: true };
  // Below the minimum, both switches on: update first; if that stages nothing, refuse (exit 3, worker_start_refused).
  assert.deepEqual(decideStart({ ...base, minimumVersion: '2.0.0' }), { updateFirst: true, otherwise: 'refuse' });
  // Pool policy off: no update; refuse.
  assert.deepEqual(decideStart({ ...base, poolAutoUpdate: false, minimumVersion: '2.0.0' }), { updateFirst: false, otherwise: 'refuse' });
  // --force-start: worker_start_forced, exit code 0 path.
  assert.deepEqual(decideStart({ ...base, poolAutoUpdate: false, forceStart: true, minimumVersion: '2.0.0' }), { updateFirst: false, otherwise: 'start_forced' });
  // --force-update whatever the policy, but never without trust.
  assert.deepEqual(decideStart({ ...base, autoUpdateEnabled: false, poolAutoUpdate: false, forceUpdate: true, minimumVersion: null }), { updateFirst: true, otherwise: 'start' });
  assert.deepEqual(decideStart({ ...base, forceUpdate: true, updatesConfigured: false, minimumVersion: null }), { updateFirst: false, otherwise: 'start' });
  assert.equal(EXIT_CODES.refusedToStart, 3);
  assert.equal(EXIT_CODES.restartIntoStaged, 75);
});

test('autoUpdateAllowed needs both switches and trust', () => {
  for (const autoUpdateEnabled of [true, false])
    for (const poolAutoUpdate of [true, false])
      for (const updatesConfigured of [true, false])
        assert.equal(autoUpdateAllowed({ autoUpdateEnabled, poolAutoUpdate, updatesConfigured }), autoUpdateEnabled && poolAutoUpdate && updatesConfigured);
});

test('nextCheckDelayMs stays within ±20% of the interval', () => {
  assert.equal(nextCheckDelayMs(3600, () => 0), 2_880_000);
  assert.equal(nextCheckDelayMs(3600, () => 0.5), 3_600_000);
  assert.ok(nextCheckDelayMs(3600, () => 0.999999) <= 4_320_000);
});
