/**
 * The alert rules are checked by Prometheus's own tool: `promtool check rules` (they parse and
 * their templates expand) and `promtool test rules` (deploy/prometheus-alerts.test.yml: series
 * that fire each alert and series that must not). Every alert needs a case of each kind there,
 * and a summary and a runbook link that leads to a heading of a page in docs/.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';

const RULES = 'deploy/prometheus-alerts.yml';
const RULE_TESTS = 'deploy/prometheus-alerts.test.yml';

interface RulesFile {
  groups: Array<{ name: string; rules: Array<{ alert?: string; record?: string; annotations?: Record<string, string> }> }>;
}

interface RuleTestsFile {
  rule_files: string[];
  tests: Array<{ name?: string; alert_rule_test?: Array<{ alertname: string; eval_time: string; exp_alerts?: unknown[] | null }> }>;
}

/** Runs promtool; a promtool that is not installed fails the test with what to do, never skips it. */
function promtool(args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    execFile('promtool', args, (err, stdout, stderr) => {
      const output = `${stdout}${stderr}`;
      if (err === null) return resolve({ code: 0, output });
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return reject(new Error('promtool is not on PATH: run `node scripts/system-deps.mjs` (the first step of npm test), which installs it (Debian package prometheus)'));
      }
      resolve({ code: typeof err.code === 'number' ? err.code : 1, output: output === '' ? err.message : output });
    });
  });
}

async function alertRules(): Promise<Array<{ alert: string; annotations: Record<string, string> }>> {
  const rules = parse(await readFile(RULES, 'utf8')) as RulesFile;
  return rules.groups.flatMap((group) => group.rules.flatMap((rule) => (rule.alert === undefined ? [] : [{ alert: rule.alert, annotations: rule.annotations ?? {} }])));
}

/** GitHub's anchor for a Markdown heading: lower case, punctuation other than `-` and `_` dropped, spaces to `-`. */
function headingAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

describe('Prometheus alert rules', () => {
  test('promtool check rules accepts the rules file', async () => {
    const run = await promtool(['check', 'rules', RULES]);
    assert.equal(run.code, 0, `promtool check rules ${RULES} failed:\n${run.output}`);
  });

  test('promtool test rules passes the unit tests', async () => {
    const run = await promtool(['test', 'rules', RULE_TESTS]);
    assert.equal(run.code, 0, `promtool test rules ${RULE_TESTS} failed:\n${run.output}`);
  });

  test('every alert has a test where it fires and one where it must not', async () => {
    const tests = parse(await readFile(RULE_TESTS, 'utf8')) as RuleTestsFile;
    assert.deepEqual(tests.rule_files, ['prometheus-alerts.yml'], 'the unit tests load the rules file beside them');
    const cases = tests.tests.flatMap((group) => group.alert_rule_test ?? []);
    const alerts = await alertRules();
    assert.ok(alerts.length > 0, 'the rules file has alerts');
    for (const { alert } of alerts) {
      const own = cases.filter((c) => c.alertname === alert);
      assert.ok(
        own.some((c) => (c.exp_alerts ?? []).length > 0),
        `${RULE_TESTS} has no case in which ${alert} fires`,
      );
      assert.ok(
        own.some((c) => (c.exp_alerts ?? []).length === 0),
        `${RULE_TESTS} has no case in which ${alert} must stay quiet`,
      );
    }
    const known = new Set(alerts.map((rule) => rule.alert));
    for (const c of cases) assert.ok(known.has(c.alertname), `${RULE_TESTS} tests ${c.alertname}, which ${RULES} does not define`);
  });

  test("every alert has a summary and a runbook link to a heading that exists", async () => {
    for (const { alert, annotations } of await alertRules()) {
      assert.ok((annotations.summary ?? '').trim() !== '', `${alert} has no summary`);
      const match = /^(docs\/[\w./-]+\.md)#([\w-]+)$/.exec(annotations.runbook ?? '');
      assert.ok(match, `${alert}'s runbook ${JSON.stringify(annotations.runbook)} is not docs/PAGE.md#anchor`);
      const [, page, anchor] = match;
      const markdown = await readFile(page!, 'utf8');
      const anchors = new Set([...markdown.matchAll(/^#{1,6}\s+(.+)$/gm)].map((m) => headingAnchor(m[1]!)));
      assert.ok(anchors.has(anchor!), `${alert}'s runbook ${annotations.runbook}: ${page} has no heading with that anchor`);
    }
  });
});
