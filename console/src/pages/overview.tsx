import { useApi } from '../api/context';
import type { ChannelOverview, Overview } from '../api/types';
import { useLoaded } from '../api/use-loaded';
import { LoadStatus } from '../components/load-status';
import { LocalTime } from '../components/local-time';
import { RolloutBanner, RolloutFacts, WaveTable } from '../components/rollout-status';
import { CountsTable } from '../components/scroll-table';
import { VersionHistory } from '../components/version-history';
import { countOf, updateStateLabel } from '../format';
import { hrefFor, rolloutHref, workersHref } from '../router';
import { usePageTitle } from './page-title';

/** The overview polls this often; the server's ETag makes a poll that changed nothing a 304. */
export const OVERVIEW_POLL_MS = 5_000;

function ChannelSection({ channel }: { channel: ChannelOverview }) {
  const id = `channel-${channel.channel}`;
  const { rollout, workers } = channel;
  return (
    <section class="card channel" aria-labelledby={id}>
      <h2 id={id}>Channel {channel.channel}</h2>
      {rollout === null ? (
        <p>No rollout on this channel yet.</p>
      ) : (
        <>
          <RolloutBanner rollout={rollout} />
          <RolloutFacts rollout={rollout} />
          <WaveTable rollout={rollout} />
          <p>
            <a href={rolloutHref(channel.channel)}>Pools, windows and controls of the {channel.channel} rollout</a>
          </p>
        </>
      )}
      <h3>
        Live workers: <span class="live-count">{workers.live.toLocaleString()}</span>
      </h3>
      <div class="count-grid">
        <CountsTable
          caption={`Live workers on ${channel.channel} by version`}
          heading="Version"
          rows={workers.by_version.map((entry) => ({ label: entry.version, count: entry.count }))}
        />
        <CountsTable
          caption={`Live workers on ${channel.channel} by state`}
          heading="State"
          rows={workers.by_state.map((entry) => ({ label: entry.state, count: entry.count }))}
        />
        <CountsTable
          caption={`Live workers on ${channel.channel} by update state`}
          heading="Update state"
          rows={workers.by_update_state.map((entry) => ({ label: updateStateLabel(entry.update_state), count: entry.count }))}
        />
      </div>
      <p>
        <a href={workersHref({ channel: channel.channel, seen: 'live' })}>List the live workers on {channel.channel}</a>
      </p>
      <VersionHistory channel={channel.channel} headingId={`history-${channel.channel}`} />
    </section>
  );
}

/** Channels whose rollout is halted or paused come first, so their banner is the first thing seen; otherwise the server's order. */
function needingAttentionFirst(channels: readonly ChannelOverview[]): ChannelOverview[] {
  const stopped = (channel: ChannelOverview) => channel.rollout?.state === 'halted' || channel.rollout?.state === 'paused';
  return [...channels.filter(stopped), ...channels.filter((channel) => !stopped(channel))];
}

/**
 * Every channel at a glance: its rollout, its live workers and how their versions moved. Polled,
 * so that a halt elsewhere shows here within a few seconds, without a reload.
 */
export function OverviewPage() {
  usePageTitle('Overview');
  const api = useApi();
  const overview = useLoaded('overview', (signal) => api.get<Overview>('/console/api/overview', undefined, signal), { intervalMs: OVERVIEW_POLL_MS });
  const data = overview.data;
  return (
    <>
      <h1 tabIndex={-1}>Fleet overview</h1>
      <LoadStatus loading={data === null} error={overview.error} />
      {data !== null ? (
        <>
          <section class="card summary" aria-labelledby="fleet-summary">
            <h2 id="fleet-summary">Fleet</h2>
            <dl class="facts">
              <div>
                <dt>Live workers</dt>
                <dd class="fleet-live">{data.fleet.live.toLocaleString()}</dd>
              </div>
              <div>
                <dt>Unseen</dt>
                <dd>
                  <a class="fleet-unseen" href={workersHref({ seen: 'unseen' })}>
                    {countOf(data.fleet.unseen, 'worker')}
                  </a>{' '}
                  <span class="muted">quiet for more than {countOf(data.heartbeat_interval_seconds * 3, 'second')}</span>
                </dd>
              </div>
              <div>
                <dt>Failures</dt>
                <dd>
                  <a class="fleet-failures" href={hrefFor({ page: 'failures', hours: 24 })}>
                    {countOf(data.failures.total, 'report')}
                  </a>{' '}
                  <span class="muted">
                    since <LocalTime iso={data.failures.since} />
                  </span>
                </dd>
              </div>
              <div>
                <dt>As of</dt>
                <dd>
                  <LocalTime iso={data.generated_at} />
                </dd>
              </div>
            </dl>
          </section>
          {data.channels.length === 0 ? <p>No channel has workers or releases yet.</p> : null}
          {needingAttentionFirst(data.channels).map((channel) => (
            <ChannelSection key={channel.channel} channel={channel} />
          ))}
        </>
      ) : null}
    </>
  );
}
