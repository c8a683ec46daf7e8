import { useEffect, useState } from 'preact/hooks';

/**
 * Hash routes, so that every view has a link and the server serves one page:
 *   #/                     overview
 *   #/rollouts             every channel's newest rollout
 *   #/rollouts/<channel>   one channel's rollout, its pools and the controls
 *   #/workers?<filters>    the worker table; the filters are in the link
 *   #/workers/<id>         one worker
 *   #/failures?hours=N     failures grouped
 */

export const WORKER_SEEN = ['live', 'unseen'] as const;
export type WorkerSeen = (typeof WORKER_SEEN)[number];

/** The worker table's filters, as GET /console/api/workers takes them (empty: not filtered). */
export interface WorkerFilters {
  q: string;
  pool: string;
  version: string;
  channel: string;
  state: string;
  update_state: string;
  seen: string;
  limit: number;
}

export const WORKER_PAGE_SIZES = [10, 25, 50, 100, 200] as const;
export const DEFAULT_WORKER_PAGE_SIZE = 50;
export const FAILURE_HOURS = [1, 6, 24, 72, 168, 720] as const;
export const DEFAULT_FAILURE_HOURS = 24;

export type Route =
  | { page: 'overview' }
  | { page: 'rollouts'; channel: string | null }
  | { page: 'workers'; filters: WorkerFilters }
  | { page: 'worker'; workerId: string }
  | { page: 'failures'; hours: number }
  | { page: 'not_found'; hash: string };

const FILTER_NAMES = ['q', 'pool', 'version', 'channel', 'state', 'update_state', 'seen'] as const;

export function emptyFilters(): WorkerFilters {
  return { q: '', pool: '', version: '', channel: '', state: '', update_state: '', seen: '', limit: DEFAULT_WORKER_PAGE_SIZE };
}

function decodeSegment(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

export function parseRoute(hash: string): Route {
  const text = hash.startsWith('#') ? hash.slice(1) : hash;
  const queryAt = text.indexOf('?');
  const path = queryAt === -1 ? text : text.slice(0, queryAt);
  const queryText = queryAt === -1 ? '' : text.slice(queryAt + 1);
  const query = new URLSearchParams(queryText);
  const segments = path.split('/').filter((segment) => segment !== '');
  const [first, second, ...rest] = segments;
  if (rest.length > 0) return { page: 'not_found', hash };
  if (first === undefined) return { page: 'overview' };
  if (first === 'rollouts') {
    if (second === undefined) return { page: 'rollouts', channel: null };
    const channel = decodeSegment(second);
    return channel === null ? { page: 'not_found', hash } : { page: 'rollouts', channel };
  }
  if (first === 'workers') {
    if (second !== undefined) {
      const workerId = decodeSegment(second);
      return workerId === null ? { page: 'not_found', hash } : { page: 'worker', workerId };
    }
    const filters = emptyFilters();
    for (const name of FILTER_NAMES) filters[name] = query.get(name) ?? '';
    const limit = Number(query.get('limit'));
    if ((WORKER_PAGE_SIZES as readonly number[]).includes(limit)) filters.limit = limit;
    return { page: 'workers', filters };
  }
  if (first === 'failures' && second === undefined) {
    const hours = Number(query.get('hours'));
    return { page: 'failures', hours: Number.isInteger(hours) && hours >= 1 && hours <= 720 ? hours : DEFAULT_FAILURE_HOURS };
  }
  return { page: 'not_found', hash };
}

/** The link of a route: what parseRoute reads back. */
export function hrefFor(route: Route): string {
  switch (route.page) {
    case 'overview':
      return '#/';
    case 'rollouts':
      return route.channel === null ? '#/rollouts' : `#/rollouts/${encodeURIComponent(route.channel)}`;
    case 'workers': {
      const query = new URLSearchParams();
      for (const name of FILTER_NAMES) if (route.filters[name] !== '') query.set(name, route.filters[name]);
      if (route.filters.limit !== DEFAULT_WORKER_PAGE_SIZE) query.set('limit', String(route.filters.limit));
      const text = query.toString();
      return text === '' ? '#/workers' : `#/workers?${text}`;
    }
    case 'worker':
      return `#/workers/${encodeURIComponent(route.workerId)}`;
    case 'failures':
      return route.hours === DEFAULT_FAILURE_HOURS ? '#/failures' : `#/failures?hours=${route.hours}`;
    case 'not_found':
      return route.hash;
  }
}

export function workerHref(workerId: string): string {
  return hrefFor({ page: 'worker', workerId });
}

export function workersHref(filters: Partial<WorkerFilters>): string {
  return hrefFor({ page: 'workers', filters: { ...emptyFilters(), ...filters } });
}

export function rolloutHref(channel: string): string {
  return hrefFor({ page: 'rollouts', channel });
}

/** Which page and which subject: what moves focus to a new heading (a filter change does not). */
export function routeIdentity(route: Route): string {
  switch (route.page) {
    case 'rollouts':
      return `rollouts:${route.channel ?? ''}`;
    case 'worker':
      return `worker:${route.workerId}`;
    default:
      return route.page;
  }
}

/** `replaceState` fires no hashchange: the router listens for this as well. */
const ROUTE_REPLACED = 'console-route-replaced';

/**
 * Go to `href`. `replace` changes the link without a new history entry: filters change the
 * address as they are typed, and Back should not step through every keystroke.
 */
export function navigate(href: string, options: { replace?: boolean } = {}): void {
  if (options.replace) {
    history.replaceState(history.state, '', href);
    window.dispatchEvent(new Event(ROUTE_REPLACED));
  } else {
    location.hash = href;
  }
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const update = () => setRoute(parseRoute(location.hash));
    window.addEventListener('hashchange', update);
    window.addEventListener(ROUTE_REPLACED, update);
    // The hash may have changed between the first render and now, with nobody listening yet.
    update();
    return () => {
      window.removeEventListener('hashchange', update);
      window.removeEventListener(ROUTE_REPLACED, update);
    };
  }, []);
  return route;
}
