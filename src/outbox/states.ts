/**
 * The Outbox's state machine: which moves exist, the checks that refuse any
 * other, and the error a refused move throws (nothing is written then).
 */
import { InvalidArgumentError, TidewireError } from "../errors.js";
import { checkOneOf } from "../validate.js";
import { OUTBOX_STATES, OUTBOX_TRANSITIONS, type OutboxState } from "./types.js";

export const FINAL_STATES: readonly OutboxState[] = ["delivered", "bounced"];

/** A move that the message's current state does not allow; nothing was written. */
export class IllegalTransitionError extends TidewireError {
  constructor(
    readonly id: number,
    readonly from: OutboxState,
    readonly to: OutboxState,
    reason = describeMoves(from),
  ) {
    super(`message ${id} is ${from} and cannot move to ${to}: ${reason}`, "ERR_ILLEGAL_TRANSITION");
    this.name = "IllegalTransitionError";
  }
}

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

function describeMoves(state: OutboxState): string {
  const next = OUTBOX_TRANSITIONS[state];
  return next.length === 0 ? `${state} is final` : `${state} moves only to ${next.join(" or ")}`;
}
