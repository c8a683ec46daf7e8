import { useSession } from '../api/context';
import type { RolloutStatus, Session, WaveProgress } from '../api/types';
import { formatDuration, formatPercent } from '../format';
import { LocalTime } from './local-time';
import { ScrollTable } from './scroll-table';

/** How a rollout's state reads; halted and paused are what an operator must not miss. */
export function StateBadge({ state }: { state: RolloutStatus['state'] }) {
  return <span class={`badge badge-${state}`}>{state}</span>;
}

/**
 * Who changed the state: the server records an admin token's id (or `automatic`, `server`). The
 * page knows the label of its own token only, so that one reads as a name.
 */
function changedBy(who: string | null, session: Session | null): string {
  if (who === null) return 'unknown';
  if (who === 'automatic') return 'the server (automatic halt on the failure rate)';
  if (who === 'server') return 'the server';
  if (session !== null && who === session.token_id) return `${session.label ?? `token ${who}`} (you)`;
  return /^[0-9a-f]{16}$/.test(who) ? `admin token ${who}` : who;
}

/**
 * The banner of a halted or paused rollout: what, why and who. It is an alert, so that a screen
 * reader announces it when a poll brings the halt in.
 */
export function RolloutBanner({ rollout }: { rollout: RolloutStatus }) {
  const session = useSession();
  if (rollout.state !== 'halted' && rollout.state !== 'paused') return null;
  return (
    <div role="alert" class={`banner banner-${rollout.state}`}>
      <p class="banner-title">
        The rollout of {rollout.version} on {rollout.channel} is {rollout.state}
      </p>
      <p>
        Reason: <span class="banner-reason">{rollout.state_reason ?? 'none given'}</span>
      </p>
      <p>
        By <span class="banner-who">{changedBy(rollout.state_changed_by, session)}</span>, <LocalTime iso={rollout.state_changed_at} />
      </p>
    </div>
  );
}

/** The failure rate against the halt threshold, in the words `bytebiota-admin rollout status` uses. */
export function FailureRate({ failure }: { failure: RolloutStatus['failure'] }) {
  const over = failure.sample_workers >= failure.min_sample && failure.rate > failure.threshold;
  return (
    <span class={over ? 'failure-rate over' : 'failure-rate'}>
      {formatPercent(failure.rate)} ({failure.failed_workers} of {failure.sample_workers} workers) against a halt threshold of {formatPercent(failure.threshold)}
      <span class="muted">
        {' '}
        (minimum sample {failure.min_sample}, window {formatDuration(failure.window_s)})
      </span>
    </span>
  );
}

/** The release, its state and its failure rate, as a list of facts. */
export function RolloutFacts({ rollout }: { rollout: RolloutStatus }) {
  return (
    <dl class="facts">
      <div>
        <dt>Release</dt>
        <dd>
          <span class="release-version">{rollout.version}</span> (serial <span class="release-serial">{rollout.serial}</span>)
          {rollout.urgent ? <span class="badge badge-urgent">rollback release: offered to all at once</span> : null}
        </dd>
      </div>
      <div>
        <dt>State</dt>
        <dd>
          <StateBadge state={rollout.state} />
        </dd>
      </div>
      <div>
        <dt>Started</dt>
        <dd>
          <LocalTime iso={rollout.started_at} />
        </dd>
      </div>
      <div>
        <dt>Waves started</dt>
        <dd>
          {Math.min(rollout.current_wave, rollout.waves.length)} of {rollout.waves.length}
        </dd>
      </div>
      <div>
        <dt>Failure rate</dt>
        <dd>
          <FailureRate failure={rollout.failure} />
        </dd>
      </div>
      <div>
        <dt>Outside the waves</dt>
        <dd>
          {rollout.outside_waves.already_running} already running it, {rollout.outside_waves.forced} forced
        </dd>
      </div>
      {rollout.pools_not_in_plan.length > 0 ? (
        <div>
          <dt>Not in the plan</dt>
          <dd>{rollout.pools_not_in_plan.join(', ')}: no wave names these pools; they never get this release</dd>
        </div>
      ) : null}
      <div>
        <dt>Expires</dt>
        <dd>
          <LocalTime iso={rollout.expires_at} />
        </dd>
      </div>
    </dl>
  );
}

function WaveProgressCell({ wave }: { wave: WaveProgress }) {
  const fraction = wave.live_admitted === 0 ? 0 : Math.min(1, wave.updated / wave.live_admitted);
  return (
    <td class="wave-progress">
      <span class="progress-text">
        {wave.updated} of {wave.live_admitted}
      </span>{' '}
      updated
      {wave.failed > 0 ? <span class="failed-count">, {wave.failed} failed</span> : null}
      {/* The bar repeats the words above for the eye; width is set through the DOM, which the CSP allows. */}
      <span class="bar" aria-hidden="true">
        <span class="bar-fill" style={{ width: `${Math.round(fraction * 100)}%` }} />
      </span>
    </td>
  );
}

/** The waves of a rollout: which pools, how far each got, what the next step waits on. */
export function WaveTable({ rollout }: { rollout: RolloutStatus }) {
  const currentIndex = rollout.current_wave - 1;
  return (
    <ScrollTable caption={`Waves of ${rollout.version} on ${rollout.channel}`} className="waves">
      <thead>
        <tr>
          <th scope="col">Wave</th>
          <th scope="col">Pools</th>
          <th scope="col" class="num">
            Share
          </th>
          <th scope="col">Soak</th>
          <th scope="col" class="num">
            Healthy needed
          </th>
          <th scope="col">Started</th>
          <th scope="col">Progress</th>
          <th scope="col">Waiting on</th>
        </tr>
      </thead>
      <tbody>
        {rollout.waves.map((wave) => (
          <tr key={wave.index} class={wave.index === currentIndex ? 'current' : undefined} aria-current={wave.index === currentIndex ? 'step' : undefined}>
            <th scope="row">
              {wave.index + 1}
              {wave.index === currentIndex ? <span class="muted"> (current)</span> : null}
            </th>
            <td>{wave.pools.map((pool) => (pool === '*' ? 'every pool' : pool)).join(', ')}</td>
            <td class="num">{wave.percent} %</td>
            <td>{formatDuration(wave.soak_s)}</td>
            <td class="num">
              {wave.healthy_needed} <span class="muted">(plan: {wave.min_healthy})</span>
            </td>
            <td>
              <LocalTime iso={wave.started_at} fallback="not started" />
            </td>
            <WaveProgressCell wave={wave} />
            <td>{wave.waiting_on.length === 0 ? <span class="muted">nothing</span> : wave.waiting_on.join('; ')}</td>
          </tr>
        ))}
      </tbody>
    </ScrollTable>
  );
}
