/**
 * `tidewire peers list|add|remove <db>`: the peers a database's daemon pings
 * and syncs with (src/peers/peers.ts), seen and edited from a shell.
 *
 * Contract: the database must already exist (a typo in a path must not leave
 * a fresh empty database behind). Tokens are never printed, only whether a
 * peer has one. Removing a peer that is not there is a failure at run time
 * (exit 1); a bad address, id, bucket or token is a usage error (exit 2), and
 * changes nothing. A running daemon sees the change at its next period.
 */
import { type Command, Option } from "commander";
import { TidewireError } from "../errors.js";
import { Peers, type PublicPeer, publicPeer } from "../peers/peers.js";
import { commandGroup, verb } from "./group.js";
import { collect, openDatabase, printJson, printText, table } from "./io.js";

interface Common {
  json?: boolean;
}

interface AddFlags extends Common {
  id?: string;
  bucket: string[];
  token?: string;
}

export function registerPeers(program: Command): void {
  const peers = commandGroup(
    program,
    "peers",
    "list, add and remove the peers a database's daemon pings and syncs with",
  );

  verb(peers, "list", "list the peers with their state, last answer and round-trip time").action(
    (db: string, flags: Common) => {
      const list = withPeers(db, (p) => p.list()).map(publicPeer);
      if (flags.json) printJson({ ok: true, peers: list });
      else printText(list.length === 0 ? "no peers" : peersTable(list));
    },
  );

  verb(peers, "add", "add a peer by its hub's URL, or update the one with that id")
    .argument("<address>", "the peer hub's URL, e.g. http://10.0.0.2:7420")
    .option("--id <id>", "the peer's id (default: derived from the address)")
    .addOption(
      new Option("--bucket <name>", "a bucket to sync with it (repeat for more)")
        .argParser(collect)
        .default([], "default, for a new peer"),
    )
    .option("--token <token>", "bearer token for its hub; stored in clear in the database file")
    .action((db: string, address: string, flags: AddFlags) => {
      const peer = publicPeer(
        withPeers(db, (p) =>
          p.upsert({
            id: flags.id,
            address,
            buckets: flags.bucket.length ? flags.bucket : undefined,
            token: flags.token,
          }),
        ),
      );
      if (flags.json) printJson({ ok: true, peer });
      else
        printText(
          `peer ${peer.id} at ${peer.address}, buckets ${peer.buckets.join(", ") || "none"}${peer.hasToken ? ", with a token" : ""}`,
        );
    });

  verb(peers, "remove", "remove a peer and delete its cursors")
    .argument("<id>", "the peer's id")
    .action((db: string, id: string, flags: Common) => {
      const removed = withPeers(db, (p) => p.remove(id));
      if (!removed) throw new TidewireError(`no peer ${id}`, "ERR_NO_PEER");
      if (flags.json) printJson({ ok: true, removed: id });
      else printText(`peer ${id} removed, with its cursors`);
    });
}

/** Read-write even to list: a database from before the peer registry gets its table (migration 4). */
function withPeers<T>(db: string, fn: (peers: Peers) => T): T {
  const store = openDatabase(db, true);
  try {
    return fn(new Peers(store));
  } finally {
    store.close();
  }
}

/** The peers as a table, for `peers list` and `tidewire status`. */
export function peersTable(list: PublicPeer[]): string {
  return table(
    ["ID", "ADDRESS", "BUCKETS", "STATE", "LAST SEEN", "RTT", "LAST ERROR"],
    list.map((p) => [
      p.id,
      p.address ?? "-",
      p.buckets.join(",") || "-",
      p.state,
      p.lastSeenAt === null ? "never" : `${new Date(p.lastSeenAt).toISOString().slice(0, 19)}Z`,
      p.rttMs === null ? "-" : `${p.rttMs.toFixed(1)}ms`,
      p.state === "down" ? (p.lastError ?? "") : "",
    ]),
  );
}
