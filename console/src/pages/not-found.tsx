import { usePageTitle } from './page-title';

export function NotFoundPage({ hash }: { hash: string }) {
  usePageTitle('Not found');
  return (
    <>
      <h1 tabIndex={-1}>Nothing here</h1>
      <p>
        The console has no page at <code>{hash}</code>. Go to the <a href="#/">overview</a>.
      </p>
    </>
  );
}
