/**
 * Contract: the queue conformance suite (River-style), written once and run
 * over every implementation in test/conformance/queue-impls.ts so they are
 * proven to behave the same: `queueSuite` is every behaviour on one queue,
 * `queuesAgree` a differential property of each queue against the first.
 * Time is a manual clock passed as the queue's `clock` option.
 */
import { describe } from "vitest";
import { addingCases } from "./queue/adding.js";
import { badInputCases } from "./queue/bad-input.js";
import { movingCases } from "./queue/moving.js";
import { periodicCases } from "./queue/periodic.js";
import { readingCases } from "./queue/reading.js";
import { settlingCases } from "./queue/settling.js";
import type { QueueImpl } from "./queue-impls.js";

export { queuesAgree } from "./queue/agree.js";

/** Every behaviour of a queue, on one implementation. */
export function queueSuite(impl: QueueImpl): void {
  describe(impl.name, () => {
    addingCases(impl);
    readingCases(impl);
    settlingCases(impl);
    movingCases(impl);
    periodicCases(impl);
    badInputCases(impl);
  });
}
