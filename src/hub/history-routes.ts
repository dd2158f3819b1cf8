/**
 * The console's history endpoint, registered inside the hub's /v1 scope (so
 * its token check, rate limit and error envelope apply):
 *
 *   GET /v1/history?series=jobs.completed&range=1h|24h|7d|30d[&label=…]  → HistoryAnswer (src/history/query.ts)
 *
 * Contract: any valid token may read it, as it may read /v1/jobs. A missing
 * or unknown series, a range other than 1h, 24h, 7d or 30d, or a bad label is a 400
 * ERR_INVALID_ARGUMENT naming the parameter; nothing is ever written. The
 * rows come from tw_rollups and, when the daemon's Rollups is given, from
 * what it gathered and has not flushed yet, so the current minute shows.
 */
import type { FastifyInstance } from "fastify";
import { HubError, InvalidArgumentError } from "../errors.js";
import { historyOf } from "../history/query.js";
import { Rollups } from "../history/rollups.js";
import type { Store } from "../store.js";

export async function historyRoutes(
  app: FastifyInstance,
  options: { store: Store; rollups?: Rollups },
): Promise<void> {
  // Without the daemon's, a reader of the file's rows: nothing is recorded through it.
  const rollups = options.rollups ?? new Rollups(options.store);
  app.get("/v1/history", async (request) => {
    try {
      return historyOf(rollups, request.query as Record<string, unknown>);
    } catch (err) {
      if (err instanceof InvalidArgumentError) throw new HubError(400, err.code, err.message);
      throw err;
    }
  });
}
