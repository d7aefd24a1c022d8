//! Helpers for schedulers: the per-user running cap every built-in
//! scheduler respects.
//!
//! A user is *at their cap* when `max-running` is set and they already have
//! that many jobs running (leased, dispatched or running). Jobs refer to
//! users by index into `snapshot.users`; an index out of range names no user
//! the host knows, and each helper says how it treats one.

use crate::scheduler::{Snapshot, UserUsage};

/// True when `usage` has as many jobs running as its cap allows (no cap:
/// never).
pub fn is_capped(usage: &UserUsage) -> bool {
    usage.max_running.is_some_and(|cap| usage.running >= cap)
}

/// True when user `user` (an index into `snapshot.users`) is known and at
/// their cap. An unknown user is not at a cap.
pub fn at_cap(snapshot: &Snapshot, user: u32) -> bool {
    snapshot.users.get(user as usize).is_some_and(is_capped)
}

/// True when user `user` is known and below their cap: a job of theirs may
/// be dispatched now. An unknown user has no room.
pub fn has_room(snapshot: &Snapshot, user: u32) -> bool {
    snapshot
        .users
        .get(user as usize)
        .is_some_and(|usage| !is_capped(usage))
}

/// The users below their cap, as (index into `snapshot.users`, usage), in
/// order.
pub fn users_with_room(snapshot: &Snapshot) -> impl Iterator<Item = (usize, &UserUsage)> {
    snapshot
        .users
        .iter()
        .enumerate()
        .filter(|(_, usage)| !is_capped(usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PriorityClass;

    fn user(running: u32, max_running: Option<u32>) -> UserUsage {
        UserUsage {
            name: "ada".into(),
            priority: PriorityClass::Normal,
            running,
            pending: 1,
            gpu_seconds_used: 0.0,
            jobs_done: 0,
            max_running,
            last_dispatched_at_ms: None,
        }
    }

    fn snapshot(users: Vec<UserUsage>) -> Snapshot {
        Snapshot {
            now_ms: 0,
            pending: Vec::new(),
            running: Vec::new(),
            users,
            kinds: Vec::new(),
        }
    }

    #[test]
    fn the_cap_is_reached_at_equality_and_absent_caps_never_bind() {
        assert!(!is_capped(&user(1, Some(2))));
        assert!(is_capped(&user(2, Some(2))));
        assert!(is_capped(&user(3, Some(2))), "over the cap counts as at it");
        assert!(is_capped(&user(0, Some(0))), "a cap of 0 blocks the user");
        assert!(!is_capped(&user(u32::MAX, None)));
    }

    #[test]
    fn unknown_users_are_not_at_a_cap_but_have_no_room() {
        let s = snapshot(vec![user(2, Some(2)), user(0, Some(2)), user(9, None)]);
        assert_eq!(
            (0..4).map(|u| at_cap(&s, u)).collect::<Vec<_>>(),
            [true, false, false, false]
        );
        assert_eq!(
            (0..4).map(|u| has_room(&s, u)).collect::<Vec<_>>(),
            [false, true, true, false]
        );
        assert!(!at_cap(&s, u32::MAX) && !has_room(&s, u32::MAX));
    }

    #[test]
    fn users_with_room_keeps_indices_in_order() {
        let s = snapshot(vec![user(0, Some(1)), user(1, Some(1)), user(5, None)]);
        let room: Vec<usize> = users_with_room(&s).map(|(index, _)| index).collect();
        assert_eq!(room, [0, 2]);
        assert_eq!(users_with_room(&snapshot(Vec::new())).count(), 0);
    }
}
