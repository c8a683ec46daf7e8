import type { ChannelPlan, FleetView, PoolList, PoolPolicySet, RolloutStatus, RolloutStatuses, Wave, WorkerExplanation } from './client.js';

/*
 * The readable form of each admin answer: plain aligned text, one array of lines per command.
 * `--json` bypasses all of this and prints the server's JSON.
 */

const NONE = '-';
const DURATION_UNITS = [
  ['d', 86_400],
  ['h', 3_600],
  ['m', 60],
] as const;

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string[] {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)];
}

/** `label  value` lines with the labels padded to one width. */
function fields(entries: ReadonlyArray<readonly [string, string]>, indent = ''): string[] {
  const width = Math.max(...entries.map(([label]) => label.length));
  return entries.map(([label, value]) => `${indent}${label.padEnd(width)}  ${value}`);
}

function indented(lines: readonly string[], indent = '  '): string[] {
  return lines.map((line) => `${indent}${line}`);
}

/** Seconds in the largest unit that divides them exactly: `30m`, `1h`, `1d`, `90s`, `0s`. */
export function formatDuration(seconds: number): string {
  for (const [unit, size] of DURATION_UNITS) {
    if (seconds > 0 && seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}

/** An instant to the second, as the server's other times read: `2026-11-20T12:00:00Z`. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return NONE;
  return iso.replace(/\.\d{3}Z$/, 'Z');
}

function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(1)} %`;
}

function yesNo(value: boolean): string {
  return value ? 'yes' : 'no';
}

function onOff(value: boolean): string {
  return value ? 'on' : 'off';
}

/** `canary=100`, `stable,edge=25`: the same short form `rollout plan set --wave` takes. */
export function describeWave(wave: Pick<Wave, 'pools' | 'percent'>): string {
  return `${wave.pools.join(',')}=${wave.percent}`;
}

function windowsText(windows: readonly string[]): string {
  return windows.length === 0 ? 'none (always open)' : windows.join('; ');
}

function rolloutHeading(status: Pick<RolloutStatus, 'channel' | 'version' | 'serial'>): string {
  return `${status.channel}: ${status.version} (serial ${status.serial})`;
}

/** One rollout: release, state with its reason and who set it, the waves, the failure rate against the halt threshold. */
export function formatRolloutStatus(status: RolloutStatus): string[] {
  const f = status.failure;
  const lines = [
    rolloutHeading(status),
    ...fields(
      [
        ['state', status.state],
        ['urgent', yesNo(status.urgent)],
        ['started', formatTime(status.started_at)],
        ['reason', status.state_reason ?? NONE],
        ['by', `${status.state_changed_by ?? NONE} at ${formatTime(status.state_changed_at)}`],
        ['expires', formatTime(status.expires_at)],
        [
          'failures',
          `${percent(f.rate)} (${f.failed_workers} of ${f.sample_workers} workers) vs halt threshold ${percent(f.threshold)}, minimum sample ${f.min_sample}, window ${formatDuration(f.window_s)}`,
        ],
        ...(status.outside_waves
          ? [['outside waves', `${status.outside_waves.already_running} already running it, ${status.outside_waves.forced} forced`] as [string, string]]
          : []),
        ...(status.pools_not_in_plan && status.pools_not_in_plan.length > 0
          ? [['not in plan', `${status.pools_not_in_plan.join(', ')}: no wave names these pools; they never get this release`] as [string, string]]
          : []),
      ],
      '  ',
    ),
    '',
  ];
  const rows = status.waves.map((wave) => [
    String(wave.index + 1),
    describeWave(wave),
    formatDuration(wave.soak_s),
    String(wave.min_healthy),
    formatTime(wave.started_at),
    String(wave.admitted),
    String(wave.live_admitted),
    String(wave.updated),
    String(wave.failed),
    String(wave.healthy_needed),
    wave.waiting_on.length === 0 ? NONE : wave.waiting_on.join('; '),
  ]);
  lines.push(
    ...indented(
      table(['wave', 'pools=percent', 'soak', 'min healthy', 'started at', 'admitted', 'live admitted', 'updated', 'failed', 'healthy needed', 'waiting on'], rows),
    ),
  );
  return lines;
}

export function formatRolloutStatuses(answer: RolloutStatuses, channel?: string): string[] {
  if (answer.rollouts.length === 0) return [channel === undefined ? 'no rollouts' : `no rollout on channel ${channel}`];
  const lines: string[] = [];
  answer.rollouts.forEach((status, index) => {
    if (index > 0) lines.push('');
    lines.push(...formatRolloutStatus(status));
  });
  return lines;
}

/** What `rollout pause|resume|halt|abort` says: the rollout's state after the action, in one line or two. */
export function formatRolloutControl(status: RolloutStatus): string[] {
  const waves = status.waves.length;
  return [
    `${rolloutHeading(status)} is ${status.state} (wave ${Math.min(status.current_wave, waves)} of ${waves} started)`,
    `  reason: ${status.state_reason ?? NONE} (by ${status.state_changed_by ?? NONE} at ${formatTime(status.state_changed_at)})`,
  ];
}

export function formatPlan(answer: ChannelPlan): string[] {
  const source = answer.source === 'channel' ? 'its own plan' : "the server's default plan (the channel has none of its own)";
  const lines = [`channel ${answer.channel}: ${source}${answer.plan.immediate ? ', immediate' : ''}`];
  const rows = answer.plan.waves.map((wave, index) => [String(index + 1), describeWave(wave), formatDuration(wave.soak_s), String(wave.min_healthy)]);
  lines.push(...indented(table(['wave', 'pools=percent', 'soak', 'min healthy'], rows)));
  return lines;
}

export function formatPools(answer: PoolList): string[] {
  if (answer.pools.length === 0) return ['no pool has a policy: every pool has auto_update off'];
  const rows = answer.pools.map((pool) => [
    pool.pool,
    onOff(pool.auto_update),
    windowsText(pool.maintenance_windows),
    yesNo(pool.window_open),
    formatTime(pool.window_changes_at),
  ]);
  return table(['pool', 'auto_update', 'windows', 'open now', 'next change'], rows);
}

export function formatPoolSet(answer: PoolPolicySet): string[] {
  return [`pool ${answer.pool}: auto_update ${onOff(answer.auto_update)}; windows ${windowsText(answer.maintenance_windows)} (set at ${formatTime(answer.updated_at)})`];
}

/** Whole days, or hours under a day: a credential's age. */
function ageOf(since: string, now: string): string {
  const ms = Math.max(0, new Date(now).getTime() - new Date(since).getTime());
  return ms >= 86_400_000 ? `${Math.floor(ms / 86_400_000)}d` : `${Math.floor(ms / 3_600_000)}h`;
}

/**
 * Each listed worker's credential age, oldest first, or `pool token` for one that has none yet
 * (docs/runbooks/worker-identity.md): what rotation and the move off pool tokens are up to.
 */
function formatCredentialAges(view: FleetView): string[] {
  const workers = view.workers.filter(
    (w): w is { worker_id: string; pool: string; credential_created_at: string | null } =>
      typeof w === 'object' && w !== null && 'worker_id' in w && 'credential_created_at' in w,
  );
  if (workers.length === 0) return [];
  const sorted = [...workers].sort((a, b) => (a.credential_created_at ?? '').localeCompare(b.credential_created_at ?? ''));
  const rows = sorted.map((w) => [w.worker_id, w.pool, w.credential_created_at === null ? 'pool token' : ageOf(w.credential_created_at, view.generated_at)]);
  return ['credentials (listed workers)', ...indented(table(['worker', 'pool', 'credential age'], rows))];
}

export function formatFleet(view: FleetView): string[] {
  const byState = new Map<string, number>();
  for (const group of view.groups) byState.set(group.state, (byState.get(group.state) ?? 0) + group.count);
  const states = [...byState.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([state, count]) => `${count} ${state}`);
  const lines = [`workers ${view.total_workers}${states.length > 0 ? `: ${states.join(', ')}` : ''} (at ${formatTime(view.generated_at)})`, ''];
  if (view.groups.length === 0) lines.push('no workers');
  else {
    const rows = view.groups.map((g) => [g.channel ?? NONE, g.pool, g.version, g.state, String(g.count)]);
    lines.push(...table(['channel', 'pool', 'version', 'state', 'count'], rows));
  }
  lines.push('', ...formatCredentialAges(view));
  lines.push('');
  if (view.recent_failures.length === 0) {
    lines.push('no recent failures');
    return lines;
  }
  lines.push('recent failures');
  const rows = view.recent_failures.map((f) => [
    formatTime(f.received_at),
    f.worker_id,
    f.pool,
    f.event,
    `${f.from_version} -> ${f.to_version}`,
    f.reason ?? NONE,
    f.correlation_id ?? NONE,
  ]);
  lines.push(...indented(table(['received at', 'worker', 'pool', 'event', 'versions', 'reason', 'correlation id'], rows)));
  return lines;
}

export function formatExplanation(answer: WorkerExplanation): string[] {
  const { offer: offered } = answer;
  const release = offered ? `${offered.version} (serial ${offered.serial}, ${offered.state})` : '';
  // The release a worker already runs is offered too (its heartbeat names it): nothing new for it.
  const offer = !offered ? 'nothing new' : offered.version === answer.version ? `nothing new: already runs ${release}` : release;
  const lines = fields([
    ['worker', answer.worker_id],
    ['pool', answer.pool],
    ['channel', answer.channel ?? NONE],
    ['version', answer.version],
    ['last seen', formatTime(answer.last_seen_at)],
    ['live', yesNo(answer.live)],
    ['offered', offer],
  ]);
  lines.push('');
  lines.push(...table(['check', 'ok', 'detail'], answer.steps.map((step) => [step.check, step.ok ? '✓' : '✗', step.detail])));
  return lines;
}
