import { useId } from 'preact/hooks';
import type { TargetedEvent } from 'preact';
import { useApi } from '../api/context';
import type { FailureGroup, Failures } from '../api/types';
import { useLoaded } from '../api/use-loaded';
import { LoadStatus } from '../components/load-status';
import { LocalTime } from '../components/local-time';
import { ScrollTable } from '../components/scroll-table';
import { countOf } from '../format';
import { FAILURE_HOURS, hrefFor, navigate, workerHref } from '../router';
import { usePageTitle } from './page-title';

const FAILURES_REFRESH_MS = 30_000;

function hoursLabel(hours: number): string {
  if (hours > 24 && hours % 24 === 0) return `the last ${countOf(hours / 24, 'day')}`;
  return `the last ${countOf(hours, 'hour')}`;
}

function WorkerLinks({ group }: { group: FailureGroup }) {
  const more = group.workers - group.worker_ids.length;
  return (
    <td>
      <ul class="worker-links">
        {group.worker_ids.map((id) => (
          <li key={id}>
            <a href={workerHref(id)}>{id}</a>
          </li>
        ))}
      </ul>
      {more > 0 ? <span class="muted">and {countOf(more, 'more worker')}</span> : null}
    </td>
  );
}

/** `#/failures?hours=N`: failure and rollback reports grouped by what failed, each with its workers. */
export function FailuresPage({ hours }: { hours: number }) {
  usePageTitle('Failures');
  const api = useApi();
  const periodId = useId();
  const failures = useLoaded(`failures:${hours}`, (signal) => api.get<Failures>('/console/api/failures', { hours }, signal), {
    intervalMs: FAILURES_REFRESH_MS,
  });
  const data = failures.data;
  const periods = (FAILURE_HOURS as readonly number[]).includes(hours) ? FAILURE_HOURS : [...FAILURE_HOURS, hours].sort((a, b) => a - b);
  return (
    <>
      <h1 tabIndex={-1}>Failures</h1>
      <div class="filters">
        <div class="field">
          <label for={periodId}>Period</label>
          <select
            id={periodId}
            value={String(hours)}
            onChange={(event: TargetedEvent<HTMLSelectElement>) => navigate(hrefFor({ page: 'failures', hours: Number(event.currentTarget.value) }), { replace: true })}
          >
            {periods.map((option) => (
              <option key={option} value={String(option)}>
                {hoursLabel(option)}
              </option>
            ))}
          </select>
        </div>
      </div>
      <LoadStatus loading={data === null} error={failures.error} />
      {data !== null ? (
        <>
          <p role="status">
            {countOf(data.groups.reduce((sum, group) => sum + group.reports, 0), 'failure or rollback report')} since <LocalTime iso={data.since} />, in{' '}
            {countOf(data.groups.length, 'group')}.
          </p>
          {data.groups.length > 0 ? (
            <ScrollTable caption={`Failures and rollbacks in ${hoursLabel(hours)}, most reports first`} className="failures">
              <thead>
                <tr>
                  <th scope="col">Event</th>
                  <th scope="col">Reason</th>
                  <th scope="col">Version</th>
                  <th scope="col">Channel</th>
                  <th scope="col" class="num">
                    Reports
                  </th>
                  <th scope="col" class="num">
                    Workers
                  </th>
                  <th scope="col">Last</th>
                  <th scope="col">Worker ids</th>
                </tr>
              </thead>
              <tbody>
                {data.groups.map((group) => (
                  <tr key={`${group.event}|${group.reason ?? ''}|${group.to_version}|${group.channel}`}>
                    <th scope="row">{group.event}</th>
                    <td>{group.reason ?? <span class="muted">none given</span>}</td>
                    <td>{group.to_version}</td>
                    <td>{group.channel}</td>
                    <td class="num">{group.reports}</td>
                    <td class="num">{group.workers}</td>
                    <td>
                      <LocalTime iso={group.last_at} />
                    </td>
                    <WorkerLinks group={group} />
                  </tr>
                ))}
              </tbody>
            </ScrollTable>
          ) : null}
        </>
      ) : null}
    </>
  );
}
