import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

export interface Loaded<T> {
  /** The last answer that arrived; kept while a refresh is under way or fails, so the page does not flicker. */
  data: T | null;
  /** True while `data` is the answer for an earlier key (with `keepPrevious`), or there is none yet. */
  loading: boolean;
  /** The last load's failure, cleared by the next success. */
  error: Error | null;
  /** Load again now (after an action changed what is shown). */
  reload: () => void;
}

export interface LoadOptions {
  /** Poll: load again this long after each answer. */
  intervalMs?: number;
  /** Show the previous key's answer until the new one is in (a table turning a page keeps its place). */
  keepPrevious?: boolean;
}

/**
 * Load `load` when `key` changes, and again every `intervalMs` when given. The next poll is
 * scheduled only once the previous answer is in, so a slow server never has requests piling
 * up; a request for an old key is aborted and its answer dropped.
 */
export function useLoaded<T>(key: string, load: (signal: AbortSignal) => Promise<T>, options: LoadOptions = {}): Loaded<T> {
  const { intervalMs, keepPrevious = false } = options;
  const [state, setState] = useState<{ key: string; data: T | null; error: Error | null }>({ key, data: null, error: null });
  const [reloads, setReloads] = useState(0);
  // The newest `load`, without restarting the effect each render (it is a new closure each time).
  const loadRef = useRef(load);
  loadRef.current = load;

  useEffect(() => {
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      try {
        const data = await loadRef.current(controller.signal);
        if (!controller.signal.aborted) setState({ key, data, error: null });
      } catch (err) {
        if (controller.signal.aborted) return;
        const error = err instanceof Error ? err : new Error(String(err));
        setState((previous) => ({ key, data: previous.key === key ? previous.data : null, error }));
      }
      if (intervalMs !== undefined && !controller.signal.aborted) timer = setTimeout(() => void run(), intervalMs);
    };
    void run();
    return () => {
      controller.abort();
      clearTimeout(timer);
    };
  }, [key, intervalMs, reloads]);

  const reload = useCallback(() => setReloads((n) => n + 1), []);
  if (state.key === key) return { data: state.data, loading: state.data === null && state.error === null, error: state.error, reload };
  // An answer for another key is shown only when asked for, and never its error.
  return { data: keepPrevious ? state.data : null, loading: true, error: null, reload };
}
