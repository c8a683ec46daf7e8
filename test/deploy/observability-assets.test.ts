/**
 * The alert rules and the dashboard are only worth something if the metrics they query exist.
 * Every metric name they reference must be one the real server exports on /metrics (after a
 * report of each kind, a rollout, a stalled update and a quiet worker, so that every counter and
 * gauge has a sample).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { startTestServer, type TestServer } from '../helpers/server-app.js';
import { publishRelease, releaseFor } from '../helpers/server-fixtures.js';

let server: TestServer;
let exported: Set<string>;

before(async () => {
  server = await startTestServer();
  // Published before any request, which would cache the channel's absence.
  await publishRelease(server.storeDir, releaseFor({ channel: 'stable', serial: 1 }), [server.key]);
  const events = ['attempt', 'success', 'failure', 'rollback'] as const;
  for (const event of events) {
    const response = await server.app.inject({
      method: 'POST',
      url: '/api/worker-updates/report',
      headers: { authorization: `Bearer ${server.tokens.canary}` },
      payload: {
        worker_id: 'metrics-check',
        event,
        from_version: '1.0.0',
        to_version: '1.1.0',
        channel: 'stable',
        platform: 'linux-x64',
        ...(event === 'failure' || event === 'rollback' ? { reason: 'crashed_on_start' } : {}),
        // A differential update that fell back: both the bytes and the fallback counters get a series.
        ...(event === 'success' ? { bytes_fetched: 1000, delta: false, delta_fallback: 'range_not_supported' } : {}),
      },
    });
    assert.equal(response.statusCode, 202, response.body);
  }
  await server.app.inject({
    method: 'POST',
    url: '/api/workers/register',
    headers: { authorization: `Bearer ${server.tokens.canary}` },
    payload: { worker_id: 'metrics-check', current_version: '1.0.0', platform: 'linux-x64', channel: 'stable' },
  });
  // A rollout, so the rollout gauges have a series; an update stuck for two hours and a worker
  // quiet for two minutes, so the stalled and unseen gauges have one.
  await server.app.inject({ url: '/api/worker-updates/latest?channel=stable&platform=linux-x64&worker_id=metrics-check&current_version=1.0.0', headers: { authorization: `Bearer ${server.tokens.canary}` } });
  const now = server.clock.now().getTime();
  const stuck = { to_version: '1.4.0', state: 'downloading' as const, download_percent: 5 };
  await server.fleet.recordHeartbeat({ workerId: 'metrics-check', pool: 'canary', version: '1.0.0', state: 'working', update: stuck, at: new Date(now - 7200_000) });
  await server.fleet.recordHeartbeat({ workerId: 'metrics-check', pool: 'canary', version: '1.0.0', state: 'working', update: stuck, at: new Date(now) });
  await server.fleet.registerWorker({ workerId: 'metrics-quiet', pool: 'canary', channel: 'stable', platform: 'linux-x64', version: '1.0.0', at: new Date(now - 120_000) });
  const metrics = await server.app.inject({ method: 'GET', url: '/metrics' });
  exported = new Set(
    metrics.body
      .split('\n')
      .filter((line) => line && !line.startsWith('#'))
      .map((line) => line.split(/[{ ]/)[0]!),
  );
});

after(async () => {
  await server?.close();
});

/** Metric names in a PromQL text: identifiers followed by `{` or `[`, minus PromQL words, and every `bytebiota_` name. */
function metricNames(promql: string): string[] {
  const words = new Set(['sum', 'by', 'rate', 'increase', 'max', 'count', 'clamp_min', 'histogram_quantile', 'le', 'route', 'version', 'channel', 'pool', 'reason', 'to_version', 'status_code']);
  const selected = [...promql.matchAll(/\b([a-z_][a-z0-9_]*)\s*(?=\{|\[)/g)].map((m) => m[1]!).filter((name) => !words.has(name));
  // The server's own metrics also appear bare, as in `max without (instance) (bytebiota_fleet_workers_unseen)`.
  const ours = [...promql.matchAll(/\b(bytebiota_[a-z0-9_]*)\b/g)].map((m) => m[1]!);
  return [...new Set([...selected, ...ours])];
}

/** The `expr:` values of a rules file: inline, or a `|` block of the lines indented under it. */
function alertExpressions(yaml: string): string[] {
  const lines = yaml.split('\n');
  const expressions: string[] = [];
  lines.forEach((line, index) => {
    const match = /^(\s*)expr:\s*(.*)$/.exec(line);
    if (!match) return;
    if (match[2] !== '|') {
      expressions.push(match[2]!);
      return;
    }
    const indent = match[1]!.length;
    const block: string[] = [];
    for (const next of lines.slice(index + 1)) {
      if (next.trim() !== '' && next.search(/\S/) <= indent) break;
      block.push(next);
    }
    expressions.push(block.join('\n'));
  });
  return expressions;
}

describe('observability assets', () => {
  test('every metric in the Prometheus alert rules is exported by the server', async () => {
    const names = metricNames(alertExpressions(await readFile('deploy/prometheus-alerts.yml', 'utf8')).join('\n'));
    assert.ok(names.length >= 5, 'the rules reference metrics');
    for (const name of names) assert.ok(exported.has(name), `alert rules use ${name}, which /metrics does not export`);
  });

  test('every metric in the Grafana dashboard is exported by the server', async () => {
    const dashboard = JSON.parse(await readFile('deploy/grafana-dashboard.json', 'utf8')) as {
      panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
    };
    for (const panel of dashboard.panels) {
      for (const target of panel.targets) {
        for (const name of metricNames(target.expr)) {
          assert.ok(exported.has(name), `panel "${panel.title}" uses ${name}, which /metrics does not export`);
        }
      }
    }
  });
});
