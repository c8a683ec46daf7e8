import type { ComponentChildren } from 'preact';
import { useEffect, useId, useRef, useState } from 'preact/hooks';

/**
 * A table in its own horizontally scrolling box, so a narrow window scrolls the table rather
 * than the page. While the table is wider than its box, the box is a named, focusable region,
 * so a keyboard user can scroll it too; a table that fits adds no tab stop and no landmark.
 */
export function ScrollTable({ caption, children, className }: { caption: ComponentChildren; children: ComponentChildren; className?: string }) {
  const captionId = useId();
  const box = useRef<HTMLDivElement>(null);
  const [overflows, setOverflows] = useState(false);
  useEffect(() => {
    const element = box.current;
    if (element === null) return;
    const measure = () => setOverflows(element.scrollWidth > element.clientWidth);
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(element);
    if (element.firstElementChild !== null) observer.observe(element.firstElementChild);
    return () => observer.disconnect();
  }, []);
  return (
    <div
      ref={box}
      class="table-scroll"
      {...(overflows ? { role: 'region', 'aria-labelledby': captionId, tabIndex: 0 } : {})}
    >
      <table class={className}>
        <caption id={captionId}>{caption}</caption>
        {children}
      </table>
    </div>
  );
}

/** A two-column table of counts: `label | workers`. */
export function CountsTable({ caption, heading, rows }: { caption: string; heading: string; rows: ReadonlyArray<{ label: string; count: number }> }) {
  return (
    <ScrollTable caption={caption} className="counts">
      <thead>
        <tr>
          <th scope="col">{heading}</th>
          <th scope="col" class="num">
            Workers
          </th>
        </tr>
      </thead>
      <tbody>
        {rows.length === 0 ? (
          <tr>
            <td colSpan={2}>none</td>
          </tr>
        ) : (
          rows.map((row) => (
            <tr key={row.label}>
              <th scope="row">{row.label}</th>
              <td class="num">{row.count.toLocaleString()}</td>
            </tr>
          ))
        )}
      </tbody>
    </ScrollTable>
  );
}
