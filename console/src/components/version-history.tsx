import { useApi } from '../api/context';
import type { VersionHistory as History } from '../api/types';
import { useLoaded } from '../api/use-loaded';
import { countOf } from '../format';
import { LoadStatus } from './load-status';
import { LocalTime } from './local-time';
import { VersionChart, versionsOf } from './version-chart';

const HISTORY_DAYS = 7;
/** The server samples every few minutes: refreshing the chart once a minute is plenty. */
const HISTORY_REFRESH_MS = 60_000;

/** A channel's version distribution over the last days: a chart, and the newest sample in words. */
export function VersionHistory({ channel, headingId }: { channel: string; headingId: string }) {
  const api = useApi();
  const history = useLoaded(
    `history:${channel}`,
    (signal) => api.get<History>('/console/api/history', { channel, days: HISTORY_DAYS }, signal),
    { intervalMs: HISTORY_REFRESH_MS },
  );
  const samples = history.data?.samples ?? [];
  const newest = samples.at(-1);
  return (
    <section class="history" aria-labelledby={headingId}>
      <h3 id={headingId}>
        Versions on {channel} over the last {HISTORY_DAYS} days
      </h3>
      <LoadStatus loading={history.data === null} error={history.error}>
        {samples.length < 2 ? (
          <p class="chart-empty">
            Not enough history for a chart yet: {countOf(samples.length, 'sample')} so far (the server takes one every{' '}
            {countOf(Math.max(1, Math.round((history.data?.resolution_seconds ?? 60) / 60)), 'minute')}).
          </p>
        ) : (
          <figure>
            <VersionChart samples={samples} />
            <figcaption>
              Live workers on {channel} by version, {countOf(samples.length, 'sample')} from <LocalTime iso={samples[0]?.at} /> to{' '}
              <LocalTime iso={newest?.at} />.
            </figcaption>
          </figure>
        )}
        {newest !== undefined ? (
          <p class="history-latest">
            Latest sample (<LocalTime iso={newest.at} />):{' '}
            {versionsOf([newest])
              .map((version) => `${version}: ${newest.versions[version] ?? 0}`)
              .join(', ') || 'no live workers'}
          </p>
        ) : null}
      </LoadStatus>
    </section>
  );
}
