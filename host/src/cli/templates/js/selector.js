// ComfyUMe backend selector `{{name}}`: the first healthy pool with room.
//
// Return the index of a pool that is healthy and has inFlight < capacity,
// or throw the reason (a string) why the job must wait: a thrown value is
// the `err` of the WIT result.

export const selection = {
  select(job, backends) {
    const index = backends.findIndex((pool) => pool.healthy && pool.inFlight < pool.capacity);
    if (index < 0) throw `no healthy pool has room for job ${job.id}; it waits`;
    return index;
  },
};

export function describe() {
  return {
    name: "{{name}}",
    version: "0.1.0",
    kind: "selector",
    summary: "The first healthy pool with room.",
  };
}
