import type { Session } from './types';

/**
 * The page's only way to the server (docs/console.md). It keeps the session's CSRF token in
 * memory, and nowhere else, and sends it with every state change; the session itself is an
 * HttpOnly cookie the page never sees. Every `401 no_session` is reported to `onSessionLost`,
 * whichever request met it, so that the page returns to the sign-in form.
 */

/** A refusal from the server, with its stable `code`; the message is the server's, for people. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The code of a refusal whose session has ended (signed out, expired, token revoked). */
export const NO_SESSION = 'no_session';

export type Query = Record<string, string | number | undefined>;

export interface ConsoleApiOptions {
  onSessionLost: () => void;
}

/** The error body, in either shape the server's routes write: `{error, message}` or `{error: {code, message}}`. */
function refusalOf(status: number, body: unknown): ApiError {
  const fallback = `the server answered ${status}`;
  if (typeof body === 'object' && body !== null && 'error' in body) {
    const { error } = body as { error: unknown; message?: unknown };
    const message = (body as { message?: unknown }).message;
    if (typeof error === 'string') return new ApiError(status, error, typeof message === 'string' ? message : fallback);
    if (typeof error === 'object' && error !== null) {
      const nested = error as { code?: unknown; message?: unknown };
      if (typeof nested.code === 'string') return new ApiError(status, nested.code, typeof nested.message === 'string' ? nested.message : fallback);
    }
  }
  return new ApiError(status, 'http_error', fallback);
}

export function withQuery(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== '') params.set(name, String(value));
  }
  const text = params.toString();
  return text === '' ? path : `${path}?${text}`;
}

export class ConsoleApi {
  #csrfToken: string | null = null;
  readonly #onSessionLost: () => void;

  constructor(options: ConsoleApiOptions) {
    this.#onSessionLost = options.onSessionLost;
  }

  /** The session this page holds, or null (401): decides between the sign-in form and the console. */
  async currentSession(): Promise<Session | null> {
    try {
      return this.#remember(await this.#send<Session>('GET', '/console/api/session', { reportLostSession: false }));
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return null;
      throw err;
    }
  }

  /**
   * Sign in with an admin token. The token goes into this one request body and is not kept:
   * from here on the cookie and the CSRF token stand for it.
   */
  async signIn(adminToken: string): Promise<Session> {
    return this.#remember(await this.#send<Session>('POST', '/console/api/session', { body: { token: adminToken }, reportLostSession: false }));
  }

  async signOut(): Promise<void> {
    try {
      await this.#send('DELETE', '/console/api/session', { reportLostSession: false });
    } finally {
      this.#csrfToken = null;
    }
  }

  /** Forget the CSRF token of a session the server no longer knows. */
  forgetSession(): void {
    this.#csrfToken = null;
  }

  get<T>(path: string, query?: Query, signal?: AbortSignal): Promise<T> {
    return this.#send<T>('GET', withQuery(path, query), { signal });
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.#send<T>('POST', path, { body });
  }

  #remember(session: Session): Session {
    this.#csrfToken = session.csrf_token;
    return session;
  }

  async #send<T>(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    options: { body?: unknown; signal?: AbortSignal | undefined; reportLostSession?: boolean },
  ): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    // Sign-in has no session yet, so no CSRF token; every later change carries it.
    if (method !== 'GET' && this.#csrfToken !== null) headers['x-csrf-token'] = this.#csrfToken;
    // Plain fetch: GETs of the overview revalidate through the browser's cache with the server's
    // ETag (Cache-Control: no-cache), so a poll that changed nothing costs a 304.
    const response = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    let body: unknown = null;
    try {
      body = text === '' ? null : (JSON.parse(text) as unknown);
    } catch {
      // Not JSON (a proxy's error page, say): the status alone says what happened.
      body = null;
    }
    if (!response.ok) {
      const refusal = refusalOf(response.status, body);
      if (refusal.code === NO_SESSION && options.reportLostSession !== false) {
        this.#csrfToken = null;
        this.#onSessionLost();
      }
      throw refusal;
    }
    return body as T;
  }
}
