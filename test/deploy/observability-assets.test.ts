/**
 * The alert rules and the dashboard are only worth something if the metrics they query exist.
 * Every metric name they reference must be one the real server exports on /metrics (after a
 * report of each kind, so that every counter has a sample).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { startTestServer, type TestServer } from '../helpers/server-app.js';

let server: TestServer;
let exported: Set<string>;

before(async () => {
  server = await startTestServer();
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

/** Metric names in a PromQL text: identifiers followed by `{`, `[` or a space-free end, minus PromQL words. */
function metricNames(promql: string): string[] {
  const words = new Set(['sum', 'by', 'rate', 'increase', 'max', 'count', 'clamp_min', 'histogram_quantile', 'le', 'route', 'version', 'channel', 'pool', 'reason', 'to_version', 'status_code']);
  return [...promql.matchAll(/\b([a-z_][a-z0-9_]*)\s*(?=\{|\[)/g)].map((m) => m[1]!).filter((name) => !words.has(name));
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
