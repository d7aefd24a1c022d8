//! A job store under test: the embedded one in a temp folder or the Redis
//! one on its own real server, with a manual clock and a "restart".

#![allow(dead_code)]

use std::sync::Arc;

use comfyume::queue::{
    Cost, EmbeddedStore, JobStore, ManualClock, NewJob, Priority, RedisStore, StoreLimits,
    UserLimits,
};

use super::redis::RedisServer;

pub const T0: u64 = 1_764_000_000_000;

pub enum Backing {
    Embedded(tempfile::TempDir),
    Redis(RedisServer),
}

pub struct Harness {
    pub store: Arc<dyn JobStore>,
    pub clock: ManualClock,
    pub backing: Backing,
}

pub fn limits() -> StoreLimits {
    StoreLimits {
        max_payload_bytes: 4096,
        max_recoveries: 2,
        max_attempts: 3,
    }
}

async fn open(backing: &Backing, clock: &ManualClock) -> Arc<dyn JobStore> {
    match backing {
        Backing::Embedded(dir) => Arc::new(
            EmbeddedStore::open(
                &dir.path().join("queue.sqlite"),
                limits(),
                Arc::new(clock.clone()),
            )
            .unwrap(),
        ),
        Backing::Redis(server) => Arc::new(
            RedisStore::connect(&server.url(), "test", limits(), Arc::new(clock.clone()))
                .await
                .unwrap(),
        ),
    }
}

impl Harness {
    pub async fn embedded() -> Self {
        Self::with(Backing::Embedded(tempfile::tempdir().unwrap())).await
    }

    pub async fn redis() -> Self {
        Self::with(Backing::Redis(RedisServer::start())).await
    }

    pub async fn with(backing: Backing) -> Self {
        let clock = ManualClock::new(T0);
        let store = open(&backing, &clock).await;
        Harness {
            store,
            clock,
            backing,
        }
    }

    /// Drops the store and opens a new one on the same data: a host restart.
    pub async fn reopen(&mut self) {
        let placeholder = open(&self.backing, &self.clock).await;
        let old = std::mem::replace(&mut self.store, placeholder);
        drop(old);
        self.store = open(&self.backing, &self.clock).await;
    }

    pub async fn user(&self, name: &str, max_pending: u32, max_running: u32) {
        self.store
            .set_user(UserLimits {
                name: name.into(),
                max_pending,
                max_running,
                priority: Priority::Normal,
            })
            .await
            .unwrap();
    }
}

pub fn new_job(user: &str) -> NewJob {
    NewJob {
        user: user.into(),
        prompt_id: uuid::Uuid::new_v4().to_string(),
        client_id: Some("client-1".into()),
        priority: Priority::Normal,
        workflow_kind: "flux2-klein".into(),
        cost: Cost {
            frames: 1,
            width: 1024,
            height: 1024,
            steps: 20,
            gpu_seconds: 10.0,
        },
        payload: br#"{"prompt":{}}"#.to_vec(),
    }
}
