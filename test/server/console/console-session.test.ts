/**
 * Console sessions through the real app: sign-in exchanges an admin token for a cookie, the
 * cookie alone admits the console's routes (never the bearer routes), and a change needs this
 * server's Origin and the session's CSRF token. A session ends at sign-out, at expiry and when
 * its admin token is revoked.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { bearer, startTestServer, type TestServer } from '../../helpers/server-app.js';
import { CONSOLE_COOKIE } from '../../../src/server/console/sessions.js';

/** inject's default Host is localhost:80, so that is this server's origin. */
const ORIGIN = 'http://localhost:80';

let server: TestServer;

before(async () => {
  server = await startTestServer({ console: { sessionTtlSeconds: 3600, sampleOnTimer: false } });
});
after(async () => server.close());

async function signIn(token = server.tokens.admin) {
  const response = await server.app.inject({ method: 'POST', url: '/console/api/session', headers: { origin: ORIGIN }, payload: { token } });
  assert.equal(response.statusCode, 200, response.body);
  const cookie = response.cookies.find((c) => c.name === CONSOLE_COOKIE);
  assert.ok(cookie, 'sign-in sets the session cookie');
  return { cookie, body: response.json() as { csrf_token: string; token_id: string; label: string | null; expires_at: string } };
}

function code(response: { json(): unknown }): string {
  return (response.json() as { error: { code: string } }).error.code;
}

describe('console sessions', () => {
  test('sign-in sets an HttpOnly, SameSite=Strict cookie on /console and answers who and the CSRF token', async () => {
    const { cookie, body } = await signIn();
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(cookie.path, '/console');
    assert.equal(cookie.secure, undefined, 'plain HTTP: not Secure');
    assert.match(cookie.value, /^bbs_[0-9a-f]{16}_/);
    assert.ok(body.csrf_token.length >= 40);
    assert.equal(Date.parse(body.expires_at), server.clock.now().getTime() + 3600_000);
    const logged = JSON.stringify(server.logs());
    assert.ok(!logged.includes(cookie.value), 'the cookie never reaches the logs');
    assert.ok(!logged.includes(server.tokens.admin), 'the admin token never reaches the logs');
    assert.ok(server.logs().some((line) => line['event'] === 'console_signed_in' && line['token_id'] === body.token_id));
    const again = await server.app.inject({ method: 'GET', url: '/console/api/session', cookies: { [CONSOLE_COOKIE]: cookie.value } });
    assert.equal(again.statusCode, 200);
    assert.equal(again.json().csrf_token, body.csrf_token, 'a reloaded page gets the same CSRF token back');
  });

  test('sign-in refuses a wrong token (401), a worker token (403) and a foreign or missing Origin (403)', async () => {
    const wrong = await server.app.inject({ method: 'POST', url: '/console/api/session', headers: { origin: ORIGIN }, payload: { token: 'bbt_0123456789abcdef_' + 'A'.repeat(43) } });
    assert.equal(wrong.statusCode, 401);
    assert.equal(code(wrong), 'invalid_token');
    const worker = await server.app.inject({ method: 'POST', url: '/console/api/session', headers: { origin: ORIGIN }, payload: { token: server.tokens.canary } });
    assert.equal(worker.statusCode, 403);
    assert.equal(code(worker), 'forbidden');
    const foreign = await server.app.inject({ method: 'POST', url: '/console/api/session', headers: { origin: 'https://evil.example' }, payload: { token: server.tokens.admin } });
    assert.equal(foreign.statusCode, 403);
    assert.equal(code(foreign), 'origin_refused');
    const none = await server.app.inject({ method: 'POST', url: '/console/api/session', payload: { token: server.tokens.admin } });
    assert.equal(code(none), 'origin_refused');
    for (const response of [wrong, worker, foreign, none]) assert.equal(response.cookies.length, 0, 'no cookie for a refused sign-in');
  });

  test('the cookie admits console routes only; a bearer token does not admit console routes', async () => {
    const { cookie } = await signIn();
    const viaCookie = await server.app.inject({ method: 'GET', url: '/console/api/overview', cookies: { [CONSOLE_COOKIE]: cookie.value } });
    assert.equal(viaCookie.statusCode, 200);
    const adminWithCookie = await server.app.inject({ method: 'GET', url: '/api/admin/fleet', cookies: { [CONSOLE_COOKIE]: cookie.value } });
    assert.equal(adminWithCookie.statusCode, 401, 'the bearer admin routes never accept the cookie');
    const consoleWithBearer = await server.app.inject({ method: 'GET', url: '/console/api/overview', headers: bearer(server.tokens.admin) });
    assert.equal(consoleWithBearer.statusCode, 401);
    assert.equal(code(consoleWithBearer), 'no_session');
    const forged = await server.app.inject({ method: 'GET', url: '/console/api/overview', cookies: { [CONSOLE_COOKIE]: cookie.value.slice(0, -4) + 'AAAA' } });
    assert.equal(code(forged), 'no_session');
  });

  test('a change needs the CSRF header and this server\'s Origin', async () => {
    const { cookie, body } = await signIn();
    const cookies = { [CONSOLE_COOKIE]: cookie.value };
    const url = '/console/api/rollouts/stable/pause';
    const noCsrf = await server.app.inject({ method: 'POST', url, cookies, headers: { origin: ORIGIN }, payload: {} });
    assert.equal(noCsrf.statusCode, 403);
    assert.equal(code(noCsrf), 'csrf_refused');
    const forgedCsrf = await server.app.inject({ method: 'POST', url, cookies, headers: { origin: ORIGIN, 'x-csrf-token': body.csrf_token.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) }, payload: {} });
    assert.equal(code(forgedCsrf), 'csrf_refused');
    const foreign = await server.app.inject({ method: 'POST', url, cookies, headers: { origin: 'http://localhost:8081', 'x-csrf-token': body.csrf_token }, payload: {} });
    assert.equal(code(foreign), 'origin_refused');
    const allowed = await server.app.inject({ method: 'POST', url, cookies, headers: { origin: ORIGIN, 'x-csrf-token': body.csrf_token }, payload: {} });
    assert.equal(allowed.statusCode, 404, 'past the guard: there is simply no rollout to pause');
    assert.equal(code(allowed), 'no_rollout');
  });

  test('sign-out ends the session; the old cookie is refused afterwards', async () => {
    const { cookie, body } = await signIn();
    const cookies = { [CONSOLE_COOKIE]: cookie.value };
    const out = await server.app.inject({ method: 'DELETE', url: '/console/api/session', cookies, headers: { origin: ORIGIN, 'x-csrf-token': body.csrf_token } });
    assert.equal(out.statusCode, 204);
    assert.equal(out.cookies.find((c) => c.name === CONSOLE_COOKIE)?.value, '', 'the cookie is cleared');
    const after = await server.app.inject({ method: 'GET', url: '/console/api/overview', cookies });
    assert.equal(after.statusCode, 401);
    assert.equal(code(after), 'no_session');
  });

  test('revoking the admin token ends its sessions at once', async () => {
    const extra = await server.addToken('admin', null);
    const { cookie } = await signIn(extra.token);
    const cookies = { [CONSOLE_COOKIE]: cookie.value };
    assert.equal((await server.app.inject({ method: 'GET', url: '/console/api/session', cookies })).statusCode, 200);
    await server.fleet.revokeToken(extra.id, server.clock.now());
    const after = await server.app.inject({ method: 'GET', url: '/console/api/session', cookies });
    assert.equal(after.statusCode, 401);
    assert.equal(code(after), 'no_session');
  });

  test('a session expires', async () => {
    const { cookie } = await signIn();
    const cookies = { [CONSOLE_COOKIE]: cookie.value };
    const start = server.clock.now();
    try {
      server.clock.set(new Date(start.getTime() + 3600_000 - 1000));
      assert.equal((await server.app.inject({ method: 'GET', url: '/console/api/session', cookies })).statusCode, 200);
      server.clock.set(new Date(start.getTime() + 3600_000));
      assert.equal((await server.app.inject({ method: 'GET', url: '/console/api/session', cookies })).statusCode, 401);
    } finally {
      server.clock.set(start);
    }
  });

  test('the cookie is Secure when a trusted TLS-terminating proxy says the request came over https', async () => {
    const proxied = await startTestServer({ trustedProxies: ['127.0.0.1'], console: { sampleOnTimer: false } });
    try {
      const headers = { origin: 'https://fleet.example', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'fleet.example', 'x-forwarded-for': '203.0.113.9' };
      const response = await proxied.app.inject({ method: 'POST', url: '/console/api/session', remoteAddress: '127.0.0.1', headers, payload: { token: proxied.tokens.admin } });
      assert.equal(response.statusCode, 200, response.body);
      assert.equal(response.cookies.find((c) => c.name === CONSOLE_COOKIE)?.secure, true);
      // The same headers from an address that is not a trusted proxy are not believed.
      const untrusted = await proxied.app.inject({ method: 'POST', url: '/console/api/session', remoteAddress: '198.51.100.7', headers, payload: { token: proxied.tokens.admin } });
      assert.equal(untrusted.statusCode, 403);
      assert.equal(code(untrusted), 'origin_refused');
      assert.match(untrusted.json().error.message, /--trusted-proxy/, 'the refusal says what to change');
    } finally {
      await proxied.close();
    }
  });

  test('every console response carries the strict Content-Security-Policy', async () => {
    for (const url of ['/console/', '/console/api/overview', '/console/assets/missing.js']) {
      const response = await server.app.inject({ method: 'GET', url });
      const csp = String(response.headers['content-security-policy']);
      assert.match(csp, /default-src 'none'/, url);
      assert.match(csp, /script-src 'self'(;|$)/, url);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, url);
      assert.match(csp, /frame-ancestors 'none'/, url);
      assert.equal(response.headers['x-content-type-options'], 'nosniff');
    }
  });
});
