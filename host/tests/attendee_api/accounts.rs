//! An account's reach ends when it is disabled, and the data folder is
//! the host's alone.

use std::time::Duration;

use futures_util::StreamExt as _;

use super::attendee::{connect, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_an_account_closes_its_open_websockets() {
    let host = start().await;
    let mut ann = connect(&host, "ann").await;
    let mut bob = connect(&host, "bob").await;
    // The greeting first: both sockets are live.
    assert!(ann.next().await.is_some());
    assert!(bob.next().await.is_some());
    comfyume::auth::UsersFile::update(&host.data, |file| {
        file.get_mut("ann")?.disabled = true;
        Ok(())
    })
    .expect("disable ann");
    // Ann's socket ends (a close frame, then nothing) within a recheck.
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match ann.next().await {
                None | Some(Err(_)) => return true,
                Some(Ok(message)) if message.is_close() => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true), "ann's socket outlived her account");
    // Bob's stays open: a ping is answered.
    use futures_util::SinkExt as _;
    bob.send(tokio_tungstenite::tungstenite::Message::Ping(
        vec![1].into(),
    ))
    .await
    .expect("bob's socket is open");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_folder_and_the_queue_journal_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let host = start().await;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&host.data), 0o700);
    assert_eq!(mode(&host.data.join("users")), 0o700);
    assert_eq!(mode(&host.data.join("queue.sqlite")), 0o600);
    assert_eq!(mode(&host.data.join("users.json")), 0o600);
}
