import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { storeKeys } from '../../src/protocol/manifest.js';
import type { ReasonCode } from '../../src/protocol/reason-codes.js';
import { SqliteFleetStore } from '../../src/server/fleet/sqlite-fleet-store.js';
import { ManifestCache, type ServedSerials } from '../../src/server/manifest-cache.js';
import { fixedClock } from '../../src/shared/clock.js';
import { createLogger } from '../../src/shared/logger.js';
import { FolderStore } from '../../src/store/folder-store.js';
import { StoreError, type ReleaseStore } from '../../src/store/release-store.js';
import { bearer, startTestServer, type TestServer } from '../helpers/server-app.js';
import { publishRelease, releaseFor, SERVER_FIXTURE_NOW, writeManifestBytes } from '../helpers/server-fixtures.js';
import { makeKey, signedManifestBytes, type TestKey } from '../helpers/trust-fixtures.js';

const URL_STABLE = '/api/worker-updates/latest?channel=stable';

describe('manifest cache through the latest route', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ cacheTtlSeconds: 60 });
  });
  after(async () => server.close());

  const fetchLatest = () => server.app.inject({ url: URL_STABLE, headers: bearer(server.tokens.canary) });
  const advance = (seconds: number) => server.clock.set(new Date(server.clock.now().getTime() + seconds * 1000));
  const rejections = () => server.logs().filter((line) => line['event'] === 'manifest_rejected');

  test('serves from cache within the TTL, then picks up a new release after it', async () => {
    const first = await publishRelease(server.storeDir, releaseFor({ serial: 1, version: '1.4.0' }), [server.key]);
    assert.deepEqual((await fetchLatest()).rawPayload, first);
    const second = await publishRelease(server.storeDir, releaseFor({ serial: 2, version: '1.5.0' }), [server.key]);
    advance(30);
    assert.deepEqual((await fetchLatest()).rawPayload, first, 'still cached');
    advance(31);
    assert.deepEqual((await fetchLatest()).rawPayload, second, 'TTL passed: the new release');
  });

  test('tampered and invalid manifests are never served: the last good one is, and each is logged with its reason', async () => {
    const good = (await fetchLatest()).rawPayload;
    const goodSerial = JSON.parse(good.toString()).signed.serial as number;
    const tampered = JSON.parse(good.toString());
    tampered.signed.artifacts['linux-x64'].sha256 = 'c'.repeat(64);
    const otherKey: TestKey = makeKey();
    const cases: Array<{ name: string; bytes: Buffer; reason: ReasonCode }> = [
      { name: 'tampered field', bytes: Buffer.from(JSON.stringify(tampered)), reason: 'signature_invalid' },
      { name: 'not JSON', bytes: Buffer.from('{"signed": '), reason: 'manifest_invalid' },
      {
        name: 'signed by an untrusted key',
        bytes: signedManifestBytes(releaseFor({ serial: goodSerial + 1 }), [otherKey]),
        reason: 'signature_invalid',
      },
      {
        name: 'older serial (store rolled back)',
        bytes: signedManifestBytes(releaseFor({ serial: goodSerial - 1 }), [server.key]),
        reason: 'manifest_rollback',
      },
      {
        name: 'another channel',
        bytes: signedManifestBytes(releaseFor({ serial: goodSerial + 1, channel: 'beta' }), [server.key]),
        reason: 'channel_mismatch',
      },
      {
        name: 'already expired',
        bytes: signedManifestBytes(releaseFor({ serial: goodSerial + 1, released_at: '2026-10-01T00:00:00Z', expires: '2026-10-02T00:00:00Z' }), [server.key]),
        reason: 'manifest_expired',
      },
    ];
    for (const c of cases) {
      const before = rejections().length;
      await writeManifestBytes(server.storeDir, 'stable', c.bytes);
      advance(61);
      const res = await fetchLatest();
      assert.equal(res.statusCode, 200, c.name);
      assert.deepEqual(res.rawPayload, good, `${c.name}: the last good manifest is served`);
      const logged = rejections().slice(before);
      assert.equal(logged.length, 1, c.name);
      assert.equal(logged[0]?.['reason'], c.reason, c.name);
      assert.equal(logged[0]?.['still_serving_serial'], goodSerial, c.name);
      assert.equal(logged[0]?.['level'], 'error', c.name);
    }
  });

  test('the last good manifest stops being served when it expires', async () => {
    server.clock.set(new Date('2026-12-20T10:00:00Z'));
    const res = await fetchLatest();
    assert.equal(res.statusCode, 404);
    assert.equal(JSON.parse(res.body).error.code, 'no_release');
    assert.equal(rejections().at(-1)?.['reason'], 'manifest_expired');
  });
});

describe('ManifestCache unit behaviour', () => {
  let dir: string;
  let key: TestKey;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bytebiota-cache-'));
    key = makeKey();
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  function cacheOver(store: ReleaseStore, lines: string[], threshold = 1, keys = [key], servedSerials?: ServedSerials) {
    return new ManifestCache({
      store,
      trustedKeys: keys.map((k) => k.public),
      threshold,
      cacheTtlSeconds: 300,
      clock: fixedClock(SERVER_FIXTURE_NOW),
      logger: createLogger({ name: 'test', destination: { write: (line: string) => lines.push(line) } }),
      ...(servedSerials ? { servedSerials } : {}),
    });
  }

  test('a store that fails keeps the last good manifest and logs manifest_fetch_failed', async () => {
    await publishRelease(dir, releaseFor({ serial: 4 }), [key]);
    const folder = new FolderStore(dir);
    let failing = false;
    const flaky: ReleaseStore = {
      location: 'flaky',
      ping: () => folder.ping(),
      stat: (k) => folder.stat(k),
      read: async (k, max) => {
        if (failing) throw new StoreError('store_unavailable', 'connection reset');
        return folder.read(k, max);
      },
      openRead: (k, r) => folder.openRead(k, r),
      write: (k, d) => folder.write(k, d),
      writeFile: (k, p) => folder.writeFile(k, p),
      list: (p) => folder.list(p),
    };
    const lines: string[] = [];
    const clock = fixedClock(SERVER_FIXTURE_NOW);
    const cache = new ManifestCache({
      store: flaky,
      trustedKeys: [key.public],
      threshold: 1,
      cacheTtlSeconds: 1,
      clock,
      logger: createLogger({ name: 'test', destination: { write: (line: string) => lines.push(line) } }),
    });
    assert.equal((await cache.current('stable'))?.signed.serial, 4);
    failing = true;
    clock.set(new Date(SERVER_FIXTURE_NOW.getTime() + 5000));
    assert.equal((await cache.current('stable'))?.signed.serial, 4);
    const logged = lines.map((line) => JSON.parse(line)).find((line) => line.event === 'manifest_rejected');
    assert.equal(logged?.reason, 'manifest_fetch_failed');
  });

  test('the highest served serial is kept in the fleet store: a rolled-back store is refused after a restart and after a removal', async () => {
    const sub = join(dir, 'floor');
    const fleet = new SqliteFleetStore(join(dir, 'floor.sqlite'));
    try {
      const lines: string[] = [];
      const open = () => cacheOver(new FolderStore(sub), lines, 1, [key], fleet);
      const old = await publishRelease(sub, releaseFor({ serial: 3 }), [key]);
      assert.equal((await open().current('stable'))?.signed.serial, 3);
      await publishRelease(sub, releaseFor({ serial: 7, version: '1.5.0' }), [key]);
      const running = open();
      assert.equal((await running.current('stable'))?.signed.serial, 7);
      assert.equal(await fleet.highestServedSerial('stable'), 7);

      // The store is put back to serial 3; a fresh cache (a restarted server) refuses it.
      await writeManifestBytes(sub, 'stable', old);
      assert.equal(await open().current('stable'), null);
      const refused = lines.map((line) => JSON.parse(line)).filter((line) => line.event === 'manifest_rejected');
      assert.equal(refused.at(-1)?.reason, 'manifest_rollback');

      // Removed, then the old one comes back: still refused by the running cache too.
      await rm(join(sub, storeKeys.manifest('stable')), { force: true });
      running.invalidate('stable');
      assert.equal(await running.current('stable'), null);
      await writeManifestBytes(sub, 'stable', old);
      running.invalidate('stable');
      assert.equal(await running.current('stable'), null);

      // A newer serial is served and raises the floor; a lower one never lowers it.
      await publishRelease(sub, releaseFor({ serial: 8, version: '1.5.1' }), [key]);
      assert.equal((await open().current('stable'))?.signed.serial, 8);
      await fleet.raiseServedSerial('stable', 2, SERVER_FIXTURE_NOW);
      assert.equal(await fleet.highestServedSerial('stable'), 8);
      assert.equal(await fleet.highestServedSerial('beta'), null);
    } finally {
      await fleet.close();
    }
  });

  test('a fleet store that cannot read or record the floor is logged, and the verified manifest is still served', async () => {
    const sub = join(dir, 'floor-broken');
    await publishRelease(sub, releaseFor({ serial: 5 }), [key]);
    const lines: string[] = [];
    const cache = cacheOver(new FolderStore(sub), lines, 1, [key], {
      highestServedSerial: async () => {
        throw new Error('database is locked');
      },
      raiseServedSerial: async () => {
        throw new Error('disk I/O error');
      },
    });
    assert.equal((await cache.current('stable'))?.signed.serial, 5);
    const events = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.ok(events.some((line) => line['event'] === 'served_serial_unreadable' && String(line['err']).includes('database is locked')));
    assert.ok(events.some((line) => line['event'] === 'served_serial_unwritable' && line['serial'] === 5 && String(line['err']).includes('disk I/O error')));
  });

  test('a threshold of two needs two trusted signatures', async () => {
    const second = makeKey();
    const sub = join(dir, 'threshold');
    await publishRelease(sub, releaseFor({ serial: 1 }), [key]);
    const lines: string[] = [];
    const cache = cacheOver(new FolderStore(sub), lines, 2, [key, second]);
    assert.equal(await cache.current('stable'), null);
    assert.equal(JSON.parse(lines[0]!).reason, 'signature_invalid');
    await publishRelease(sub, releaseFor({ serial: 2 }), [key, second]);
    cache.invalidate('stable');
    assert.equal((await cache.current('stable'))?.signed.serial, 2);
  });

  test('concurrent requests share one store read', async () => {
    const sub = join(dir, 'single-flight');
    await publishRelease(sub, releaseFor({ serial: 1 }), [key]);
    const folder = new FolderStore(sub);
    let reads = 0;
    const counting = Object.assign(Object.create(folder) as FolderStore, {
      read: async (k: string, max: number) => {
        reads += 1;
        return folder.read(k, max);
      },
    });
    const cache = cacheOver(counting, []);
    const results = await Promise.all(Array.from({ length: 20 }, () => cache.current('stable')));
    assert.ok(results.every((r) => r?.signed.serial === 1));
    assert.equal(reads, 1);
  });
});
