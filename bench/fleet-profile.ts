import { copyFileSync, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The top of a V8 CPU profile (`node --cpu-prof`) of the server, for bench/fleet.ts with
 * BENCH_SERVER_PROFILE=1: self time by function, and by where the code lives (a package in
 * node_modules, a file of src/, Node's internals, the garbage collector).
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function area(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return url.replace(/^node:internal\//, 'node:').split('/').slice(0, 2).join('/');
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const src = /\/(src\/.*)$/.exec(url);
  return src ? src[1]! : url;
}

/**
 * Lines describing the largest profile in `dir` (the main thread's: `--import tsx` adds a loader
 * thread with a small profile of its own): top functions and areas by self time.
 */
export function summarizeProfile(dir: string, top = 15, keepAs?: string): string[] {
  const files = existsSync(dir) ? readdirSync(dir).filter((name) => name.endsWith('.cpuprofile')) : [];
  if (files.length === 0) return [`no .cpuprofile in ${dir}`];
  const file = files.map((name) => join(dir, name)).sort((a, b) => statSync(b).size - statSync(a).size)[0]!;
  if (keepAs) copyFileSync(file, keepAs);
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const byFunction = new Map<string, number>();
  const byArea = new Map<string, number>();
  let totalUs = 0;
  profile.samples.forEach((id, index) => {
    const deltaUs = profile.timeDeltas[index] ?? 0;
    const frame = byId.get(id)!.callFrame;
    if (frame.functionName === '(idle)') return;
    totalUs += deltaUs;
    const where = area(frame.url, frame.functionName);
    // Line numbers are the transpiled code's (tsx), so functions are named by file only.
    const name = `${frame.functionName || '(anonymous)'} ${where}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + deltaUs);
    byArea.set(where, (byArea.get(where) ?? 0) + deltaUs);
  });
  const rows = (map: Map<string, number>) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => `  ${((100 * us) / totalUs).toFixed(1).padStart(5)} %  ${name}`);
  return [
    `CPU profile ${keepAs ?? file}, ${(totalUs / 1e6).toFixed(1)} s of non-idle samples (the whole run: start, search, release wave), self time:`,
    ' by function:',
    ...rows(byFunction),
    ' by package / source file:',
    ...rows(byArea),
  ];
}
