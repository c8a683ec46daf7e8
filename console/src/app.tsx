import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ConsoleApi } from './api/client';
import { ApiContext, SessionContext } from './api/context';
import type { Session } from './api/types';
import { NavBar } from './components/nav-bar';
import { FailuresPage } from './pages/failures';
import { NotFoundPage } from './pages/not-found';
import { OverviewPage } from './pages/overview';
import { RolloutsPage } from './pages/rollouts';
import { SignInPage } from './pages/sign-in';
import { WorkerPage } from './pages/worker';
import { WorkersPage } from './pages/workers';
import { routeIdentity, useRoute, type Route } from './router';

type SessionState =
  | { kind: 'checking' }
  | { kind: 'signed_out'; notice: string | null }
  | { kind: 'signed_in'; session: Session; justSignedIn: boolean }
  | { kind: 'unreachable'; message: string };

/**
 * The page: asks the server whether this browser has a session (GET /console/api/session), then
 * shows the sign-in form or the console. Any request that meets `401 no_session` brings the
 * form back.
 */
export function App() {
  const [state, setState] = useState<SessionState>({ kind: 'checking' });
  const api = useMemo(
    () => new ConsoleApi({ onSessionLost: () => setState({ kind: 'signed_out', notice: 'Your session has ended. Sign in again.' }) }),
    [],
  );

  useEffect(() => {
    api.currentSession().then(
      (session) => setState(session === null ? { kind: 'signed_out', notice: null } : { kind: 'signed_in', session, justSignedIn: false }),
      (err: unknown) => setState({ kind: 'unreachable', message: String(err) }),
    );
  }, [api]);

  const signOut = async () => {
    try {
      await api.signOut();
    } catch {
      // Already ended on the server (expired, revoked): signed out all the same.
    }
    setState({ kind: 'signed_out', notice: 'You are signed out.' });
  };

  switch (state.kind) {
    case 'checking':
      return (
        <main id="main" tabIndex={-1}>
          <p role="status">Loading…</p>
        </main>
      );
    case 'unreachable':
      return (
        <main id="main" tabIndex={-1}>
          <h1>ByteBiota fleet console</h1>
          <p class="notice notice-error" role="alert">
            The server could not be reached: {state.message}. Reload the page to try again.
          </p>
        </main>
      );
    case 'signed_out':
      return <SignInPage api={api} notice={state.notice} onSignedIn={(session) => setState({ kind: 'signed_in', session, justSignedIn: true })} />;
    case 'signed_in':
      return (
        <ApiContext.Provider value={api}>
          <SessionContext.Provider value={state.session}>
            <Console session={state.session} focusFirstHeading={state.justSignedIn} onSignOut={() => void signOut()} />
          </SessionContext.Provider>
        </ApiContext.Provider>
      );
  }
}

function PageFor({ route }: { route: Route }) {
  switch (route.page) {
    case 'overview':
      return <OverviewPage />;
    case 'rollouts':
      return <RolloutsPage channel={route.channel} />;
    case 'workers':
      return <WorkersPage filters={route.filters} />;
    case 'worker':
      return <WorkerPage workerId={route.workerId} />;
    case 'failures':
      return <FailuresPage hours={route.hours} />;
    case 'not_found':
      return <NotFoundPage hash={route.hash} />;
  }
}

/**
 * The signed-in console: header with navigation, and the page of the current route.
 * `focusFirstHeading`: the sign-in form just went away with the focus in it, so the first page's
 * heading takes the focus; a page loaded signed in leaves the focus where the browser puts it.
 */
function Console({ session, focusFirstHeading, onSignOut }: { session: Session; focusFirstHeading: boolean; onSignOut: () => void }) {
  const route = useRoute();
  const identity = routeIdentity(route);
  const firstRender = useRef(true);

  // A new page moves focus to its heading, as a page load would, so a screen reader starts there.
  // A filter change on the same page does not: the focus stays in the field being typed in.
  useEffect(() => {
    const first = firstRender.current;
    firstRender.current = false;
    if (first && !focusFirstHeading) return;
    document.querySelector<HTMLElement>('main h1')?.focus();
  }, [identity]);

  return (
    <>
      <NavBar route={route} session={session} onSignOut={onSignOut} />
      <main id="main" tabIndex={-1}>
        <PageFor key={identity} route={route} />
      </main>
    </>
  );
}
