//! Differential property test: random sequences of queue operations applied
//! to the embedded store and to the Redis store (a real server) give the
//! same answer at every step and the same queue at the end. The conformance
//! suite checks chosen cases; this checks the cases nobody thought of.

mod common;

use std::sync::Arc;
use std::time::Duration;

use comfyume::queue::{
    BackendRef, Cost, EmbeddedStore, Job, JobStore, ManualClock, NewJob, Priority, Progress,
    Recovery, RedisStore, Requester, StoreError, UserLimits,
};
use common::queue::{T0, limits};
use common::redis::RedisServer;
use proptest::prelude::*;

const USERS: [&str; 3] = ["ana", "ben", "cho"];
const OWNERS: [&str; 2] = ["host-a", "host-b"];

#[derive(Debug, Clone)]
enum Op {
    Enqueue(usize),
    Claim(usize, usize),
    Renew(usize, usize),
    Dispatched(usize, usize),
    Running(usize, usize, bool),
    Succeed(usize, usize),
    Fail(usize, usize),
    Requeue(usize, usize, bool),
    CancelByOwner(usize),
    CancelByOther(usize),
    CancelAdmin(usize),
    Cancelled(usize, usize),
    Advance(u64),
    Recover(usize, bool),
    Trim(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let job = 0usize..12;
    let owner = 0usize..2;
    prop_oneof![
        3 => (0usize..3).prop_map(Op::Enqueue),
        3 => (job.clone(), owner.clone()).prop_map(|(j, o)| Op::Claim(j, o)),
        1 => (job.clone(), owner.clone()).prop_map(|(j, o)| Op::Renew(j, o)),
        2 => (job.clone(), owner.clone()).prop_map(|(j, o)| Op::Dispatched(j, o)),
        2 => (job.clone(), owner.clone(), any::<bool>()).prop_map(|(j, o, p)| Op::Running(j, o, p)),
        1 => (job.clone(), owner.clone()).prop_map(|(j, o)| Op::Succeed(j, o)),
        1 => (job.clone(), owner.clone()).prop_map(|(j, o)| Op::Fail(j, o)),
        1 => (job.clone(), owner.clone(), any::<bool>()).prop_map(|(j, o, r)| Op::Requeue(j, o, r)),
        1 => job.clone().prop_map(Op::CancelByOwner),
        1 => job.clone().prop_map(Op::CancelByOther),
        1 => job.clone().prop_map(Op::CancelAdmin),
        1 => (job.clone(), owner.clone()).prop_map(|(j, o)| Op::Cancelled(j, o)),
        1 => (0u64..40_000).prop_map(Op::Advance),
        1 => (job, any::<bool>()).prop_map(|(j, r)| Op::Recover(j, r)),
        1 => (0u64..100_000).prop_map(Op::Trim),
    ]
}

/// What a step returned, in a form both stores must agree on.
#[derive(Debug, PartialEq)]
enum Answer {
    Job(Box<Job>),
    Unit,
    Text(String),
    Error(StoreError),
}

fn answer<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    map: impl FnOnce(T) -> Answer,
) -> Answer {
    match result {
        Ok(v) => map(v),
        Err(e) => Answer::Error(e),
    }
}

struct Subject {
    store: Arc<dyn JobStore>,
    clock: ManualClock,
    /// Ids of the jobs enqueued so far, by enqueue order (the same in both).
    ids: Vec<u64>,
    prompts: u128,
}

impl Subject {
    async fn new(store: Arc<dyn JobStore>, clock: ManualClock) -> Self {
        for (i, name) in USERS.iter().enumerate() {
            let limits = UserLimits {
                name: name.to_string(),
                max_pending: 4,
                max_running: 1 + i as u32,
                priority: if i == 2 {
                    Priority::Instructor
                } else {
                    Priority::Normal
                },
            };
            store.set_user(limits).await.unwrap();
        }
        Subject {
            store,
            clock,
            ids: Vec::new(),
            prompts: 0,
        }
    }

    fn id(&self, j: usize) -> u64 {
        // A job index past the end names a job that does not exist.
        self.ids.get(j).copied().unwrap_or(10_000 + j as u64)
    }

    async fn apply(&mut self, op: &Op) -> Answer {
        let lease = Duration::from_secs(30);
        let s = &self.store;
        match *op {
            Op::Enqueue(u) => {
                self.prompts += 1;
                let job = NewJob {
                    user: USERS[u].into(),
                    prompt_id: uuid::Uuid::from_u128(self.prompts).to_string(),
                    client_id: None,
                    priority: Priority::Normal,
                    workflow_kind: "ltx2".into(),
                    cost: Cost {
                        frames: 121,
                        width: 1280,
                        height: 704,
                        steps: 23,
                        gpu_seconds: 195.5,
                    },
                    payload: vec![b'{', b'}'],
                };
                let result = s.enqueue(job).await;
                if let Ok(job) = &result {
                    self.ids.push(job.id);
                }
                answer(result, |j| Answer::Job(Box::new(j)))
            }
            Op::Claim(j, o) => answer(s.claim(self.id(j), OWNERS[o], lease).await, |j| {
                Answer::Job(Box::new(j))
            }),
            Op::Renew(j, o) => answer(s.renew(self.id(j), OWNERS[o], lease).await, |_| {
                Answer::Unit
            }),
            Op::Dispatched(j, o) => {
                let backend = BackendRef {
                    pool: "local".into(),
                    job_id: format!("b{j}"),
                };
                answer(s.dispatched(self.id(j), OWNERS[o], backend).await, |j| {
                    Answer::Job(Box::new(j))
                })
            }
            Op::Running(j, o, p) => {
                let progress = p.then_some(Progress { value: 3, max: 23 });
                answer(s.running(self.id(j), OWNERS[o], progress).await, |j| {
                    Answer::Job(Box::new(j))
                })
            }
            Op::Succeed(j, o) => {
                answer(s.succeed(self.id(j), OWNERS[o], vec![], 42.5).await, |j| {
                    Answer::Job(Box::new(j))
                })
            }
            Op::Fail(j, o) => answer(s.fail(self.id(j), OWNERS[o], "boom", 1.5).await, |j| {
                Answer::Job(Box::new(j))
            }),
            Op::Requeue(j, o, r) => answer(
                s.requeue(self.id(j), OWNERS[o], "reclaimed", r).await,
                |j| Answer::Job(Box::new(j)),
            ),
            Op::CancelByOwner(j) => {
                let owner = s
                    .get(self.id(j), Requester::Admin)
                    .await
                    .map(|j| j.user)
                    .unwrap_or_default();
                answer(s.cancel(self.id(j), Requester::User(&owner)).await, |c| {
                    Answer::Text(format!("{c:?}"))
                })
            }
            Op::CancelByOther(j) => answer(
                s.cancel(self.id(j), Requester::User("mallory")).await,
                |c| Answer::Text(format!("{c:?}")),
            ),
            Op::CancelAdmin(j) => answer(s.cancel(self.id(j), Requester::Admin).await, |c| {
                Answer::Text(format!("{c:?}"))
            }),
            Op::Cancelled(j, o) => answer(s.cancelled(self.id(j), OWNERS[o], 2.0).await, |j| {
                Answer::Job(Box::new(j))
            }),
            Op::Advance(ms) => {
                self.clock.advance(ms);
                Answer::Unit
            }
            Op::Recover(j, reattach) => {
                let how = if reattach {
                    Recovery::Reattach {
                        owner: "host-b".into(),
                    }
                } else {
                    Recovery::Requeue {
                        reason: "lost".into(),
                    }
                };
                answer(s.recover(self.id(j), how, lease).await, |j| {
                    Answer::Job(Box::new(j))
                })
            }
            Op::Trim(age) => answer(s.trim(T0 + age).await, |n| Answer::Text(n.to_string())),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn both_stores_give_the_same_answers(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        // A server per case: a static one would outlive the test process.
        let server = RedisServer::start();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let clock_a = ManualClock::new(T0);
            let clock_b = ManualClock::new(T0);
            let embedded = EmbeddedStore::open(&dir.path().join("q.sqlite"), limits(), Arc::new(clock_a.clone())).unwrap();
            let redis = RedisStore::connect(&server.url(), "diff", limits(), Arc::new(clock_b.clone())).await.unwrap();
            let mut a = Subject::new(Arc::new(embedded), clock_a).await;
            let mut b = Subject::new(Arc::new(redis), clock_b).await;
            for (step, op) in ops.iter().enumerate() {
                let left = a.apply(op).await;
                let right = b.apply(op).await;
                assert_eq!(left, right, "step {step}: {op:?}");
            }
            assert_eq!(a.store.snapshot().await.unwrap(), b.store.snapshot().await.unwrap(), "final queue");
            for user in USERS {
                let page = comfyume::queue::Page { offset: 0, limit: 100 };
                assert_eq!(a.store.list_user(user, page).await.unwrap(), b.store.list_user(user, page).await.unwrap());
            }
        });
    }
}
