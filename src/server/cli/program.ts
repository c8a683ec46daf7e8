import { Command, CommanderError } from 'commander';
import { SETTINGS } from '../config.js';
import { copyDatabase } from './db-copy.js';
import { serve } from './serve.js';
import { createTokenCommand, listTokensCommand, revokeTokenCommand } from './token.js';

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** The `bytebiota-server` command line (docs/protocol.md, section 3). */
export function buildProgram(env: Record<string, string | undefined>, print: (line: string) => void): Command {
  const program = new Command('bytebiota-server')
    .description('The ByteBiota update server: signed manifests, artifacts, reports, handshake, fleet view')
    .exitOverride()
    .showHelpAfterError();

  const serveCommand = program
    .command('serve', { isDefault: true })
    .description('run the server (the default command)')
    .option('--config <file>', 'JSON config file (env BYTEBIOTA_CONFIG)');
  for (const setting of SETTINGS) {
    const label = setting.kind === 'flag' ? `--${setting.flag}` : `--${setting.flag} <value>`;
    const shownDefault = Array.isArray(setting.default) && setting.default.length === 0 ? 'none' : setting.default;
    const help = `${setting.fileKey} (env ${setting.env}${shownDefault !== undefined ? `, default ${String(shownDefault)}` : ''})`;
    if (setting.kind === 'list') serveCommand.option(label, `${help}; repeatable`, collect);
    else serveCommand.option(label, help);
  }
  serveCommand.action(async (options: Record<string, string | string[] | boolean | undefined>) => {
    await serve(options, env);
  });

  const token = program.command('token').description('manage bearer tokens');
  token
    .command('create')
    .description('create a token; prints it as the last line')
    .option('--db <db>', 'SQLite file or postgres:// URL (env BYTEBIOTA_DB)')
    .option('--role <role>', 'worker, admin, or enroll (an enrollment token: a worker spends it for its own credential)')
    .option('--pool <pool>', 'the worker pool of a worker or enrollment token')
    .option('--label <text>', 'a note for `token list`')
    .option('--expires-in <duration>', 'enrollment tokens: valid for this long (30d, 12h, 90m); default no expiry')
    .option('--max-uses <n>', 'enrollment tokens: workers it can enroll; default no limit')
    .action(async (options: Parameters<typeof createTokenCommand>[0]) => createTokenCommand(options, env, print));
  token
    .command('revoke')
    .description('revoke a token or enrollment token by its id')
    .argument('<token-id>')
    .option('--db <db>', 'SQLite file or postgres:// URL (env BYTEBIOTA_DB)')
    .action(async (id: string, options: Parameters<typeof revokeTokenCommand>[1]) => revokeTokenCommand(id, options, env, print));
  token
    .command('list')
    .description('list tokens and enrollment tokens (ids, roles, pools, uses; never secrets)')
    .option('--db <db>', 'SQLite file or postgres:// URL (env BYTEBIOTA_DB)')
    .option('--json', 'one JSON object per line')
    .action(async (options: Parameters<typeof listTokensCommand>[0]) => listTokensCommand(options, env, print));

  const db = program.command('db').description('manage the fleet database');
  db.command('copy')
    .description('copy a SQLite fleet database into a new, empty PostgreSQL database, verified table by table')
    .requiredOption('--from <file>', 'the SQLite file (stop the server that writes it first)')
    .requiredOption('--to <url>', 'the postgres:// URL of an empty database')
    .action(async (options: { from: string; to: string }) => {
      const result = await copyDatabase(options.from, options.to, print);
      if (result.duplicateReports > 0) print(`${result.duplicateReports} retried reports were stored twice in SQLite; copied once`);
      print(`copied ${result.tables.reduce((sum, table) => sum + table.rows, 0)} rows in ${result.tables.length} tables; point every replica's --db at the new database`);
    });
  return program;
}

export { CommanderError };
