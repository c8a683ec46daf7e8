/**
 * scripts/system-deps.mjs, the first step of `npm test`, run as a real process against a folder
 * of stand-in tools and a stand-in `apt-get` that records its calls: both the root branch (install)
 * and the other (print the `sudo apt-get install` line and stop) run on any machine.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TOOLS = ['initdb', 'chromium', 'promtool', 'openssl', 'curl', 'wine64'] as const;
type Tool = (typeof TOOLS)[number];

/** Records `DEBIAN_FRONTEND=… args` per call; `install` creates $FAKE_APT_CREATES in the tools folder, then exits $FAKE_APT_EXIT. */
const FAKE_APT_GET = `#!/bin/sh
echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >> "$FAKE_APT_LOG"
if [ "$1" = install ]; then
  for tool in $FAKE_APT_CREATES; do printf '#!/bin/sh\\n' > "$SYSTEM_DEPS_LOOK_IN/$tool"; chmod 755 "$SYSTEM_DEPS_LOOK_IN/$tool"; done
  exit "\${FAKE_APT_EXIT:-0}"
fi
`;

let root: string;
let binDir: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'bytebiota-system-deps-'));
  binDir = join(root, 'bin');
  await mkdir(binDir);
  await writeFile(join(binDir, 'apt-get'), FAKE_APT_GET, { mode: 0o755 });
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stderr: string;
  aptCalls: string[];
}

async function runScript(name: string, options: { present: readonly Tool[]; notExecutable?: readonly Tool[]; uid: number; aptCreates?: readonly Tool[]; aptExit?: number }): Promise<Run> {
  const tools = join(root, name);
  await mkdir(tools);
  for (const tool of options.present) await writeFile(join(tools, tool), '#!/bin/sh\n', { mode: 0o755 });
  for (const tool of options.notExecutable ?? []) {
    await writeFile(join(tools, tool), '#!/bin/sh\n');
    await chmod(join(tools, tool), 0o644);
  }
  const aptLog = join(root, `${name}.apt.log`);
  const child = spawn(process.execPath, ['scripts/system-deps.mjs'], {
    env: {
      PATH: `${binDir}:/usr/bin:/bin`,
      SYSTEM_DEPS_LOOK_IN: tools,
      SYSTEM_DEPS_UID: String(options.uid),
      FAKE_APT_LOG: aptLog,
      FAKE_APT_CREATES: (options.aptCreates ?? []).join(' '),
      FAKE_APT_EXIT: String(options.aptExit ?? 0),
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const aptCalls = await readFile(aptLog, 'utf8').then(
    (text) => text.trim().split('\n'),
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [];
      throw err;
    },
  );
  return { code, stderr, aptCalls };
}

const UPDATE = 'DEBIAN_FRONTEND=noninteractive update';
const install = (packages: string) => `DEBIAN_FRONTEND=noninteractive install -y --no-install-recommends ${packages}`;

describe('scripts/system-deps.mjs', () => {
  const cases: Array<{
    name: string;
    present: readonly Tool[];
    notExecutable?: readonly Tool[];
    uid: number;
    aptCreates?: readonly Tool[];
    aptExit?: number;
    code: number;
    aptCalls: string[];
    sudoLine?: string;
  }> = [
    { name: 'all-present-user', present: TOOLS, uid: 1000, code: 0, aptCalls: [] },
    { name: 'all-present-root', present: TOOLS, uid: 0, code: 0, aptCalls: [] },
    {
      name: 'missing-user',
      present: ['openssl', 'curl'],
      uid: 1000,
      code: 1,
      aptCalls: [],
      sudoLine: 'sudo apt-get install -y postgresql chromium prometheus wine64',
    },
    {
      name: 'not-executable-user',
      present: ['initdb', 'promtool', 'openssl', 'curl', 'wine64'],
      notExecutable: ['chromium'],
      uid: 1000,
      code: 1,
      aptCalls: [],
      sudoLine: 'sudo apt-get install -y chromium',
    },
    {
      name: 'missing-root-installs',
      present: ['openssl'],
      uid: 0,
      aptCreates: ['initdb', 'chromium', 'promtool', 'curl', 'wine64'],
      code: 0,
      aptCalls: [UPDATE, install('postgresql chromium prometheus curl wine64')],
    },
    {
      name: 'missing-root-install-fails',
      present: TOOLS.filter((tool) => tool !== 'promtool'),
      uid: 0,
      aptExit: 100,
      code: 1,
      aptCalls: [UPDATE, install('prometheus')],
    },
    {
      name: 'missing-root-still-missing',
      present: ['initdb', 'chromium', 'curl', 'wine64'],
      uid: 0,
      aptCreates: ['openssl'],
      code: 1,
      aptCalls: [UPDATE, install('prometheus openssl')],
    },
  ];

  for (const c of cases) {
    test(c.name, async () => {
      const run = await runScript(c.name, c);
      assert.equal(run.code, c.code, run.stderr);
      assert.deepEqual(run.aptCalls, c.aptCalls, run.stderr);
      if (c.code === 0) assert.equal(run.stderr.includes('sudo'), false, run.stderr);
      if (c.sudoLine !== undefined) assert.ok(run.stderr.split('\n').includes(c.sudoLine), run.stderr);
    });
  }
});
