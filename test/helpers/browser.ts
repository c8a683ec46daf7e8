import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import axe from 'axe-core';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

/**
 * Debian's Chromium driven by playwright-core, for the console's tests. Playwright's own browser
 * download is never used (these machines cannot fetch it): the tests need the distribution's
 * package (scripts/system-deps.mjs installs it).
 */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/** Headless and quiet: nothing but the pages under test goes over the network. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-quic',
  '--no-first-run',
  '--disable-sync',
];

export const ARTIFACTS_DIR = join('test-artifacts', 'console');

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
}

/** A context at a desktop size (or `width`), with a fixed locale and time zone so screenshots are comparable. */
export async function newContext(browser: Browser, options: { width?: number; bypassCSP?: boolean } = {}): Promise<BrowserContext> {
  return browser.newContext({
    viewport: { width: options.width ?? 1280, height: 900 },
    locale: 'en-GB',
    timezoneId: 'Europe/Berlin',
    bypassCSP: options.bypassCSP ?? false,
  });
}

export interface PageWatch {
  /** Content-Security-Policy violations: the `securitypolicyviolation` events and Chromium's console lines about them. */
  cspViolations: string[];
  /** Uncaught errors in the page. */
  pageErrors: string[];
  /** Loads of a document in the main frame (a reload counts). */
  loads: number;
}

/** Watch a page from before its first load: CSP violations, errors, and how many times it loaded. */
export async function watchPage(page: Page): Promise<PageWatch> {
  const watch: PageWatch = { cspViolations: [], pageErrors: [], loads: 0 };
  // Bindings and init scripts come through the DevTools protocol, which the page's CSP does not govern.
  await page.exposeBinding('reportCspViolation', (_source, text: string) => watch.cspViolations.push(text));
  await page.addInitScript(
    `document.addEventListener('securitypolicyviolation', (event) => reportCspViolation(event.violatedDirective + ' blocked ' + event.blockedURI + ' at ' + event.sourceFile + ':' + event.lineNumber));`,
  );
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) watch.cspViolations.push(message.text());
  });
  page.on('pageerror', (error) => watch.pageErrors.push(error.message));
  page.on('load', () => (watch.loads += 1));
  return watch;
}

/** Sign in through the page's own form. */
export async function signIn(page: Page, baseUrl: string, adminToken: string): Promise<void> {
  await page.goto(`${baseUrl}/console/`);
  await page.getByLabel('Admin token').fill(adminToken);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

/** Go to a console route (`#/workers?pool=edge`) and wait for its heading. */
export async function openRoute(page: Page, baseUrl: string, hash: string, heading: string | RegExp): Promise<void> {
  await page.goto(`${baseUrl}/console/${hash}`);
  await page.getByRole('heading', { level: 1, name: heading }).waitFor();
}

export interface AxeFinding {
  id: string;
  impact: string | null;
  help: string;
  targets: string[];
}

/**
 * Run axe-core over the page (WCAG 2.1 A and AA, and axe's best practices) and return every
 * violation. axe is injected as a script, which the console's CSP forbids: run this only in a
 * context made with `bypassCSP: true`.
 */
export async function runAxe(page: Page): Promise<AxeFinding[]> {
  await page.evaluate(axe.source);
  const results = (await page.evaluate(
    `axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] }, resultTypes: ['violations'] })`,
  )) as axe.AxeResults;
  return results.violations.map((violation) => ({
    id: violation.id,
    impact: violation.impact ?? null,
    help: violation.help,
    targets: violation.nodes.map((node) => node.target.join(' ')),
  }));
}

/** A full-page screenshot at test-artifacts/console/<name>.png; returns the path. */
export async function screenshot(page: Page, name: string, path = join(ARTIFACTS_DIR, `${name}.png`)): Promise<string> {
  await mkdir(dirname(path), { recursive: true });
  await page.screenshot({ path, fullPage: true });
  return path;
}
