import { useId, useState } from 'preact/hooks';
import type { TargetedSubmitEvent } from 'preact';
import { ApiError, type ConsoleApi } from '../api/client';
import type { Session } from '../api/types';

const REFUSALS: Record<string, string> = {
  invalid_token: 'That token is not valid: it is unknown, revoked or mistyped.',
  forbidden: 'That token is not an admin token. The console needs one (bytebiota-server token create --role admin).',
};

/**
 * The sign-in form. The admin token is read from the field when the form is sent, sent once,
 * and the field is emptied whatever the answer: the page keeps no copy of it.
 */
export function SignInPage({ api, onSignedIn, notice }: { api: ConsoleApi; onSignedIn: (session: Session) => void; notice: string | null }) {
  const tokenId = useId();
  const hintId = useId();
  const [busy, setBusy] = useState(false);
  const [refusal, setRefusal] = useState<string | null>(null);

  const submit = async (event: TargetedSubmitEvent<HTMLFormElement>) => {
    event.preventDefault();
    const field = event.currentTarget.elements.namedItem('token') as HTMLInputElement;
    const token = field.value.trim();
    field.value = '';
    if (token === '') {
      setRefusal('Paste an admin token first.');
      field.focus();
      return;
    }
    setBusy(true);
    setRefusal(null);
    try {
      onSignedIn(await api.signIn(token));
    } catch (err) {
      setRefusal(err instanceof ApiError ? (REFUSALS[err.code] ?? `${err.message} (${err.code})`) : `Could not reach the server: ${String(err)}`);
      setBusy(false);
      field.focus();
    }
  };

  return (
    <main id="main" class="sign-in" tabIndex={-1}>
      <h1>ByteBiota fleet console</h1>
      {notice !== null ? (
        <p class="notice" role="status">
          {notice}
        </p>
      ) : null}
      <form onSubmit={(event) => void submit(event)}>
        <div class="field">
          <label for={tokenId}>Admin token</label>
          <input id={tokenId} name="token" type="password" autoComplete="off" spellcheck={false} aria-describedby={hintId} required autoFocus />
          <p id={hintId} class="hint">
            The token is sent once to open a session and is not kept by this page.
          </p>
        </div>
        {refusal !== null ? (
          <p class="notice notice-error" role="alert">
            {refusal}
          </p>
        ) : null}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
