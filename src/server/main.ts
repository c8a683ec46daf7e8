import { CommanderError } from 'commander';
import { isCodedError, errorMessage } from '../shared/errors.js';
import { buildProgram } from './cli/program.js';

/** Exit codes: 0 normal, 1 unexpected failure, 2 usage or configuration error. */
async function main(argv: string[]): Promise<void> {
  const program = buildProgram(process.env, (line) => process.stdout.write(`${line}\n`));
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exit(err.exitCode === 0 ? 0 : 2);
    }
    const usage =
      isCodedError(err) && ['usage', 'key_invalid', 'database_unavailable', 'database_schema_newer'].includes(err.code);
    process.stderr.write(`bytebiota-server: ${errorMessage(err)}\n`);
    process.exit(usage ? 2 : 1);
  }
}

await main(process.argv);
