/** The queue conformance suite (test/conformance/queue.ts) over every queue implementation. */
import { queueSuite, queuesAgree } from "./conformance/queue.js";
import { useQueues } from "./conformance/queue-impls.js";

const queues = useQueues();
for (const impl of queues) queueSuite(impl);
queuesAgree(queues);
