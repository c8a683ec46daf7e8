/**
 * The fleet console's session and its guards, against a real server process: sign-in and
 * sign-out in Chromium (the token is not kept, the cookie is HttpOnly and ends on the server),
 * the refusals of docs/console.md for requests without the cookie, without or with a forged
 * X-CSRF-Token, and from another Origin (plain HTTP, as an attacker would send them), and the
 * Content-Security-Policy: on every console response, and a page that runs under it with no
 * violation.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext } from 'playwright-core';
import { request } from 'undici';
import { launchBrowser, newContext, openRoute, signIn, watchPage } from '../helpers/browser.js';
import { ADMIN_LABEL, CONSOLE_CHANNEL, startConsoleFleet, type ConsoleFleet } from '../helpers/console-fleet.js';
import { until } from '../helpers/wait.js';

const SEED = Number(process.env['CONSOLE_TEST_SEED'] ?? Date.now() % 2 ** 31);
console.log(`console fleet seed ${SEED} (CONSOLE_TEST_SEED=${SEED} to replay)`);

const COOKIE = 'bytebiota_console';
const POLL_WAIT_MS = 15_000;
const EXPECTED_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
];

let fleet: ConsoleFleet;
let browser: Browser;

before(async () => {
  [fleet, browser] = await Promise.all([startConsoleFleet({ seed: SEED }), launchBrowser()]);
});

after(async () => {
  await browser?.close();
  await fleet?.close();
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The error code of a refusal (`{"error": {"code"}}`). */
  code: string | null;
}

/** A plain HTTP request, headers exactly as given: what a script on another site or a curl would send. */
async function send(method: 'GET' | 'POST' | 'DELETE', path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Answer> {
  const response = await request(`${fleet.url}${path}`, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.body.text();
  let code: string | null = null;
  try {
    const error = (JSON.parse(text) as { error?: unknown }).error;
    code = typeof error === 'string' ? error : typeof error === 'object' && error !== null ? ((error as { code?: string }).code ?? null) : null;
  } catch {
    // Not JSON: no code.
  }
  return { status: response.statusCode, headers: response.headers, text, code };
}

/** Sign in over HTTP as the page does: the cookie for later requests, and the session's CSRF token. */
async function openSession(): Promise<{ cookie: string; csrf: string }> {
  const answer = await send('POST', '/console/api/session', { origin: fleet.url }, { token: fleet.adminToken });
  assert.equal(answer.status, 200, answer.text);
  const setCookie = [answer.headers['set-cookie']].flat().find((line) => line?.startsWith(`${COOKIE}=`));
  assert.ok(setCookie, 'sign-in sets the session cookie');
  return { cookie: setCookie.split(';')[0]!, csrf: (JSON.parse(answer.text) as { csrf_token: string }).csrf_token };
}

async function cookieOf(context: BrowserContext): Promise<string> {
  const cookie = (await context.cookies(`${fleet.url}/console/`)).find((c) => c.name === COOKIE);
  assert.ok(cookie, 'the browser holds the session cookie');
  return `${cookie.name}=${cookie.value}`;
}

describe('fleet console session and guards', () => {
  test('sign-in through the form keeps no token; the cookie is HttpOnly; sign-out ends the session on the server', async () => {
    const context = await newContext(browser);
    try {
      const page = await context.newPage();
      await page.goto(`${fleet.url}/console/`);
      const tokenField = page.getByLabel('Admin token');
      assert.equal(await tokenField.getAttribute('type'), 'password');

      // Refusals say why, and the field is emptied each time.
      for (const [token, words] of [
        ['bbt_0123456789abcdef_notarealsecretnotarealsecretnotarealsecret00', 'not valid'],
        [fleet.workerTokens['canary']!, 'not an admin token'],
      ] as const) {
        await tokenField.fill(token);
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.getByRole('alert').filter({ hasText: words }).waitFor();
        assert.equal(await tokenField.inputValue(), '');
      }

      await signIn(page, fleet.url, fleet.adminToken);
      await page.getByText(`Signed in as ${ADMIN_LABEL}`).waitFor();
      const secret = fleet.adminToken.slice('bbt_0123456789abcdef_'.length);
      assert.equal(await page.getByLabel('Admin token').count(), 0, 'the form is gone');
      assert.equal((await page.content()).includes(secret), false, 'the token is nowhere in the page');
      assert.equal(await page.evaluate('JSON.stringify([Object.keys(localStorage), Object.keys(sessionStorage)])'), '[[],[]]', 'nothing in web storage');
      const cookie = (await context.cookies(`${fleet.url}/console/`)).find((c) => c.name === COOKIE)!;
      assert.deepEqual({ httpOnly: cookie.httpOnly, sameSite: cookie.sameSite, path: cookie.path }, { httpOnly: true, sameSite: 'Strict', path: '/console' });
      assert.equal(((await page.evaluate('document.cookie')) as string).includes(COOKIE), false, 'scripts cannot read the cookie');

      // A reloaded page gets its CSRF token back from GET /console/api/session: a change still works.
      await page.reload();
      await openRoute(page, fleet.url, `#/rollouts/${CONSOLE_CHANNEL}`, `Rollout on ${CONSOLE_CHANNEL}`);
      for (const [action, state] of [
        ['Pause', 'paused'],
        ['Resume', 'active'],
      ] as const) {
        await page.getByRole('button', { name: `${action}…` }).click();
        await page.getByRole('dialog').getByRole('button', { name: `${action} rollout` }).click();
        await page.getByRole('status').filter({ hasText: `is now ${state}` }).waitFor();
        assert.equal((await fleet.rollout()).state, state);
      }

      const oldCookie = await cookieOf(context);
      assert.equal((await send('GET', '/console/api/overview', { cookie: oldCookie })).status, 200);
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByText('You are signed out.').waitFor();
      await page.getByLabel('Admin token').waitFor();
      const afterSignOut = await send('GET', '/console/api/overview', { cookie: oldCookie });
      assert.deepEqual([afterSignOut.status, afterSignOut.code], [401, 'no_session'], 'the old cookie is refused');
    } finally {
      await context.close();
    }
  });

  test('a page whose session ends elsewhere returns to the sign-in form', async () => {
    const context = await newContext(browser);
    try {
      const page = await context.newPage();
      await signIn(page, fleet.url, fleet.adminToken);
      await openRoute(page, fleet.url, '#/', 'Fleet overview');
      // Ended from outside the page (as another tab's sign-out would): the next poll meets 401 no_session.
      const cookie = await cookieOf(context);
      const session = await send('GET', '/console/api/session', { cookie });
      const csrf = (JSON.parse(session.text) as { csrf_token: string }).csrf_token;
      assert.equal((await send('DELETE', '/console/api/session', { cookie, origin: fleet.url, 'x-csrf-token': csrf })).status, 204);
      await page.getByText('Your session has ended. Sign in again.').waitFor({ timeout: POLL_WAIT_MS });
      await page.getByLabel('Admin token').waitFor();
    } finally {
      await context.close();
    }
  });

  test('requests without the session, with a missing or forged CSRF token, or from another Origin are refused', async () => {
    const mine = await openSession();
    const other = await openSession();
    const pause = `/console/api/rollouts/${CONSOLE_CHANNEL}/pause`;
    const cases: Array<{ name: string; method: 'GET' | 'POST' | 'DELETE'; path: string; headers: Record<string, string>; body?: unknown; status: number; code: string }> = [
      { name: 'no cookie', method: 'GET', path: '/console/api/overview', headers: {}, status: 401, code: 'no_session' },
      { name: 'the admin bearer token instead of the cookie', method: 'GET', path: '/console/api/overview', headers: { authorization: `Bearer ${fleet.adminToken}` }, status: 401, code: 'no_session' },
      { name: 'a made-up cookie', method: 'GET', path: '/console/api/workers', headers: { cookie: `${COOKIE}=bbs_0000000000000000_${'A'.repeat(43)}` }, status: 401, code: 'no_session' },
      { name: 'the cookie on the admin API', method: 'GET', path: '/api/admin/fleet', headers: { cookie: mine.cookie }, status: 401, code: 'unauthorized' },
      { name: 'a change with no cookie', method: 'POST', path: pause, headers: { origin: fleet.url, 'x-csrf-token': mine.csrf }, body: {}, status: 401, code: 'no_session' },
      { name: 'no X-CSRF-Token', method: 'POST', path: pause, headers: { cookie: mine.cookie, origin: fleet.url }, body: {}, status: 403, code: 'csrf_refused' },
      { name: 'a forged X-CSRF-Token', method: 'POST', path: pause, headers: { cookie: mine.cookie, origin: fleet.url, 'x-csrf-token': 'forged-forged-forged' }, body: {}, status: 403, code: 'csrf_refused' },
      { name: "another session's X-CSRF-Token", method: 'POST', path: pause, headers: { cookie: mine.cookie, origin: fleet.url, 'x-csrf-token': other.csrf }, body: {}, status: 403, code: 'csrf_refused' },
      { name: 'a foreign Origin', method: 'POST', path: pause, headers: { cookie: mine.cookie, origin: 'http://evil.example', 'x-csrf-token': mine.csrf }, body: {}, status: 403, code: 'origin_refused' },
      { name: 'no Origin', method: 'POST', path: pause, headers: { cookie: mine.cookie, 'x-csrf-token': mine.csrf }, body: {}, status: 403, code: 'origin_refused' },
      { name: 'sign-out with no X-CSRF-Token', method: 'DELETE', path: '/console/api/session', headers: { cookie: mine.cookie, origin: fleet.url }, status: 403, code: 'csrf_refused' },
      { name: 'sign-in from a foreign Origin', method: 'POST', path: '/console/api/session', headers: { origin: 'http://evil.example' }, body: { token: fleet.adminToken }, status: 403, code: 'origin_refused' },
      { name: 'sign-in with no Origin', method: 'POST', path: '/console/api/session', headers: {}, body: { token: fleet.adminToken }, status: 403, code: 'origin_refused' },
      { name: 'sign-in with a worker token', method: 'POST', path: '/console/api/session', headers: { origin: fleet.url }, body: { token: fleet.workerTokens['canary'] }, status: 403, code: 'forbidden' },
      { name: 'sign-in with an unknown token', method: 'POST', path: '/console/api/session', headers: { origin: fleet.url }, body: { token: `bbt_0123456789abcdef_${'x'.repeat(43)}` }, status: 401, code: 'invalid_token' },
    ];
    for (const { name, method, path, headers, body, status, code } of cases) {
      const answer = await send(method, path, headers, body);
      assert.deepEqual([answer.status, answer.code], [status, code], `${name}: ${answer.text}`);
      assert.equal(answer.headers['set-cookie'], undefined, `${name}: no cookie is set by a refusal`);
    }
    // Nothing was changed, and the session survived the refused sign-out.
    assert.equal((await fleet.rollout()).state, 'active');
    assert.equal((await send('GET', '/console/api/session', { cookie: mine.cookie })).status, 200);
    // The same change with the cookie, the CSRF token and this server's Origin goes through.
    const allowed = await send('POST', pause, { cookie: mine.cookie, origin: fleet.url, 'x-csrf-token': mine.csrf }, { reason: 'the positive control' });
    assert.equal(allowed.status, 200, allowed.text);
    assert.equal((JSON.parse(allowed.text) as { state: string }).state, 'paused');
    const resumed = await send('POST', `/console/api/rollouts/${CONSOLE_CHANNEL}/resume`, { cookie: mine.cookie, origin: fleet.url, 'x-csrf-token': mine.csrf }, {});
    assert.equal(resumed.status, 200, resumed.text);
  });

  test('every console response carries the strict CSP; the page runs under it with no violation', async () => {
    const { cookie } = await openSession();
    const responses: Array<[string, Record<string, string>]> = [
      ['/console/', {}],
      ['/console/assets/app.js', {}],
      ['/console/assets/app.css', {}],
      ['/console/api/overview', {}],
      ['/console/api/overview', { cookie }],
      ['/console/api/workers?limit=1', { cookie }],
    ];
    for (const [path, headers] of responses) {
      const answer = await send('GET', path, headers);
      const csp = String(answer.headers['content-security-policy'] ?? '');
      assert.deepEqual(csp.split(';').map((directive) => directive.trim()).filter((d) => d !== '').sort(), [...EXPECTED_CSP].sort(), `the CSP of ${path}`);
      assert.equal(answer.headers['x-content-type-options'], 'nosniff', path);
      assert.equal(answer.headers['referrer-policy'], 'no-referrer', path);
    }
    const html = (await send('GET', '/console/')).text;
    assert.doesNotMatch(html, /<style|\sstyle=/i, 'no inline style in the page');
    for (const tag of html.match(/<script[^>]*>/gi) ?? []) assert.match(tag, /\ssrc="\/console\/assets\/app\.js"/, `only the console's own script: ${tag}`);

    // A normal context: the browser enforces the CSP. Every page, the chart and the dialog.
    const context = await newContext(browser);
    try {
      const page = await context.newPage();
      const watch = await watchPage(page);
      await signIn(page, fleet.url, fleet.adminToken);
      await openRoute(page, fleet.url, '#/', 'Fleet overview');
      // uPlot sets inline styles from script (allowed: the CSP governs markup, not the CSSOM).
      await page.locator('.version-chart canvas').first().waitFor();
      await openRoute(page, fleet.url, `#/rollouts/${CONSOLE_CHANNEL}`, `Rollout on ${CONSOLE_CHANNEL}`);
      await page.getByRole('button', { name: 'Halt…' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
      await openRoute(page, fleet.url, '#/workers', 'Workers');
      await page.locator('.match-count').waitFor();
      await page.getByRole('link', { name: fleet.outcome.updated[0]!, exact: true }).click();
      await page.locator('.offer').waitFor();
      await openRoute(page, fleet.url, '#/failures', 'Failures');
      await page.getByRole('table').waitFor();
      assert.deepEqual(watch.cspViolations, [], 'no CSP violation');
      assert.deepEqual(watch.pageErrors, [], 'no uncaught error');

      // The watch does see a violation when there is one: an inline style a script adds is blocked.
      await page.evaluate("document.head.appendChild(Object.assign(document.createElement('style'), { textContent: 'body { color: red }' }))");
      await until('the control violation to be reported', () => watch.cspViolations.length > 0, POLL_WAIT_MS);
      assert.match(watch.cspViolations.join('\n'), /style-src/);
    } finally {
      await context.close();
    }
  });
});
