import type { Session } from '../api/types';
import type { Route } from '../router';

const LINKS: ReadonlyArray<{ href: string; label: string; pages: ReadonlyArray<Route['page']> }> = [
  { href: '#/', label: 'Overview', pages: ['overview'] },
  { href: '#/rollouts', label: 'Rollouts', pages: ['rollouts'] },
  { href: '#/workers', label: 'Workers', pages: ['workers', 'worker'] },
  { href: '#/failures', label: 'Failures', pages: ['failures'] },
];

function skipToMain(event: MouseEvent): void {
  // A plain #main link would replace the route in the hash: move focus instead.
  event.preventDefault();
  document.getElementById('main')?.focus();
}

/** The page header: skip link, the console's name, the sections, who is signed in, and sign-out. */
export function NavBar({ route, session, onSignOut }: { route: Route; session: Session; onSignOut: () => void }) {
  return (
    <header class="top">
      <a class="skip-link" href="#main" onClick={skipToMain}>
        Skip to the content
      </a>
      <div class="top-inner">
        <p class="brand">ByteBiota fleet</p>
        <nav aria-label="Console sections">
          <ul>
            {LINKS.map((link) => (
              <li key={link.href}>
                <a href={link.href} aria-current={link.pages.includes(route.page) ? 'page' : undefined}>
                  {link.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span class="signed-in">
            Signed in as <strong>{session.label ?? `token ${session.token_id}`}</strong>
          </span>
          <button type="button" class="sign-out" onClick={onSignOut}>
            Sign out
          </button>
        </div>
      </div>
    </header>
  );
}
