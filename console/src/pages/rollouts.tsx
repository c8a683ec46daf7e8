import { useState } from 'preact/hooks';
import { useApi } from '../api/context';
import type { PoolWindows, RolloutAction, RolloutStatus, Rollouts } from '../api/types';
import { useLoaded } from '../api/use-loaded';
import { LoadStatus } from '../components/load-status';
import { LocalTime } from '../components/local-time';
import { ROLLOUT_ACTIONS, RolloutActionDialog } from '../components/rollout-action-dialog';
import { RolloutBanner, RolloutFacts, StateBadge, WaveTable } from '../components/rollout-status';
import { ScrollTable } from '../components/scroll-table';
import { rolloutHref } from '../router';
import { usePageTitle } from './page-title';

/** Pools change rarely, but a window opens or closes on the clock: refresh while the page is open. */
const ROLLOUTS_REFRESH_MS = 15_000;

function PoolTable({ pools }: { pools: readonly PoolWindows[] }) {
  return (
    <ScrollTable caption="Pools and their maintenance windows" className="pools">
      <thead>
        <tr>
          <th scope="col">Pool</th>
          <th scope="col">Self-update</th>
          <th scope="col">Maintenance windows</th>
          <th scope="col">Open now</th>
          <th scope="col">Changes at</th>
        </tr>
      </thead>
      <tbody>
        {pools.length === 0 ? (
          <tr>
            <td colSpan={5}>No pool has a policy: every pool has self-update off.</td>
          </tr>
        ) : (
          pools.map((pool) => (
            <tr key={pool.pool}>
              <th scope="row">{pool.pool}</th>
              <td>{pool.auto_update ? 'on' : 'off'}</td>
              <td>{pool.maintenance_windows.length === 0 ? 'none (always open)' : pool.maintenance_windows.join('; ')}</td>
              <td>{pool.window_open ? <span class="badge badge-open">open</span> : <span class="badge badge-closed">closed</span>}</td>
              <td>
                <LocalTime iso={pool.window_changes_at} fallback="no change ahead" />
              </td>
            </tr>
          ))
        )}
      </tbody>
    </ScrollTable>
  );
}

/**
 * The four controls. Each stays offered whatever the state: the server decides whether it
 * applies (src/server/rollout/rollout-service.ts), and the dialog shows its refusal, rather than
 * the page keeping a second copy of the rules that could drift from the server's.
 */
function RolloutControls({ rollout, onChanged }: { rollout: RolloutStatus; onChanged: () => void }) {
  const [action, setAction] = useState<RolloutAction | null>(null);
  const [done, setDone] = useState<string | null>(null);
  return (
    <section class="controls" aria-labelledby="controls-heading">
      <h2 id="controls-heading">Controls</h2>
      <div class="actions">
        {ROLLOUT_ACTIONS.map((control) => (
          <button
            key={control.action}
            type="button"
            class={control.action === 'halt' || control.action === 'abort' ? 'danger' : undefined}
            onClick={() => {
              setDone(null);
              setAction(control.action);
            }}
          >
            {control.label}…
          </button>
        ))}
      </div>
      <p class="muted">Each asks for confirmation first.</p>
      <p role="status" class="action-result">
        {done}
      </p>
      {action !== null ? (
        <RolloutActionDialog
          rollout={rollout}
          action={action}
          onClose={() => setAction(null)}
          onDone={(after) => {
            setAction(null);
            setDone(`The rollout of ${after.version} is now ${after.state}.`);
            onChanged();
          }}
        />
      ) : null}
    </section>
  );
}

function OneRollout({ rollout, earlier, onChanged }: { rollout: RolloutStatus; earlier: readonly RolloutStatus[]; onChanged: () => void }) {
  return (
    <>
      <RolloutBanner rollout={rollout} />
      <section class="card" aria-labelledby="release-heading">
        <h2 id="release-heading">
          Release {rollout.version} (serial {rollout.serial})
        </h2>
        <RolloutFacts rollout={rollout} />
        <WaveTable rollout={rollout} />
      </section>
      <RolloutControls rollout={rollout} onChanged={onChanged} />
      {earlier.length > 0 ? (
        <ScrollTable caption="Earlier rollouts on this channel">
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col" class="num">
                Serial
              </th>
              <th scope="col">State</th>
              <th scope="col">Started</th>
            </tr>
          </thead>
          <tbody>
            {earlier.map((entry) => (
              <tr key={entry.serial}>
                <th scope="row">{entry.version}</th>
                <td class="num">{entry.serial}</td>
                <td>
                  <StateBadge state={entry.state} />
                </td>
                <td>
                  <LocalTime iso={entry.started_at} />
                </td>
              </tr>
            ))}
          </tbody>
        </ScrollTable>
      ) : null}
    </>
  );
}

function RolloutList({ rollouts }: { rollouts: readonly RolloutStatus[] }) {
  if (rollouts.length === 0) return <p>No channel has a rollout yet.</p>;
  return (
    <ScrollTable caption="Each channel's newest rollout">
      <thead>
        <tr>
          <th scope="col">Channel</th>
          <th scope="col">Release</th>
          <th scope="col">State</th>
          <th scope="col">Waves started</th>
          <th scope="col">Started</th>
        </tr>
      </thead>
      <tbody>
        {rollouts.map((rollout) => (
          <tr key={rollout.channel}>
            <th scope="row">
              <a href={rolloutHref(rollout.channel)}>{rollout.channel}</a>
            </th>
            <td>
              {rollout.version} (serial {rollout.serial})
            </td>
            <td>
              <StateBadge state={rollout.state} />
            </td>
            <td>
              {Math.min(rollout.current_wave, rollout.waves.length)} of {rollout.waves.length}
            </td>
            <td>
              <LocalTime iso={rollout.started_at} />
            </td>
          </tr>
        ))}
      </tbody>
    </ScrollTable>
  );
}

/** `#/rollouts`: every channel's newest rollout; `#/rollouts/<channel>`: one, with its controls. */
export function RolloutsPage({ channel }: { channel: string | null }) {
  usePageTitle(channel === null ? 'Rollouts' : `Rollout of ${channel}`);
  const api = useApi();
  const answer = useLoaded(
    `rollouts:${channel ?? ''}`,
    (signal) => api.get<Rollouts>('/console/api/rollouts', channel === null ? undefined : { channel }, signal),
    { intervalMs: ROLLOUTS_REFRESH_MS },
  );
  const data = answer.data;
  // Newest serial first: the head is the channel's current rollout.
  const ordered = [...(data?.rollouts ?? [])].sort((a, b) => b.serial - a.serial);
  const [current, ...earlier] = ordered;
  return (
    <>
      <h1 tabIndex={-1}>{channel === null ? 'Rollouts' : `Rollout on ${channel}`}</h1>
      <LoadStatus loading={data === null} error={answer.error} />
      {data !== null ? (
        <>
          {channel === null ? (
            <RolloutList rollouts={data.rollouts} />
          ) : current === undefined ? (
            <p>No rollout on channel {channel}.</p>
          ) : (
            <OneRollout rollout={current} earlier={earlier} onChanged={answer.reload} />
          )}
          <section class="card" aria-labelledby="pools-heading">
            <h2 id="pools-heading">Pools</h2>
            <PoolTable pools={data.pools} />
            <p class="muted">
              As of <LocalTime iso={data.generated_at} />. Times are in your time zone; the windows are in their own.
            </p>
          </section>
        </>
      ) : null}
    </>
  );
}
