import { ApiError } from '../api/client';
import { useApi } from '../api/context';
import type { WorkerDetail } from '../api/types';
import { useLoaded } from '../api/use-loaded';
import { LoadStatus } from '../components/load-status';
import { LocalTime } from '../components/local-time';
import { StateBadge } from '../components/rollout-status';
import { ScrollTable } from '../components/scroll-table';
import { updateStateLabel } from '../format';
import { rolloutHref, workersHref } from '../router';
import { usePageTitle } from './page-title';

/** Refreshed while open: an update in progress moves on, and the explanation with it. */
const WORKER_REFRESH_MS = 10_000;

function WorkerFacts({ detail }: { detail: WorkerDetail }) {
  const { worker, explanation } = detail;
  return (
    <dl class="facts">
      <div>
        <dt>Pool</dt>
        <dd>
          <a href={workersHref({ pool: worker.pool })}>{worker.pool}</a>
        </dd>
      </div>
      <div>
        <dt>Channel</dt>
        <dd>{worker.channel === null ? 'none' : <a href={rolloutHref(worker.channel)}>{worker.channel}</a>}</dd>
      </div>
      <div>
        <dt>Version</dt>
        <dd>{worker.version}</dd>
      </div>
      <div>
        <dt>Platform</dt>
        <dd>{worker.platform ?? 'unknown'}</dd>
      </div>
      <div>
        <dt>State</dt>
        <dd>
          {worker.state} ({explanation.live ? 'live' : 'not live: left out of the rollout shares'})
        </dd>
      </div>
      <div>
        <dt>Update</dt>
        <dd>
          {worker.update === null ? (
            'none'
          ) : (
            <>
              {updateStateLabel(worker.update.state)} to {worker.update.to_version}
              {worker.update.download_percent !== undefined ? ` (${Math.round(worker.update.download_percent)} %)` : ''}
              {worker.update.reason !== undefined ? ` (${worker.update.reason})` : ''}, <LocalTime iso={worker.update.updated_at} />
            </>
          )}
        </dd>
      </div>
      <div>
        <dt>Registered</dt>
        <dd>
          <LocalTime iso={worker.registered_at} />
        </dd>
      </div>
      <div>
        <dt>Last seen</dt>
        <dd>
          <LocalTime iso={worker.last_seen_at} />
        </dd>
      </div>
    </dl>
  );
}

/** Why the worker is, or is not, offered a version: the checks its next poll would go through, in order. */
function Explanation({ detail }: { detail: WorkerDetail }) {
  const { offer, steps } = detail.explanation;
  return (
    <section class="card" aria-labelledby="explanation-heading">
      <h2 id="explanation-heading">Why it is offered what it is</h2>
      <p class="offer">
        {offer === null ? (
          'Nothing is offered to this worker now.'
        ) : (
          <>
            Offered <strong>{offer.version}</strong> (serial {offer.serial}), from a rollout that is <StateBadge state={offer.state} />.
          </>
        )}
      </p>
      <ScrollTable caption="The checks, in the order the server makes them" className="steps">
        <thead>
          <tr>
            <th scope="col">Check</th>
            <th scope="col" class="num">
              Serial
            </th>
            <th scope="col">Result</th>
            <th scope="col">Detail</th>
          </tr>
        </thead>
        <tbody>
          {steps.map((step, index) => (
            <tr key={index} class={step.ok ? 'step-ok' : 'step-not-ok'}>
              <th scope="row" class="step-check">
                {step.check}
              </th>
              <td class="num">{step.serial ?? <span class="muted">–</span>}</td>
              <td class="step-result">
                <span class={step.ok ? 'badge badge-ok' : 'badge badge-not-ok'}>{step.ok ? 'ok' : 'not ok'}</span>
              </td>
              <td class="step-detail">{step.detail}</td>
            </tr>
          ))}
        </tbody>
      </ScrollTable>
    </section>
  );
}

function Events({ detail }: { detail: WorkerDetail }) {
  return (
    <section class="card" aria-labelledby="events-heading">
      <h2 id="events-heading">Recent update events</h2>
      {detail.events.length === 0 ? (
        <p>This worker has reported no update yet.</p>
      ) : (
        <ScrollTable caption="Update reports, newest first" className="events">
          <thead>
            <tr>
              <th scope="col">Received</th>
              <th scope="col">Event</th>
              <th scope="col">From</th>
              <th scope="col">To</th>
              <th scope="col">Channel</th>
              <th scope="col">Reason</th>
              <th scope="col">Correlation id</th>
            </tr>
          </thead>
          <tbody>
            {detail.events.map((event, index) => (
              <tr key={index}>
                <th scope="row">
                  <LocalTime iso={event.received_at} />
                </th>
                <td>{event.event}</td>
                <td>{event.from_version}</td>
                <td>{event.to_version}</td>
                <td>{event.channel}</td>
                <td>{event.reason ?? <span class="muted">–</span>}</td>
                <td>{event.correlation_id ?? <span class="muted">–</span>}</td>
              </tr>
            ))}
          </tbody>
        </ScrollTable>
      )}
    </section>
  );
}

/** `#/workers/<id>`: one worker, why it is offered what it is, and what it reported. */
export function WorkerPage({ workerId }: { workerId: string }) {
  usePageTitle(`Worker ${workerId}`);
  const api = useApi();
  const detail = useLoaded(
    `worker:${workerId}`,
    (signal) => api.get<WorkerDetail>(`/console/api/workers/${encodeURIComponent(workerId)}`, undefined, signal),
    { intervalMs: WORKER_REFRESH_MS },
  );
  const unknown = detail.error instanceof ApiError && detail.error.code === 'unknown_worker';
  return (
    <>
      <h1 tabIndex={-1}>Worker {workerId}</h1>
      {unknown ? (
        <p class="notice notice-error" role="alert">
          The server knows no worker {workerId}. <a href="#/workers">Back to the workers</a>
        </p>
      ) : (
        <LoadStatus loading={detail.data === null} error={detail.error} />
      )}
      {detail.data !== null && !unknown ? (
        <>
          <WorkerFacts detail={detail.data} />
          <Explanation detail={detail.data} />
          <Events detail={detail.data} />
        </>
      ) : null}
    </>
  );
}
