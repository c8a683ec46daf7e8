import type { ComponentChildren } from 'preact';

/**
 * What a page shows before its first answer, or when an answer failed. A failed refresh of a page
 * that already shows data says so without hiding the data.
 */
export function LoadStatus({ loading, error, children }: { loading: boolean; error: Error | null; children?: ComponentChildren }) {
  if (error !== null) {
    return (
      <p class="notice notice-error" role="alert">
        {loading ? 'Could not load this page: ' : 'Could not refresh this page: '}
        {error.message}
      </p>
    );
  }
  if (loading) return <p role="status">Loading…</p>;
  return <>{children}</>;
}
