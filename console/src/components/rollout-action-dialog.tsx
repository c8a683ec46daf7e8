import { useEffect, useId, useRef, useState } from 'preact/hooks';
import { ApiError } from '../api/client';
import { useApi } from '../api/context';
import type { RolloutAction, RolloutStatus } from '../api/types';

/** What each control does, in the words of `bytebiota-admin rollout --help`; halt and abort must say why. */
export const ROLLOUT_ACTIONS: ReadonlyArray<{ action: RolloutAction; label: string; effect: string; reasonRequired: boolean }> = [
  { action: 'pause', label: 'Pause', effect: 'No new workers are admitted; workers already admitted still get the release.', reasonRequired: false },
  { action: 'resume', label: 'Resume', effect: 'The rollout goes on; its failure count starts afresh.', reasonRequired: false },
  { action: 'halt', label: 'Halt', effect: 'Nobody is offered this release any more, admitted workers included.', reasonRequired: true },
  { action: 'abort', label: 'Abort', effect: 'The rollout ends for good; it cannot be resumed.', reasonRequired: true },
];

const MAX_REASON_CHARS = 500;

/**
 * Confirms one control of one rollout in a modal `<dialog>` (showModal makes the rest of the page
 * inert and Escape cancels), then POSTs it. The rollout's serial goes with it, so that a release
 * published meanwhile is never the one halted by mistake. A refusal keeps the dialog open with
 * the server's message. Focus goes back to the button that opened it.
 */
export function RolloutActionDialog({
  rollout,
  action,
  onClose,
  onDone,
}: {
  rollout: RolloutStatus;
  action: RolloutAction;
  onClose: () => void;
  onDone: (after: RolloutStatus) => void;
}) {
  const api = useApi();
  const dialog = useRef<HTMLDialogElement>(null);
  const opener = useRef<Element | null>(null);
  const titleId = useId();
  const effectId = useId();
  const reasonId = useId();
  const [busy, setBusy] = useState(false);
  const [refusal, setRefusal] = useState<string | null>(null);
  const control = ROLLOUT_ACTIONS.find((entry) => entry.action === action)!;

  useEffect(() => {
    const element = dialog.current;
    if (element === null) return;
    opener.current = document.activeElement;
    element.showModal();
    return () => {
      if (element.open) element.close();
      if (opener.current instanceof HTMLElement) opener.current.focus();
    };
  }, []);

  const submit = async (event: SubmitEvent) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    const reason = (new FormData(form).get('reason') ?? '').toString().trim();
    setBusy(true);
    setRefusal(null);
    try {
      const after = await api.post<RolloutStatus>(`/console/api/rollouts/${encodeURIComponent(rollout.channel)}/${action}`, {
        serial: rollout.serial,
        ...(reason !== '' ? { reason } : {}),
      });
      onDone(after);
    } catch (err) {
      setRefusal(err instanceof ApiError ? `${err.message} (${err.code})` : String(err));
      setBusy(false);
    }
  };

  return (
    // The dialog's own Escape handling fires `cancel`; closing it is the page's decision.
    <dialog
      ref={dialog}
      class="confirm"
      aria-labelledby={titleId}
      aria-describedby={effectId}
      onCancel={(event) => {
        event.preventDefault();
        onClose();
      }}
    >
      <form onSubmit={(event) => void submit(event)}>
        <h2 id={titleId}>
          {control.label} the rollout of {rollout.version} on {rollout.channel}?
        </h2>
        <p id={effectId}>{control.effect}</p>
        <div class="field">
          <label for={reasonId}>Reason{control.reasonRequired ? ' (required)' : ' (optional)'}</label>
          <textarea
            id={reasonId}
            name="reason"
            rows={3}
            maxLength={MAX_REASON_CHARS}
            required={control.reasonRequired}
            autoFocus={control.reasonRequired}
          />
        </div>
        {refusal !== null ? (
          <p class="notice notice-error" role="alert">
            The server refused: {refusal}
          </p>
        ) : null}
        <div class="actions">
          <button type="button" onClick={onClose} autoFocus={!control.reasonRequired}>
            Cancel
          </button>
          <button type="submit" class={action === 'halt' || action === 'abort' ? 'danger' : 'primary'} disabled={busy}>
            {busy ? 'Working…' : `${control.label} rollout`}
          </button>
        </div>
      </form>
    </dialog>
  );
}
