/**
 * An instant in the viewer's own time zone; the exact ISO value stays in `datetime` and in the
 * tooltip, for copying into a log search.
 */
export function LocalTime({ iso, fallback = 'never' }: { iso: string | null | undefined; fallback?: string }) {
  if (!iso) return <span>{fallback}</span>;
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return <span>{iso}</span>;
  return (
    <time dateTime={iso} title={iso}>
      {date.toLocaleString()}
    </time>
  );
}
