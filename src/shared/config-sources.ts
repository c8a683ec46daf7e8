import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { UsageError, errorMessage } from './errors.js';

/**
 * Settings given by a command-line flag, an environment variable or a key of the JSON config
 * file, in that order of precedence, else a default (docs/environment.md). The server and the
 * worker each keep their own table of settings and their own value checks; what they share is
 * reading the file, the precedence, and naming the source in every usage error (exit code 2).
 */

/** Where one setting can be given. */
export interface SettingNames {
  /** The long flag, dashes included: `--port`. */
  flag: string;
  env: string;
  fileKey: string;
}

/** A setting's value as given, and where: messages name `source`; relative paths resolve against `baseDir`. */
export interface RawSetting {
  value: unknown;
  source: string;
  baseDir: string;
}

export interface ConfigFile {
  /** Absolute path of the file. */
  path: string;
  /** Its folder: relative paths in the file resolve against it. */
  dir: string;
  values: Record<string, unknown>;
}

/** Everything below the flags, for pickSetting. */
export interface ConfigLayers {
  env: Record<string, string | undefined>;
  file: ConfigFile | null;
  /** Where relative paths from flags and the environment resolve. */
  cwd: string;
}

/**
 * The JSON config file at `path` (from `--config` or its environment variable); null when no
 * path is given. A file that cannot be read, is not one JSON object, or has a key outside
 * `knownKeys` is a UsageError: a misspelt key would otherwise be ignored and its default used.
 */
export async function readConfigFile(
  path: string | undefined,
  options: { cwd: string; knownKeys: Iterable<string>; readFile?: (path: string) => Promise<string> },
): Promise<ConfigFile | null> {
  if (path === undefined || path === '') return null;
  const fullPath = resolve(options.cwd, path);
  const read = options.readFile ?? ((file: string) => readFile(file, 'utf8'));
  let text: string;
  try {
    text = await read(fullPath);
  } catch (err) {
    throw new UsageError(`cannot read config file ${fullPath}: ${errorMessage(err)}`, { cause: err });
  }
  let values: unknown;
  try {
    values = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`config file ${fullPath} is not valid JSON: ${errorMessage(err)}`, { cause: err });
  }
  if (typeof values !== 'object' || values === null || Array.isArray(values)) {
    throw new UsageError(`config file ${fullPath} must hold one JSON object`);
  }
  const known = new Set(options.knownKeys);
  for (const key of Object.keys(values)) {
    if (!known.has(key)) {
      throw new UsageError(`config file ${fullPath}: unknown key ${JSON.stringify(key)}; known keys: ${[...known].sort().join(', ')}`);
    }
  }
  return { path: fullPath, dir: dirname(fullPath), values: values as Record<string, unknown> };
}

/**
 * The highest-precedence value of one setting: the flag, else the environment variable, else the
 * config file's key; undefined when none is given, so the caller's default applies. An empty
 * environment variable and an empty list of repeated flags count as not given.
 */
export function pickSetting(names: SettingNames, flagValue: unknown, layers: ConfigLayers): RawSetting | undefined {
  if (flagValue !== undefined && !(Array.isArray(flagValue) && flagValue.length === 0)) {
    return { value: flagValue, source: names.flag, baseDir: layers.cwd };
  }
  const envValue = layers.env[names.env];
  if (envValue !== undefined && envValue !== '') {
    return { value: envValue, source: `environment variable ${names.env}`, baseDir: layers.cwd };
  }
  const file = layers.file;
  if (file !== null && Object.hasOwn(file.values, names.fileKey)) {
    return { value: file.values[names.fileKey], source: `config file ${file.path}: ${names.fileKey}`, baseDir: file.dir };
  }
  return undefined;
}
