import { useEffect } from 'preact/hooks';

/** The window's title follows the page, so tabs and history entries say which page they hold. */
export function usePageTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} · ByteBiota fleet`;
  }, [title]);
}
