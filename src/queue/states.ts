/**
 * The job state machine: every move a job can make, which operations make it,
 * and the checks `moveToState` applies (both queues share them, so they refuse
 * the same moves with the same errors).
 *
 * Contract: a job is created pending. Only a claim moves it to running; a
 * running job ends completed, failed or cancelled, or goes back to pending (a
 * retry along the backoff, a release, a lapsed lease). A failed or cancelled
 * job goes back to pending only (retry, moveToState); completed is final. Any
 * other move is refused and writes nothing: `moveToState` throws an
 * InvalidArgumentError when its arguments name one (`to: "running"`, a `from`
 * state that never reaches `to`), an IllegalTransitionError when it is the
 * job's current state, and returns false when the job is missing, is in `to`
 * already, is not in `from`, or would go back to pending while another
 * unfinished job holds its key.
 */
import { IllegalTransitionError, InvalidArgumentError } from "../errors.js";
import type { JobState } from "./types.js";
import { checkState } from "./validate.js";

/** The operations that change a job's state. */
export type JobMover = "claim" | "settle" | "release" | "reapExpired" | "moveToState" | "retry" | "cancel";

/** One edge of the state machine and the operations that take it. */
export interface JobMove {
  from: JobState;
  to: JobState;
  by: readonly JobMover[];
}

export const JOB_MOVES: readonly JobMove[] = [
  { from: "pending", to: "running", by: ["claim"] },
  { from: "pending", to: "completed", by: ["moveToState"] },
  { from: "pending", to: "failed", by: ["moveToState"] },
  { from: "pending", to: "cancelled", by: ["moveToState", "cancel"] },
  { from: "running", to: "completed", by: ["settle", "moveToState"] },
  { from: "running", to: "failed", by: ["settle", "reapExpired", "moveToState"] },
  { from: "running", to: "pending", by: ["settle", "release", "reapExpired", "moveToState"] },
  { from: "running", to: "cancelled", by: ["moveToState", "cancel"] },
  { from: "failed", to: "pending", by: ["retry", "moveToState"] },
  { from: "cancelled", to: "pending", by: ["retry", "moveToState"] },
];

/** Per state, the states a job in it may move to (by any operation). */
export const JOB_TRANSITIONS: Readonly<Record<JobState, readonly JobState[]>> = {
  pending: targets("pending"),
  running: targets("running"),
  completed: targets("completed"),
  failed: targets("failed"),
  cancelled: targets("cancelled"),
};

function targets(from: JobState): JobState[] {
  return JOB_MOVES.filter((m) => m.from === from).map((m) => m.to);
}

/** Per target, the states `moveToState` moves a job from into it. */
const MOVABLE_FROM: Readonly<Record<JobState, readonly JobState[]>> = {
  pending: sources("pending"),
  running: sources("running"),
  completed: sources("completed"),
  failed: sources("failed"),
  cancelled: sources("cancelled"),
};

function sources(to: JobState): JobState[] {
  return JOB_MOVES.filter((m) => m.to === to && m.by.includes("moveToState")).map((m) => m.from);
}

/** True if `operation` may move a job from `from` to `to`. */
export function isJobMove(from: JobState, to: JobState, operation: JobMover): boolean {
  return JOB_MOVES.some((m) => m.from === from && m.to === to && m.by.includes(operation));
}

/** A checked moveToState request: the target, and the states a job may be in for it to move. */
export interface MoveRequest {
  to: JobState;
  from: readonly JobState[];
  /** The caller named `from`: a job in another state is left alone (false), not refused. */
  fromGiven: boolean;
}

/** moveToState's arguments, checked before anything is read: each `from` state must reach `to`. */
export function checkMove(to: unknown, from: unknown): MoveRequest {
  const target = checkState("to", to);
  if (target === "running") throw new InvalidArgumentError("to", "a job enters running only through a claim");
  const allowed = MOVABLE_FROM[target];
  if (from === undefined) return { to: target, from: allowed, fromGiven: false };
  const list: unknown[] = Array.isArray(from) ? from : [from];
  if (list.length === 0) throw new InvalidArgumentError("from", "must name at least one state");
  const states = list.map((s) => {
    const state = checkState("from", s);
    if (!allowed.includes(state))
      throw new InvalidArgumentError(
        "from",
        `a job never moves from ${state} to ${target}: ${describe(state)}`,
      );
    return state;
  });
  return { to: target, from: states, fromGiven: true };
}

/**
 * The answer for a job that did not move (`state` undefined: there is none):
 * false when it is missing, already in `to`, outside the caller's `from`, or
 * kept from pending by its key; an IllegalTransitionError when its current
 * state forbids the move.
 */
export function refuseMove(id: number, state: JobState | undefined, move: MoveRequest): false {
  if (state === undefined || state === move.to || move.fromGiven || move.from.includes(state)) return false;
  throw new IllegalTransitionError(id, state, move.to, describe(state), "job");
}

function describe(state: JobState): string {
  const next = JOB_TRANSITIONS[state];
  return next.length === 0 ? `${state} is final` : `${state} moves only to ${next.join(" or ")}`;
}
