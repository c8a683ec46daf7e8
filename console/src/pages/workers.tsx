import { useEffect, useId, useState } from 'preact/hooks';
import type { TargetedEvent } from 'preact';
import { useApi } from '../api/context';
import { UPDATE_STATES, WORKER_STATES } from '../api/states';
import type { WorkerFacets, WorkerPage, WorkerRow } from '../api/types';
import { useLoaded } from '../api/use-loaded';
import { LoadStatus } from '../components/load-status';
import { LocalTime } from '../components/local-time';
import { ScrollTable } from '../components/scroll-table';
import { countOf, updateStateLabel } from '../format';
import { hrefFor, navigate, WORKER_PAGE_SIZES, WORKER_SEEN, workerHref, workersHref, type WorkerFilters } from '../router';
import { usePageTitle } from './page-title';

type SelectFilter = 'pool' | 'version' | 'channel' | 'state' | 'update_state' | 'seen';

function FilterSelect({
  name,
  label,
  value,
  options,
  onChange,
}: {
  name: SelectFilter;
  label: string;
  value: string;
  options: ReadonlyArray<{ value: string; label: string }>;
  onChange: (name: SelectFilter, value: string) => void;
}) {
  const id = useId();
  // A value from a link that the facets do not list (a pool with no workers left) stays selectable.
  const all = value !== '' && !options.some((option) => option.value === value) ? [...options, { value, label: value }] : options;
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <select id={id} name={name} value={value} onChange={(event: TargetedEvent<HTMLSelectElement>) => onChange(name, event.currentTarget.value)}>
        <option value="">any</option>
        {all.map((option) => (
          <option key={option.value} value={option.value}>
            {option.label}
          </option>
        ))}
      </select>
    </div>
  );
}

function plain(values: readonly string[]) {
  return values.map((value) => ({ value, label: value }));
}

function UpdateCell({ update }: { update: WorkerRow['update'] }) {
  if (update === null) return <td class="muted">none</td>;
  return (
    <td>
      {updateStateLabel(update.state)} to {update.to_version}
      {update.download_percent !== undefined ? ` (${Math.round(update.download_percent)} %)` : ''}
      {update.reason !== undefined ? <span class="muted"> ({update.reason})</span> : null}
    </td>
  );
}

function WorkerTable({ workers }: { workers: readonly WorkerRow[] }) {
  return (
    <ScrollTable caption="Workers, by worker id" className="workers">
      <thead>
        <tr>
          <th scope="col">Worker</th>
          <th scope="col">Pool</th>
          <th scope="col">Channel</th>
          <th scope="col">Version</th>
          <th scope="col">State</th>
          <th scope="col">Update</th>
          <th scope="col">Last seen</th>
        </tr>
      </thead>
      <tbody>
        {workers.length === 0 ? (
          <tr>
            <td colSpan={7}>No worker matches these filters.</td>
          </tr>
        ) : (
          workers.map((worker) => (
            <tr key={worker.worker_id}>
              <th scope="row">
                <a href={workerHref(worker.worker_id)}>{worker.worker_id}</a>
              </th>
              <td>{worker.pool}</td>
              <td>{worker.channel ?? <span class="muted">none</span>}</td>
              <td>{worker.version}</td>
              <td>{worker.state}</td>
              <UpdateCell update={worker.update} />
              <td>
                <LocalTime iso={worker.last_seen_at} />
              </td>
            </tr>
          ))
        )}
      </tbody>
    </ScrollTable>
  );
}

/**
 * Where the table is in its pages: the cursor of this page (none: the first), and the cursors of
 * the pages before it, so that Previous can go back (the server's cursor only goes forward).
 * It belongs to one set of filters; other filters start again from the first page.
 */
interface Paging {
  filtersHref: string;
  after: string | null;
  before: Array<string | null>;
}

/** `#/workers?<filters>`: the worker table, filtered by what the link says, a page at a time. */
export function WorkersPage({ filters }: { filters: WorkerFilters }) {
  usePageTitle('Workers');
  const api = useApi();
  const searchId = useId();
  const filtersHref = hrefFor({ page: 'workers', filters });
  const [paging, setPaging] = useState<Paging>({ filtersHref, after: null, before: [] });
  const current = paging.filtersHref === filtersHref ? paging : { filtersHref, after: null, before: [] };
  const [search, setSearch] = useState(filters.q);
  // The link changed (Back, or a link from elsewhere): the box shows what the table is filtered by.
  useEffect(() => setSearch(filters.q), [filters.q]);

  const facets = useLoaded('facets', (signal) => api.get<WorkerFacets>('/console/api/workers/facets', undefined, signal));
  // The answer carries the paging it was asked with: while the next page loads, what is shown
  // (rows, their numbers, the pager) stays the page before, consistent with itself.
  const page = useLoaded(
    `${filtersHref}|${current.after ?? ''}`,
    async (signal) => ({
      paging: current,
      answer: await api.get<WorkerPage>(
        '/console/api/workers',
        {
          q: filters.q,
          pool: filters.pool,
          version: filters.version,
          channel: filters.channel,
          state: filters.state,
          update_state: filters.update_state,
          seen: filters.seen,
          limit: filters.limit,
          after: current.after ?? undefined,
        },
        signal,
      ),
    }),
    { keepPrevious: true },
  );

  const setFilters = (changed: Partial<WorkerFilters>) => navigate(hrefFor({ page: 'workers', filters: { ...filters, ...changed } }), { replace: true });
  const data = page.data?.answer ?? null;
  const shown = page.data?.paging ?? current;
  const shownFrom = shown.before.length * filters.limit + 1;
  // A click while a page is on its way would page from rows that are about to go: it waits.
  const turnTo = (next: Paging) => {
    if (!page.loading) setPaging(next);
  };

  return (
    <>
      <h1 tabIndex={-1}>Workers</h1>
      <form
        class="filters"
        role="search"
        aria-label="Filter workers"
        onSubmit={(event) => {
          event.preventDefault();
          setFilters({ q: search.trim() });
        }}
      >
        <div class="field search">
          <label for={searchId}>Worker id starts with</label>
          <div class="inline">
            {/* The characters a worker id may hold (src/protocol/messages.ts): the browser says so before the server refuses. */}
            <input
              id={searchId}
              type="search"
              name="q"
              value={search}
              pattern="[A-Za-z0-9._:\-]*"
              title="Letters, digits, dot, underscore, colon and hyphen"
              maxLength={128}
              spellcheck={false}
              autoComplete="off"
              onInput={(event) => setSearch(event.currentTarget.value)}
            />
            <button type="submit">Search</button>
          </div>
        </div>
        <FilterSelect name="pool" label="Pool" value={filters.pool} options={plain(facets.data?.pools ?? [])} onChange={(name, value) => setFilters({ [name]: value })} />
        <FilterSelect name="version" label="Version" value={filters.version} options={plain(facets.data?.versions ?? [])} onChange={(name, value) => setFilters({ [name]: value })} />
        <FilterSelect name="channel" label="Channel" value={filters.channel} options={plain(facets.data?.channels ?? [])} onChange={(name, value) => setFilters({ [name]: value })} />
        <FilterSelect name="state" label="State" value={filters.state} options={plain(WORKER_STATES)} onChange={(name, value) => setFilters({ [name]: value })} />
        <FilterSelect
          name="update_state"
          label="Update state"
          value={filters.update_state}
          options={[...UPDATE_STATES, 'none'].map((state) => ({ value: state, label: updateStateLabel(state) }))}
          onChange={(name, value) => setFilters({ [name]: value })}
        />
        <FilterSelect
          name="seen"
          label="Seen"
          value={filters.seen}
          options={WORKER_SEEN.map((seen) => ({ value: seen, label: seen === 'live' ? 'live (recently seen)' : 'unseen (quiet)' }))}
          onChange={(name, value) => setFilters({ [name]: value })}
        />
        <PageSizeSelect value={filters.limit} onChange={(limit) => setFilters({ limit })} />
        <p class="reset">
          <a href={workersHref({ limit: filters.limit })}>Clear the filters</a>
        </p>
      </form>
      <LoadStatus loading={data === null} error={page.error} />
      {data !== null ? (
        // Busy while the rows are still those of the filters or page before: dimmed, and said so to assistive technology.
        <div class="results" aria-busy={page.loading ? 'true' : 'false'}>
          <p role="status" class="match-count">
            {countOf(data.total, 'worker')} match
            {data.workers.length > 0 ? ` (showing ${shownFrom}–${shownFrom + data.workers.length - 1})` : ''}
          </p>
          <WorkerTable workers={data.workers} />
          <nav class="pager" aria-label="Pages of workers">
            <button type="button" disabled={shown.before.length === 0} onClick={() => turnTo({ filtersHref, after: null, before: [] })}>
              First
            </button>
            <button
              type="button"
              disabled={shown.before.length === 0}
              onClick={() => turnTo({ filtersHref, after: shown.before.at(-1) ?? null, before: shown.before.slice(0, -1) })}
            >
              Previous
            </button>
            <span class="page-number">Page {shown.before.length + 1}</span>
            <button
              type="button"
              disabled={data.next_cursor === null}
              onClick={() => turnTo({ filtersHref, after: data.next_cursor, before: [...shown.before, shown.after] })}
            >
              Next
            </button>
          </nav>
        </div>
      ) : null}
    </>
  );
}

function PageSizeSelect({ value, onChange }: { value: number; onChange: (limit: number) => void }) {
  const id = useId();
  return (
    <div class="field">
      <label for={id}>Rows per page</label>
      <select id={id} value={String(value)} onChange={(event: TargetedEvent<HTMLSelectElement>) => onChange(Number(event.currentTarget.value))}>
        {WORKER_PAGE_SIZES.map((size) => (
          <option key={size} value={String(size)}>
            {size}
          </option>
        ))}
      </select>
    </div>
  );
}
