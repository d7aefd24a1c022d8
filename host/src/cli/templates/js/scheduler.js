// ComfyUMe scheduler `{{name}}`: first in, first out.
//
// The oldest pending job (submit time, then id) whose user is below their
// running cap runs next; undefined (none) when every waiting user is at
// their cap. The host passes the whole queue on every call: keep no state.
//
// componentize-js maps the WIT to plain objects with camelCase fields;
// enums are their kebab-case names, u64 values are BigInts, option<T> is
// the value or undefined.

function hasRoom(users, index) {
  const usage = users[index];
  if (usage === undefined) return false;
  return usage.maxRunning === undefined || usage.running < usage.maxRunning;
}

export const scheduling = {
  pickNext(snapshot) {
    let best;
    snapshot.pending.forEach((job, index) => {
      if (!hasRoom(snapshot.users, job.user)) return;
      const b = best === undefined ? undefined : snapshot.pending[best];
      if (
        b === undefined ||
        job.submittedAtMs < b.submittedAtMs ||
        (job.submittedAtMs === b.submittedAtMs && job.id < b.id)
      ) {
        best = index;
      }
    });
    return best;
  },
};

export function describe() {
  return {
    name: "{{name}}",
    version: "0.1.0",
    kind: "scheduler",
    summary: "Oldest pending job first, skipping users at their running cap.",
  };
}
