/**
 * Checked by the type checker only (npm run typecheck), never run: the console's copy of the
 * protocol types (console/src/api/types.ts) must be the same as src/protocol's. Change one side
 * without the other and `tsc` fails here.
 */
import type * as Page from '../../console/src/api/types.js';
import type { ExplainStep } from '../../src/admin/client.js';
import type { UpdateState, WorkerState } from '../../src/protocol/messages.js';
import type { RolloutAction, RolloutState, RolloutStatus, WaveProgress } from '../../src/protocol/rollouts.js';

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

export const PAGE_TYPES_MATCH_PROTOCOL: [
  Same<Page.RolloutStatus, RolloutStatus>,
  Same<Page.WaveProgress, WaveProgress>,
  Same<Page.RolloutState, RolloutState>,
  Same<Page.RolloutAction, RolloutAction>,
  Same<Page.WorkerState, WorkerState>,
  Same<Page.UpdateState, UpdateState>,
  Same<Page.OfferStep, ExplainStep>,
] = [true, true, true, true, true, true, true];
