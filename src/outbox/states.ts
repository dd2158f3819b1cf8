/**
 * The Outbox's state machine: which moves exist, the checks that refuse any
 * other, and the error a refused move throws (nothing is written then).
 */
import { InvalidArgumentError } from "../errors.js";
import { checkOneOf } from "../validate.js";
import { OUTBOX_STATES, OUTBOX_TRANSITIONS, type OutboxState } from "./types.js";

export const FINAL_STATES: readonly OutboxState[] = ["delivered", "bounced"];

/** The error of a refused move; it lives in errors.ts because the job queue's moves throw it too. */
export { IllegalTransitionError } from "../errors.js";

export function checkState(argument: string, value: unknown): OutboxState {
  return checkOneOf(argument, value, OUTBOX_STATES);
}

/** Every state in `from` must be able to move to `to`; a caller asking otherwise has a bug. */
export function checkFrom(from: unknown, to: OutboxState): OutboxState[] | null {
  if (from === undefined) return null;
  const list: unknown[] = Array.isArray(from) ? from : [from];
  if (list.length === 0) throw new InvalidArgumentError("from", "must name at least one state");
  return list.map((s) => {
    const state = checkState("from", s);
    if (!OUTBOX_TRANSITIONS[state].includes(to)) {
      throw new InvalidArgumentError(
        "from",
        `a message never moves from ${state} to ${to}: ${describeMoves(state)}`,
      );
    }
    return state;
  });
}

export function describeMoves(state: OutboxState): string {
  const next = OUTBOX_TRANSITIONS[state];
  return next.length === 0 ? `${state} is final` : `${state} moves only to ${next.join(" or ")}`;
}
