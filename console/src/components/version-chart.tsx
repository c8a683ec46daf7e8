import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import type { VersionSample } from '../api/types';
import { compareVersions } from '../format';

const CHART_HEIGHT_PX = 240;
/** Line colours, each at least 4.5:1 against the white background. */
const SERIES_COLOURS = ['#0b57d0', '#b3261e', '#146c2e', '#7b3fb5', '#8a4b00', '#00627a', '#a0116b', '#3c4043'];

export function versionsOf(samples: readonly VersionSample[]): string[] {
  return [...new Set(samples.flatMap((sample) => Object.keys(sample.versions)))].sort(compareVersions);
}

/** uPlot's columns: times in seconds, then one column per version (0 where a sample has none of it). */
function alignedData(samples: readonly VersionSample[], versions: readonly string[]): uPlot.AlignedData {
  return [samples.map((sample) => Date.parse(sample.at) / 1000), ...versions.map((version) => samples.map((sample) => sample.versions[version] ?? 0))];
}

/** Axis labels in the viewer's locale and time zone, as the rest of the page shows times; the date only when the span needs it. */
function timeLabels(splits: number[]): string[] {
  const first = splits[0] ?? 0;
  const last = splits.at(-1) ?? 0;
  const format: Intl.DateTimeFormatOptions = last - first > 86_400 ? { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' } : { hour: '2-digit', minute: '2-digit' };
  return splits.map((seconds) => new Date(seconds * 1000).toLocaleString(undefined, format));
}

/**
 * The version distribution over time, one line per version with uPlot's legend. The canvas is
 * hidden from assistive technology: the caller gives the same facts in words.
 */
export function VersionChart({ samples }: { samples: readonly VersionSample[] }) {
  const container = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = container.current;
    if (element === null) return;
    const versions = versionsOf(samples);
    const width = () => Math.max(240, element.clientWidth);
    const plot = new uPlot(
      {
        width: width(),
        height: CHART_HEIGHT_PX,
        scales: { x: { time: true } },
        series: [
          { label: 'Time' },
          ...versions.map((version, index) => ({
            label: version,
            stroke: SERIES_COLOURS[index % SERIES_COLOURS.length],
            width: 2,
            points: { show: samples.length <= 24 },
          })),
        ],
        axes: [{ values: (_plot, splits) => timeLabels(splits) }, { label: 'live workers' }],
        // The legend names the lines; values under the cursor would read "--" on a static page.
        legend: { show: true, live: false },
      },
      alignedData(samples, versions),
      element,
    );
    // uPlot draws at a fixed size: follow the container as the window narrows or widens.
    const resize = new ResizeObserver(() => plot.setSize({ width: width(), height: CHART_HEIGHT_PX }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [samples]);
  return <div class="version-chart" ref={container} aria-hidden="true" />;
}
