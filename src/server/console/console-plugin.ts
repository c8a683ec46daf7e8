import fp from 'fastify-plugin';
import { loadConsoleAssets } from './assets.js';
import { consoleDataRoutes } from './data-routes.js';
import { consoleGuardPlugin } from './guard.js';
import { OverviewService } from './overview.js';
import { CONSOLE_CSP, consolePageRoutes, isConsoleUrl } from './page-routes.js';
import { consoleSessionRoutes } from './session-routes.js';
import { ConsoleSessions } from './sessions.js';
import { VersionSampler } from './version-sampler.js';

export interface ConsoleOptions {
  /** Where the built page is (dist/console); a missing build answers 503 `console_not_built`. */
  assetsDir: string;
  sessionTtlSeconds: number;
  sampleIntervalSeconds: number;
  /** Sample on a timer (the default); false leaves sampling to tests. */
  sampleOnTimer: boolean;
}

/**
 * The fleet console (docs/console.md): the page, its session routes and its data routes. The
 * security headers go on every console response, errors and API answers included.
 */
export const consolePlugin = fp<ConsoleOptions>(
  async (app, options) => {
    const sessions = new ConsoleSessions(app.fleet, app.clock, options.sessionTtlSeconds);
    const overview = new OverviewService({
      fleet: app.fleet,
      clock: app.clock,
      rollouts: app.rollouts,
      heartbeatIntervalSeconds: app.settings.heartbeatIntervalSeconds,
      workerStaleAfterSeconds: app.settings.workerStaleAfterSeconds,
    });
    const sampler = new VersionSampler({
      fleet: app.fleet,
      clock: app.clock,
      logger: app.log,
      intervalSeconds: options.sampleIntervalSeconds,
      liveSince: () => new Date(app.clock.now().getTime() - app.settings.workerStaleAfterSeconds * 1000),
    });
    app.decorate('consoleSampler', sampler);
    if (options.sampleOnTimer) app.addHook('onReady', async () => sampler.start());
    app.addHook('onClose', async () => sampler.stop());
    app.addHook('onSend', async (request, reply) => {
      if (!isConsoleUrl(request.url)) return;
      void reply
        .header('content-security-policy', CONSOLE_CSP)
        .header('x-content-type-options', 'nosniff')
        .header('referrer-policy', 'no-referrer')
        .header('x-frame-options', 'DENY');
    });

    await app.register(consoleGuardPlugin, { sessions });
    await app.register(consolePageRoutes, { assets: loadConsoleAssets(options.assetsDir) });
    await app.register(consoleSessionRoutes, { sessions });
    await app.register(consoleDataRoutes, { overview, sampleIntervalSeconds: options.sampleIntervalSeconds });
  },
  { name: 'bytebiota-console', dependencies: ['@fastify/cookie'] },
);
