/**
 * The fleet console's pages in Chromium against a real server process and a simulated fleet in
 * the middle of a staged rollout (test/helpers/console-fleet.ts). What the page shows is checked
 * against the admin API and the admin CLI, which read the same database by other roads; the
 * halt goes through the page's own dialog; every page is run through axe-core and photographed
 * into test-artifacts/console/.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import type { WorkerView } from '../../src/server/fleet/fleet-store.js';
import { launchBrowser, newContext, openRoute, runAxe, screenshot, signIn, watchPage, type PageWatch } from '../helpers/browser.js';
import { ADMIN_LABEL, BETA_CHANNEL, CONSOLE_CHANNEL, NEW_VERSION, QUIET_WORKERS, startConsoleFleet, type ConsoleFleet } from '../helpers/console-fleet.js';
import { until } from '../helpers/wait.js';

const SEED = Number(process.env['CONSOLE_TEST_SEED'] ?? Date.now() % 2 ** 31);
console.log(`console fleet seed ${SEED} (CONSOLE_TEST_SEED=${SEED} to replay)`);

/** The server's windows: live is 10 heartbeat intervals, unseen is quiet for 3 but seen within a day. */
const LIVE_INTERVALS = 10;
const UNSEEN_INTERVALS = 3;
/** A poll (5 s) plus the overview's shared snapshot (up to 2 s old), with room for a slow machine. */
const POLL_WAIT_MS = 15_000;

let fleet: ConsoleFleet;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let watch: PageWatch;

before(async () => {
  [fleet, browser] = await Promise.all([startConsoleFleet({ seed: SEED }), launchBrowser()]);
  context = await newContext(browser);
  page = await context.newPage();
  watch = await watchPage(page);
  await signIn(page, fleet.url, fleet.adminToken);
});

after(async () => {
  await browser?.close();
  await fleet?.close();
});

/** A number as the page writes it (`1,234`, `2 workers`). */
function numberIn(text: string): number {
  const match = /\d[\d,]*/.exec(text);
  assert.ok(match, `no number in ${JSON.stringify(text)}`);
  return Number(match[0].replace(/,/g, ''));
}

/** The rows of a two-column counts table as `{label: count}`. */
async function countsTable(scope: Page | Locator, name: string): Promise<Record<string, number>> {
  const rows = await scope.getByRole('table', { name }).locator('tbody tr').all();
  const counts: Record<string, number> = {};
  for (const row of rows) {
    if ((await row.locator('th').count()) === 0) continue; // the "none" row
    counts[(await row.locator('th').innerText()).trim()] = numberIn(await row.locator('td').innerText());
  }
  return counts;
}

function tally(values: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1;
  return counts;
}

/** Read until the page shows what is expected (the page polls), then compare for a readable diff. */
async function settles<T>(what: string, read: () => Promise<T>, expected: T): Promise<void> {
  let seen: T | undefined;
  await until(
    what,
    async () => {
      seen = await read();
      try {
        assert.deepEqual(seen, expected);
        return true;
      } catch {
        return false;
      }
    },
    POLL_WAIT_MS,
    250,
  ).catch(() => undefined);
  assert.deepEqual(seen, expected, what);
}

/**
 * The worker table once its rows are those of the current filters and page: the page marks the
 * results `aria-busy` while it still shows the rows before.
 */
async function workerTable(on: Page = page): Promise<{ count: number; ids: string[]; pageNumber: string }> {
  await on.locator('.results[aria-busy="false"]').waitFor();
  return {
    count: numberIn(await on.locator('.match-count').innerText()),
    ids: await on.getByRole('table', { name: 'Workers, by worker id' }).locator('tbody th a').allInnerTexts(),
    pageNumber: await on.locator('.page-number').innerText(),
  };
}

/** GET a console route with this browser's session cookie. */
async function consoleApi<T>(path: string): Promise<T> {
  const response = await context.request.get(`${fleet.url}${path}`);
  assert.equal(response.status(), 200, `${path}: ${await response.text()}`);
  return (await response.json()) as T;
}

/** `bytebiota-admin worker explain ID --json`, the real CLI from source. */
async function explainWithCli(workerId: string): Promise<{ offer: { serial: number; version: string } | null; steps: Array<{ check: string; ok: boolean; detail: string }> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/admin/main.ts', 'worker', 'explain', workerId, '--json'], {
    env: { ...process.env, BYTEBIOTA_SERVER_URL: fleet.url, BYTEBIOTA_ADMIN_TOKEN: fleet.adminToken },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0, stderr);
  return JSON.parse(stdout) as Awaited<ReturnType<typeof explainWithCli>>;
}

describe('fleet console pages', () => {
  test('the overview shows the counts the admin API gives', async () => {
    await openRoute(page, fleet.url, '#/', 'Fleet overview');
    const { json: view } = await fleet.admin<{ generated_at: string; workers: WorkerView[] }>('GET', '/api/admin/fleet?limit=10000');
    const nowMs = Date.parse(view.generated_at);
    const heartbeatS = 30;
    const seenAgoMs = (worker: WorkerView) => nowMs - Date.parse(worker.last_seen_at);
    const live = view.workers.filter((worker) => seenAgoMs(worker) <= LIVE_INTERVALS * heartbeatS * 1000);
    const unseen = view.workers.filter((worker) => seenAgoMs(worker) > UNSEEN_INTERVALS * heartbeatS * 1000 && seenAgoMs(worker) <= 86_400_000);
    assert.deepEqual(unseen.map((worker) => worker.worker_id).sort(), [...QUIET_WORKERS]);

    await settles('the fleet summary', async () => ({ live: numberIn(await page.locator('.fleet-live').innerText()), unseen: numberIn(await page.locator('.fleet-unseen').innerText()) }), {
      live: live.length,
      unseen: unseen.length,
    });

    for (const channel of [CONSOLE_CHANNEL, BETA_CHANNEL]) {
      const section = page.getByRole('region', { name: `Channel ${channel}` });
      const ofChannel = live.filter((worker) => worker.channel === channel);
      const expected = {
        live: ofChannel.length,
        byVersion: tally(ofChannel.map((worker) => worker.version)),
        byState: tally(ofChannel.map((worker) => worker.state)),
        byUpdateState: tally(ofChannel.map((worker) => (worker.update?.state ?? 'none').replace(/_/g, ' '))),
      };
      await settles(
        `the workers of ${channel}`,
        async () => ({
          live: numberIn(await section.locator('.live-count').innerText()),
          byVersion: await countsTable(section, `Live workers on ${channel} by version`),
          byState: await countsTable(section, `Live workers on ${channel} by state`),
          byUpdateState: await countsTable(section, `Live workers on ${channel} by update state`),
        }),
        expected,
      );

      const rollout = await fleet.rollout(channel);
      const waves = section.getByRole('table', { name: `Waves of ${rollout.version} on ${channel}` }).locator('tbody tr');
      await settles(
        `the rollout of ${channel}`,
        async () => ({
          version: await section.locator('.release-version').innerText(),
          serial: numberIn(await section.locator('.release-serial').innerText()),
          state: await section.locator('.facts .badge').first().innerText(),
          progress: await waves.locator('.progress-text').allInnerTexts(),
          failed: await Promise.all((await waves.all()).map(async (row) => ((await row.locator('.failed-count').count()) === 0 ? 0 : numberIn(await row.locator('.failed-count').innerText())))),
          failure: await section.locator('.failure-rate').innerText(),
        }),
        {
          version: rollout.version,
          serial: rollout.serial,
          state: rollout.state,
          progress: rollout.waves.map((wave) => `${wave.updated} of ${wave.live_admitted}`),
          failed: rollout.waves.map((wave) => wave.failed),
          failure: `${(rollout.failure.rate * 100).toFixed(1)} % (${rollout.failure.failed_workers} of ${rollout.failure.sample_workers} workers) against a halt threshold of ${(rollout.failure.threshold * 100).toFixed(1)} % (minimum sample ${rollout.failure.min_sample}, window 1h)`,
        },
      );
    }
    // Times are the viewer's (this context: en-GB in Europe/Berlin), the exact instant in `datetime`.
    const started = page.getByRole('region', { name: `Channel ${CONSOLE_CHANNEL}` }).locator('.facts time').first();
    const iso = (await started.getAttribute('datetime'))!;
    assert.equal(await started.getAttribute('title'), iso);
    assert.equal(await started.innerText(), new Date(iso).toLocaleString('en-GB', { timeZone: 'Europe/Berlin' }));

    // The rollout is really mid-way: the canary wave with its rollback, the stable wave started.
    const stable = await fleet.rollout();
    assert.equal(stable.current_wave, 2);
    assert.equal(stable.waves[0]!.failed, 1);

    // The chart of stable has the seeded past; beta has only what the server sampled itself.
    const stableHistory = page.getByRole('region', { name: `Channel ${CONSOLE_CHANNEL}` }).locator('.history');
    await stableHistory.locator('.version-chart canvas').first().waitFor();
    assert.deepEqual((await stableHistory.locator('.u-legend .u-label').allInnerTexts()).filter((label) => label !== 'Time'), ['1.0.0', NEW_VERSION]);
    const betaSamples = (await consoleApi<{ samples: unknown[] }>(`/console/api/history?channel=${BETA_CHANNEL}&days=7`)).samples.length;
    const betaHistory = page.getByRole('region', { name: `Channel ${BETA_CHANNEL}` }).locator('.history');
    if (betaSamples < 2) await betaHistory.getByText('Not enough history for a chart yet').waitFor();
    else await betaHistory.locator('.version-chart canvas').first().waitFor();
  });

  test('the filters narrow the worker table, the link keeps them, and the cursor pages through it', async () => {
    const { json: view } = await fleet.admin<{ total_workers: number; workers: WorkerView[] }>('GET', '/api/admin/fleet?limit=10000');
    await openRoute(page, fleet.url, '#/workers?limit=10', 'Workers');
    await until('the unfiltered count', async () => (await workerTable()).count === view.total_workers, POLL_WAIT_MS);

    // Each filter, alone and combined, against the API's `total` for the same filters.
    const narrowings: Array<{ act: () => Promise<unknown>; query: string; expected: number }> = [
      { act: () => page.getByLabel('Pool').selectOption('stable'), query: 'pool=stable', expected: view.workers.filter((w) => w.pool === 'stable').length },
      { act: () => page.getByLabel('Seen').selectOption('unseen'), query: 'pool=stable&seen=unseen', expected: QUIET_WORKERS.length },
      { act: () => page.getByLabel('Seen').selectOption('live'), query: 'pool=stable&seen=live', expected: 20 },
      {
        act: async () => {
          await page.getByLabel('Worker id starts with').fill('stable-1');
          await page.getByLabel('Worker id starts with').press('Enter');
        },
        query: 'q=stable-1&pool=stable&seen=live',
        expected: 10,
      },
      { act: () => page.getByRole('link', { name: 'Clear the filters' }).click(), query: '', expected: view.total_workers },
      { act: () => page.getByLabel('Update state').selectOption('failed'), query: 'update_state=failed', expected: fleet.outcome.downloadFailed.length },
      { act: () => page.getByLabel('Update state').selectOption(''), query: '', expected: view.total_workers },
      { act: () => page.getByLabel('Channel').selectOption(BETA_CHANNEL), query: `channel=${BETA_CHANNEL}`, expected: 4 },
      { act: () => page.getByLabel('Version').selectOption(NEW_VERSION), query: `version=${NEW_VERSION}&channel=${BETA_CHANNEL}`, expected: 4 },
      { act: () => page.getByLabel('Channel').selectOption(''), query: `version=${NEW_VERSION}`, expected: view.workers.filter((w) => w.version === NEW_VERSION).length },
      { act: () => page.getByLabel('State', { exact: true }).selectOption('working'), query: `version=${NEW_VERSION}&state=working`, expected: view.workers.filter((w) => w.version === NEW_VERSION && w.state === 'working').length },
    ];
    for (const { act, query, expected } of narrowings) {
      await act();
      const { total } = await consoleApi<{ total: number }>(`/console/api/workers?${query}&limit=10`);
      assert.equal(total, expected, `the API's total for ${query}`);
      // The address holds the filters at once; the table follows when the answer is in.
      await until(`the address of ${query}`, () => query.split('&').every((pair) => pair === '' || decodeURIComponent(page.url()).includes(pair)), POLL_WAIT_MS);
      const shown = await until(`"${expected} workers match" for ${query}`, async () => {
        const table = await workerTable();
        return table.count === expected ? table : null;
      }, POLL_WAIT_MS);
      assert.equal(shown.ids.length, Math.min(10, expected), query);
    }

    // A link with filters, opened afresh, shows the same table with its filters selected.
    const linked = await context.newPage();
    try {
      await openRoute(linked, fleet.url, '#/workers?pool=stable&seen=unseen', 'Workers');
      const table = await workerTable(linked);
      assert.deepEqual({ count: table.count, ids: table.ids }, { count: QUIET_WORKERS.length, ids: [...QUIET_WORKERS] });
      assert.equal(await linked.getByLabel('Pool').inputValue(), 'stable');
      assert.equal(await linked.getByLabel('Seen').inputValue(), 'unseen');
    } finally {
      await linked.close();
    }

    // Pages of 10 through the stable pool (22 workers): Next by cursor, Previous by the stack, First.
    await openRoute(page, fleet.url, '#/workers?pool=stable&limit=10', 'Workers');
    const everyStable = view.workers.filter((w) => w.pool === 'stable').map((w) => w.worker_id).sort();
    const pageOf = async (n: number) => {
      const table = await until(`page ${n}`, async () => {
        const now = await workerTable();
        return now.pageNumber === `Page ${n}` && now.count === everyStable.length ? now : null;
      }, POLL_WAIT_MS);
      return table.ids;
    };
    const first = await pageOf(1);
    await page.getByRole('button', { name: 'Next' }).click();
    const second = await pageOf(2);
    await page.getByRole('button', { name: 'Next' }).click();
    const third = await pageOf(3);
    assert.deepEqual([...first, ...second, ...third], everyStable, 'the pages, in order, are every stable worker once, by id');
    assert.equal(await page.getByRole('button', { name: 'Next' }).isDisabled(), true, 'the last page has no Next');
    await page.getByRole('button', { name: 'Previous' }).click();
    assert.deepEqual(await pageOf(2), second);
    await page.getByRole('button', { name: 'First' }).click();
    assert.deepEqual(await pageOf(1), first);
    assert.equal(await page.getByRole('button', { name: 'Previous' }).isDisabled(), true);
  });

  test("a worker page explains the offer as `bytebiota-admin worker explain` does", async () => {
    const rolledBack = fleet.outcome.rolledBack[0]!;
    const cases = [fleet.outcome.windowClosed[0]!, rolledBack, fleet.outcome.updated[0]!];
    // The CLI runs (a process each) while the browser reads the pages.
    const fromCli = cases.map((workerId) => explainWithCli(workerId));
    for (const [index, workerId] of cases.entries()) {
      if (index === 0) {
        // Reached as an operator would: search, then the row's link.
        await openRoute(page, fleet.url, `#/workers?q=${workerId}`, 'Workers');
        await page.getByRole('link', { name: workerId, exact: true }).click();
        await page.getByRole('heading', { level: 1, name: `Worker ${workerId}` }).waitFor();
      } else {
        await openRoute(page, fleet.url, `#/workers/${workerId}`, `Worker ${workerId}`);
      }
      const steps = page.getByRole('table', { name: 'The checks, in the order the server makes them' }).locator('tbody tr');
      await steps.first().waitFor();
      const shown = await Promise.all(
        (await steps.all()).map(async (row) => ({
          check: await row.locator('.step-check').innerText(),
          ok: await row.locator('.step-result').innerText(),
          detail: await row.locator('.step-detail').innerText(),
        })),
      );
      const cli = await fromCli[index]!;
      assert.deepEqual(
        shown,
        cli.steps.map((step) => ({ check: step.check, ok: step.ok ? 'ok' : 'not ok', detail: step.detail })),
        `the steps of ${workerId}`,
      );
      const offer = await page.locator('.offer').innerText();
      if (cli.offer === null) assert.equal(offer, 'Nothing is offered to this worker now.');
      else assert.match(offer, new RegExp(`Offered ${cli.offer.version.replace(/\./g, '\\.')} \\(serial ${cli.offer.serial}\\)`));
    }
    // The window step says why the edge is not offered 1.1.0; the rolled-back canary lists its rollback.
    assert.ok((await fromCli[0]!).steps.some((step) => step.check === 'window' && !step.ok));
    await openRoute(page, fleet.url, `#/workers/${rolledBack}`, `Worker ${rolledBack}`);
    const events = page.getByRole('table', { name: 'Update reports, newest first' }).locator('tbody tr');
    await events.first().waitFor();
    assert.deepEqual((await events.locator('td:nth-child(2)').allInnerTexts()).slice(0, 2), ['rollback', 'attempt']);
  });

  test('the failures page groups the reports by reason and version and links each worker', async () => {
    await openRoute(page, fleet.url, '#/failures', 'Failures');
    const answer = await consoleApi<{ groups: Array<{ event: string; reason: string | null; to_version: string; channel: string; reports: number; workers: number; worker_ids: string[] }> }>(
      '/console/api/failures?hours=24',
    );
    const rows = page.getByRole('table', { name: 'Failures and rollbacks in the last 24 hours, most reports first' }).locator('tbody tr');
    await rows.first().waitFor();
    const shown = await Promise.all(
      (await rows.all()).map(async (row) => ({
        cells: (await row.locator('th, td').allInnerTexts()).slice(0, 6),
        workers: await row.locator('.worker-links a').allInnerTexts(),
      })),
    );
    assert.deepEqual(
      shown,
      answer.groups.map((group) => ({
        cells: [group.event, group.reason ?? 'none given', group.to_version, group.channel, String(group.reports), String(group.workers)],
        workers: group.worker_ids,
      })),
    );
    assert.deepEqual(
      shown.map((row) => row.cells.slice(0, 6)).sort(),
      [
        ['failure', 'download_failed', NEW_VERSION, CONSOLE_CHANNEL, '2', '1'],
        ['rollback', 'crashed_on_start', NEW_VERSION, CONSOLE_CHANNEL, '1', '1'],
      ],
      'what the fleet reported',
    );
    const rolledBack = fleet.outcome.rolledBack[0]!;
    await page.getByRole('link', { name: rolledBack, exact: true }).click();
    await page.getByRole('heading', { level: 1, name: `Worker ${rolledBack}` }).waitFor();
  });

  test('halting from the page halts the rollout; the open overview shows the banner without a reload', async () => {
    const overview = await context.newPage();
    const overviewWatch = await watchPage(overview);
    try {
      await openRoute(overview, fleet.url, '#/', 'Fleet overview');
      await overview.locator('.live-count').first().waitFor();
      assert.equal(await overview.getByRole('alert').count(), 0, 'nothing is halted yet');
      const loadsBefore = overviewWatch.loads;

      await openRoute(page, fleet.url, `#/rollouts/${CONSOLE_CHANNEL}`, `Rollout on ${CONSOLE_CHANNEL}`);
      const haltButton = page.getByRole('button', { name: 'Halt…' });
      const dialog = page.getByRole('dialog', { name: `Halt the rollout of ${NEW_VERSION} on ${CONSOLE_CHANNEL}?` });
      // Escape cancels: nothing is sent, and focus returns to the button.
      await haltButton.click();
      await dialog.waitFor();
      await until('focus in the reason field', async () => (await page.evaluate('document.activeElement?.getAttribute("name")')) === 'reason');
      await page.keyboard.press('Escape');
      await dialog.waitFor({ state: 'detached' });
      await until('focus back on Halt…', async () => (await page.evaluate('document.activeElement?.textContent')) === 'Halt…');
      assert.equal((await fleet.rollout()).state, 'active');

      const reason = `halted from the console test (seed ${SEED})`;
      await haltButton.click();
      await dialog.getByLabel('Reason (required)').fill(reason);
      await dialog.getByRole('button', { name: 'Halt rollout' }).click();
      await dialog.waitFor({ state: 'detached' });
      const halted = await until('the halt, through the admin API', async () => {
        const now = await fleet.rollout();
        return now.state === 'halted' ? now : null;
      });
      assert.equal(halted.state_reason, reason);
      assert.equal(halted.state_changed_by, fleet.adminToken.split('_')[1], 'the admin token signed in is who halted it');
      await page.getByRole('status').filter({ hasText: 'is now halted' }).waitFor();
      await page.getByRole('alert').filter({ hasText: reason }).filter({ hasText: `${ADMIN_LABEL} (you)` }).waitFor();

      // The other tab was never reloaded: its poll brought the halt in.
      await overview.getByRole('alert').filter({ hasText: reason }).waitFor({ timeout: POLL_WAIT_MS });
      assert.equal(overviewWatch.loads, loadsBefore, 'no reload');
      assert.deepEqual(overviewWatch.pageErrors, []);

      // A control that does not apply is refused by the server, and the dialog says so.
      await page.getByRole('button', { name: 'Pause…' }).click();
      const pause = page.getByRole('dialog', { name: `Pause the rollout of ${NEW_VERSION} on ${CONSOLE_CHANNEL}?` });
      await pause.getByRole('button', { name: 'Pause rollout' }).click();
      await pause.getByRole('alert').filter({ hasText: 'rollout_state_conflict' }).waitFor();
      await pause.getByRole('button', { name: 'Cancel' }).click();
      await pause.waitFor({ state: 'detached' });
      assert.equal((await fleet.rollout()).state, 'halted');
    } finally {
      await overview.close();
    }
  });

  test('keyboard: the skip link comes first and moves focus to the content; focus is visible', async () => {
    // A fresh load: nothing has focus, so the first Tab goes to the first control of the page.
    await openRoute(page, fleet.url, '#/workers', 'Workers');
    await page.reload();
    await page.getByRole('heading', { level: 1, name: 'Workers' }).waitFor();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate('document.activeElement?.textContent'), 'Skip to the content');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate('document.activeElement?.id'), 'main');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate('document.activeElement?.id'), await page.getByLabel('Worker id starts with').getAttribute('id'));
    assert.notEqual(await page.evaluate('getComputedStyle(document.activeElement).outlineStyle'), 'none', 'the focused field shows a ring');
  });

  test('every page passes axe-core (no serious or critical violation) and is photographed', async () => {
    // axe is injected as a script, which the CSP forbids: this context alone ignores the CSP.
    const axeContext = await newContext(browser, { bypassCSP: true });
    const narrowContext = await newContext(browser, { width: 400 });
    try {
      const axePage = await axeContext.newPage();
      const pages: Array<{ name: string; open: () => Promise<void> }> = [
        { name: 'sign-in', open: async () => axePage.goto(`${fleet.url}/console/`).then(() => axePage.getByLabel('Admin token').waitFor()) },
        {
          name: 'overview',
          open: async () => {
            await signIn(axePage, fleet.url, fleet.adminToken);
            await openRoute(axePage, fleet.url, '#/', 'Fleet overview');
            await axePage.locator('.version-chart canvas').first().waitFor();
          },
        },
        { name: 'rollouts', open: () => openRoute(axePage, fleet.url, '#/rollouts', 'Rollouts').then(() => axePage.getByRole('table').first().waitFor()) },
        { name: 'rollout', open: () => openRoute(axePage, fleet.url, `#/rollouts/${CONSOLE_CHANNEL}`, `Rollout on ${CONSOLE_CHANNEL}`).then(() => axePage.getByRole('table', { name: /^Waves/ }).waitFor()) },
        {
          name: 'rollout-dialog',
          open: async () => {
            await axePage.getByRole('button', { name: 'Abort…' }).click();
            await axePage.getByRole('dialog').waitFor();
          },
        },
        { name: 'workers', open: () => openRoute(axePage, fleet.url, '#/workers?limit=25', 'Workers').then(() => axePage.locator('.match-count').waitFor()) },
        {
          name: 'worker',
          open: () => openRoute(axePage, fleet.url, `#/workers/${fleet.outcome.rolledBack[0]!}`, /^Worker /).then(() => axePage.locator('.offer').waitFor()),
        },
        { name: 'failures', open: () => openRoute(axePage, fleet.url, '#/failures', 'Failures').then(() => axePage.getByRole('table').waitFor()) },
      ];
      const serious: string[] = [];
      for (const { name, open } of pages) {
        await open();
        const findings = await runAxe(axePage);
        for (const finding of findings) console.log(`axe ${name}: ${finding.impact} ${finding.id} (${finding.help}) at ${finding.targets.join(', ')}`);
        serious.push(...findings.filter((f) => f.impact === 'serious' || f.impact === 'critical').map((f) => `${name}: ${f.id} at ${f.targets.join(', ')}`));
        await screenshot(axePage, name);
      }
      assert.deepEqual(serious, [], 'no serious or critical accessibility violation');

      // 400 px wide: the page itself never scrolls sideways; wide tables scroll in their own box.
      const narrow = await narrowContext.newPage();
      await signIn(narrow, fleet.url, fleet.adminToken);
      for (const [name, hash, heading] of [
        ['overview-400px', '#/', 'Fleet overview'],
        ['workers-400px', '#/workers', 'Workers'],
      ] as const) {
        await openRoute(narrow, fleet.url, hash, heading);
        await narrow.locator('table').first().waitFor();
        const pageWidth = (await narrow.evaluate('document.documentElement.scrollWidth')) as number;
        assert.ok(pageWidth <= 400, `${name} is ${pageWidth} px wide, more than the 400 px window`);
        await screenshot(narrow, name);
      }
    } finally {
      await axeContext.close();
      await narrowContext.close();
    }
    assert.deepEqual(watch.pageErrors, [], 'no uncaught error in the page');
  });
});
