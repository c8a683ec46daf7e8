const PROGRESS_BAR_WIDTH = 30;
const PROGRESS_REDRAW_MS = 100;
const MIB = 1024 * 1024;

/**
 * A one-line progress bar for an operator watching a terminal (`--force-update` by hand):
 * redrawn with a carriage return at most every 100 ms, ended with a newline.
 */
export function terminalProgressBar(
  stream: NodeJS.WritableStream,
  label: string,
  now: () => number = Date.now,
): { update(receivedBytes: number, totalBytes: number): void; done(): void } {
  let lastDrawMs = -Infinity;
  let drawn = false;
  const draw = (receivedBytes: number, totalBytes: number): void => {
    const fraction = totalBytes > 0 ? Math.min(1, receivedBytes / totalBytes) : 0;
    const filled = Math.round(fraction * PROGRESS_BAR_WIDTH);
    stream.write(
      `\r${label} [${'#'.repeat(filled)}${'.'.repeat(PROGRESS_BAR_WIDTH - filled)}] ${Math.floor(fraction * 100)}% ` +
        `${(receivedBytes / MIB).toFixed(1)}/${(totalBytes / MIB).toFixed(1)} MiB`,
    );
    drawn = true;
  };
  return {
    update(receivedBytes, totalBytes) {
      const at = now();
      if (at - lastDrawMs < PROGRESS_REDRAW_MS && receivedBytes < totalBytes) return;
      lastDrawMs = at;
      draw(receivedBytes, totalBytes);
    },
    done() {
      if (drawn) stream.write('\n');
    },
  };
}
