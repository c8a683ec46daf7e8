/**
 * A child process for the crash-safety test of `switchCurrent`: flips `current` between two
 * installed versions as fast as it can until it is killed (with -9, at a random moment).
 * Usage: engine-switch-loop.ts <install-root> <platform> <version-a> <version-b>
 */
import { installLayout } from '../../src/worker/install/install-layout.js';
import { switchCurrent } from '../../src/worker/install/installer.js';

const [root, platform, versionA, versionB] = process.argv.slice(2);
if (!root || !platform || !versionA || !versionB) {
  console.error('usage: engine-switch-loop.ts <install-root> <platform> <version-a> <version-b>');
  process.exit(2);
}
const layout = installLayout(root, platform);
let flips = 0;
for (;;) {
  await switchCurrent(layout, flips % 2 === 0 ? versionA : versionB);
  flips += 1;
  if (flips === 1) process.stdout.write('looping\n');
}
