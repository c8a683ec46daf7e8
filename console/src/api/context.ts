import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { ConsoleApi } from './client';
import type { Session } from './types';

/** The signed-in page's API client and session, for every page below the shell. */
export const ApiContext = createContext<ConsoleApi | null>(null);
export const SessionContext = createContext<Session | null>(null);

export function useApi(): ConsoleApi {
  const api = useContext(ApiContext);
  if (api === null) throw new Error('useApi outside the signed-in console');
  return api;
}

export function useSession(): Session | null {
  return useContext(SessionContext);
}
