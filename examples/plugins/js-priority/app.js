// ComfyUMe scheduler `js-priority`: priority class first, then submit time.
//
// The same policy as the Rust built-in `priority` (plugins/scheduler-priority):
// the instructor class always goes first (the lane that skips the queue for
// live demos), then high, normal and low. Within a class the oldest job runs
// first (submit time, then id). Users at their running cap, and job entries
// naming an unknown user, are skipped.
//
// Bindings as componentize-js maps the WIT: records are objects with
// camelCase fields, enums are their kebab-case names as strings, u64 values
// are BigInts, option<T> is the value or undefined.

const RANK = { instructor: 0, high: 1, normal: 2, low: 3 };

/** True when user `index` is known and below their running cap. */
function hasRoom(users, index) {
  const usage = users[index];
  if (usage === undefined) return false;
  return usage.maxRunning === undefined || usage.maxRunning === null || usage.running < usage.maxRunning;
}

/** Compares two sort keys [rank, submittedAtMs, id]: negative when a runs first. */
function compare(a, b) {
  for (let i = 0; i < a.length; i++) {
    if (a[i] < b[i]) return -1;
    if (a[i] > b[i]) return 1;
  }
  return 0;
}

export const scheduling = {
  pickNext(snapshot) {
    let best;
    let bestKey;
    snapshot.pending.forEach((job, index) => {
      if (!hasRoom(snapshot.users, job.user)) return;
      const key = [RANK[job.priority] ?? 3, BigInt(job.submittedAtMs), BigInt(job.id)];
      if (bestKey === undefined || compare(key, bestKey) < 0) {
        bestKey = key;
        best = index;
      }
    });
    return best;
  },
};

export function describe() {
  return {
    name: "js-priority",
    version: "0.1.0",
    kind: "scheduler",
    summary: "Priority class (instructor first), then submit time (JavaScript).",
  };
}
