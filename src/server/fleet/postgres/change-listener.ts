import pg from 'pg';

/** The channel the schema's triggers notify (postgres/migrations.ts). */
export const CHANGES_CHANNEL = 'bytebiota_fleet';

export interface ChangeListenerOptions {
  connectionString: string;
  /** A committed change: `kind` (token, credential, policy, rollouts) and the changed row's key. */
  onChange: (kind: string, key: string) => void;
  /** The connection was lost or (re)established: notifications in between may be missed. */
  onGap: () => void;
  /** Wait before reconnecting after a failure. */
  retryMs?: number;
}

/**
 * One dedicated connection that LISTENs to the fleet's change notifications, reconnecting when
 * it drops. `connected` is true only while notifications are sure to arrive: callers that cache
 * must not trust their cache while it is false (docs/server.md, "Several replicas").
 */
export class ChangeListener {
  connected = false;
  private client: pg.Client | null = null;
  private stopped = false;
  private retry: NodeJS.Timeout | null = null;

  constructor(private readonly options: ChangeListenerOptions) {}

  /** Resolves after the first attempt to listen, whether it worked or not. */
  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client({ connectionString: this.options.connectionString, application_name: 'bytebiota-server-listener' });
    this.client = client;
    const lost = () => {
      if (this.client !== client) return;
      this.client = null;
      this.connected = false;
      this.options.onGap();
      client.removeAllListeners('notification');
      void client.end().catch(() => undefined);
      if (!this.stopped) this.retry = setTimeout(() => void this.connect(), this.options.retryMs ?? 1000);
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (message) => {
      const payload = message.payload ?? '';
      const colon = payload.indexOf(':');
      if (colon < 0) return;
      this.options.onChange(payload.slice(0, colon), payload.slice(colon + 1));
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGES_CHANNEL}`);
      if (this.client !== client) return;
      // Anything cached before now may have missed a change made while nobody listened.
      this.options.onGap();
      this.connected = true;
    } catch {
      lost();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    const client = this.client;
    this.client = null;
    this.connected = false;
    if (client) await client.end().catch(() => undefined);
  }
}
