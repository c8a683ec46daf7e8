import type { Clock } from '../shared/clock.js';
import type { ReleaseStore } from '../store/release-store.js';
import type { FleetStore } from './fleet/fleet-store.js';
import type { ManifestCache } from './manifest-cache.js';
import type { RolloutService } from './rollout/rollout-service.js';
import type { ServerMetrics } from './plugins/metrics.js';
import type { TokenRole } from './tokens.js';
import type { ResumedSession } from './console/sessions.js';
import type { VersionSampler } from './console/version-sampler.js';

/** Who a route admits: nobody in particular, a worker token, an admin token, the metrics token, or a console session (its cookie). */
export type RouteAuth = 'none' | 'worker' | 'admin' | 'metrics' | 'console';

export interface AuthContext {
  /** `token`: a bearer token (a pool's or an admin's); `credential`: one worker's own credential. */
  kind: 'token' | 'credential';
  /** The public id of the token or credential: logs, rate limits, revocation. */
  tokenId: string;
  role: TokenRole;
  /** The worker pool of a worker token or credential (never self-declared by the worker); null for admins. */
  pool: string | null;
  /** The worker a credential belongs to; null for tokens, which speak for no worker in particular. */
  workerId: string | null;
}

/** Settings the routes read; the wiring in main.ts fills them from the configuration. */
export interface ServerSettings {
  heartbeatIntervalSeconds: number;
  /** Workers not seen for this long are left out of the fleet gauge. */
  workerStaleAfterSeconds: number;
  /** A worker credential older than this is asked to rotate (`rotate_credential` in its heartbeat). */
  credentialMaxAgeSeconds: number;
}
import type { LeaderLease } from './fleet/leader-lease.js';
import type { Retention } from './fleet/retention.js';

declare module 'fastify' {
  interface FastifyInstance {
    fleet: FleetStore;
    releaseStore: ReleaseStore;
    manifests: ManifestCache;
    rollouts: RolloutService;
    clock: Clock;
    serverMetrics: ServerMetrics;
    settings: ServerSettings;
    /** The console's version sampler (docs/console.md); tests call `sample()` themselves. */
    consoleSampler: VersionSampler;
    /** Whether this replica does the fleet-wide work (docs/server.md, "Several replicas"). */
    leader: LeaderLease;
    /** Deletes old events and long-unseen workers (docs/server.md, "Retention"). */
    retention: Retention;
  }
  interface FastifyRequest {
    auth: AuthContext | null;
    /** Fields for the one log line written about this request when its response is sent. */
    logFields: Record<string, unknown> | null;
    /** On console routes: the signed-in session and its cookie (never logged). */
    consoleSession: (ResumedSession & { cookie: string }) | null;
  }
  interface FastifyContextConfig {
    auth?: RouteAuth;
  }
}
