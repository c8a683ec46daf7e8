#!/usr/bin/env node
// The first step of `npm test`: the system tools the tests use, from Debian packages.
// Everything present: prints nothing, exit 0. Something missing: as root, `apt-get update` and
// `apt-get install` of the missing packages, then on; otherwise the `sudo apt-get install` line
// to run, and exit 1 before any test starts.
//
// Its test (test/deploy/system-deps.test.ts) runs it with two variables, both unset in normal use:
// SYSTEM_DEPS_LOOK_IN=DIR looks for every tool in DIR only (instead of its path or PATH), and
// SYSTEM_DEPS_UID=N stands for the user id, so that both branches run on any machine.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, readdirSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * `path`: the tests use that exact file; `command`: found on PATH; `versioned`: a file under any
 * version's folder (PostgreSQL's server binaries, which Debian keeps off PATH, in
 * /usr/lib/postgresql/<major>/bin). `package`: Debian's name.
 */
const CHECKS = [
  { versioned: { root: '/usr/lib/postgresql', file: 'bin/initdb' }, package: 'postgresql' },
  { path: '/usr/bin/chromium', package: 'chromium' },
  { command: 'promtool', package: 'prometheus' },
  { command: 'openssl', package: 'openssl' },
  { command: 'curl', package: 'curl' },
  // Wine runs the Windows worker (test/windows/, test/helpers/wine.ts). Debian's wine64 package
  // puts the loader here, off PATH; the `wine` package would add /usr/bin/wine on top of it.
  { path: '/usr/lib/wine/wine64', package: 'wine64' },
];

function isExecutableFile(file) {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    // Missing, not executable, or not reachable: any of them means the tool cannot be run.
    return false;
  }
}

function nameOf(check) {
  return check.path ?? check.command ?? `${check.versioned.root}/<version>/${check.versioned.file}`;
}

function found(check, lookIn) {
  if (lookIn !== undefined) return isExecutableFile(join(lookIn, nameOf(check).split('/').pop()));
  if (check.path !== undefined) return isExecutableFile(check.path);
  if (check.versioned !== undefined) {
    // The tests take PostgreSQL's binaries from $BYTEBIOTA_PG_BIN when it is set.
    const pgBin = process.env.BYTEBIOTA_PG_BIN;
    if (pgBin) return isExecutableFile(join(pgBin, 'initdb'));
    const { root, file } = check.versioned;
    let versions = [];
    try {
      versions = readdirSync(root);
    } catch {
      // No such folder: no version installed.
    }
    return versions.some((version) => isExecutableFile(join(root, version, file)));
  }
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && isExecutableFile(join(dir, check.command)));
}

function missingChecks(lookIn) {
  return CHECKS.filter((check) => !found(check, lookIn));
}

function describe(checks) {
  return checks.map((check) => `${nameOf(check)} (package ${check.package})`).join(', ');
}

function userId() {
  const text = process.env.SYSTEM_DEPS_UID;
  if (text === undefined) return process.getuid?.();
  if (!/^\d+$/.test(text)) {
    console.error(`system-deps: SYSTEM_DEPS_UID must be a user id, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return Number(text);
}

function aptGet(args) {
  console.error(`system-deps: apt-get ${args.join(' ')}`);
  const result = spawnSync('apt-get', args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (result.error) {
    console.error(`system-deps: cannot run apt-get (${result.error.message}): install the packages above with this system's package manager`);
    process.exit(1);
  }
  if (result.status !== 0) {
    console.error(`system-deps: apt-get ${args[0]} failed (exit ${result.status ?? result.signal})`);
    process.exit(1);
  }
}

const lookIn = process.env.SYSTEM_DEPS_LOOK_IN;
const missing = missingChecks(lookIn);
if (missing.length === 0) process.exit(0);

const packages = [...new Set(missing.map((check) => check.package))];
console.error(`system-deps: the tests need ${describe(missing)}`);
if (userId() !== 0) {
  console.error('system-deps: install them, then run npm test again:');
  console.error(`sudo apt-get install -y ${packages.join(' ')}`);
  process.exit(1);
}

aptGet(['update']);
// Without recommends (which would add some 190 desktop packages): headless chromium renders
// with the DejaVu fonts its dependencies bring and, without chromium-sandbox, sandboxes itself
// with user namespaces (Debian allows them); promtool needs none of prometheus's recommends, and
// wine64 runs console programs such as node.exe without its fonts and multimedia recommends.
aptGet(['install', '-y', '--no-install-recommends', ...packages]);
const stillMissing = missingChecks(lookIn);
if (stillMissing.length > 0) {
  console.error(`system-deps: still missing after apt-get install: ${describe(stillMissing)}`);
  process.exit(1);
}
