/**
 * The picture of the console for the docs: docs/images/console-overview.png. Builds the console,
 * starts a real server with a simulated fleet in the middle of a staged rollout (the console
 * tests' fleet, three times larger), signs in with Chromium, halts the rollout from the rollout
 * page as an operator would, and photographs the top of the overview: the fleet, and the halted
 * channel with its banner, waves, workers and version chart. Run by hand:
 *
 *   node --import tsx scripts/console-screenshot.ts [--seed N] [--out FILE]
 *
 * Needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium).
 */
import { spawnSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { launchBrowser, newContext, openRoute, signIn } from '../test/helpers/browser.js';
import { CONSOLE_CHANNEL, startConsoleFleet } from '../test/helpers/console-fleet.js';

const { values } = parseArgs({ options: { seed: { type: 'string', default: '20261201' }, out: { type: 'string', default: 'docs/images/console-overview.png' } } });
const seed = Number(values.seed);
console.log(`fleet seed ${seed}`);

const build = spawnSync(process.execPath, ['scripts/build-console.mjs'], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

const fleet = await startConsoleFleet({ seed, scale: 3 });
const browser = await launchBrowser();
try {
  const context = await newContext(browser, { width: 1280 });
  const page = await context.newPage();
  await signIn(page, fleet.url, fleet.adminToken);
  await openRoute(page, fleet.url, `#/rollouts/${CONSOLE_CHANNEL}`, `Rollout on ${CONSOLE_CHANNEL}`);
  await page.getByRole('button', { name: 'Halt…' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Reason (required)').fill(`${fleet.outcome.rolledBack[0]!} crashes on start with 1.1.0; investigating before the stable wave goes on`);
  await dialog.getByRole('button', { name: 'Halt rollout' }).click();
  await page.getByRole('alert').filter({ hasText: 'halted' }).waitFor();

  await openRoute(page, fleet.url, '#/', 'Fleet overview');
  await page.getByRole('alert').filter({ hasText: 'halted' }).waitFor();
  const halted = page.getByRole('region', { name: `Channel ${CONSOLE_CHANNEL}` });
  await halted.locator('.version-chart canvas').waitFor();
  // The page down to the end of the halted channel: the halted channel comes first.
  const box = await halted.boundingBox();
  if (box === null) throw new Error('the channel section is not on the page');
  await mkdir(dirname(values.out), { recursive: true });
  await page.screenshot({ path: values.out, fullPage: true, clip: { x: 0, y: 0, width: 1280, height: Math.ceil(box.y + box.height + 16) } });
  console.log(`wrote ${values.out}`);
} finally {
  await browser.close();
  await fleet.close();
}
