//! Dropping root: `--user` / `--group`, applied once the listeners are bound.
//!
//! Order matters: supplementary groups first (`setgroups`, which needs root), then the
//! group, then the user (after which nothing else can be changed). glibc applies each of
//! these to every thread of the process (the set*id calls are broadcast to all threads),
//! so threads started before the drop end up with the same identity; [`drop_to`] checks
//! the calling thread afterwards, including that root cannot be regained.
//!
//! Resolve names with [`lookup`] early (at configuration time), so a missing user is an
//! error before anything is bound.

use std::fmt;

use nix::unistd::{self, Gid, Group, Uid, User};

/// Who to become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub uid: Uid,
    pub group: String,
    pub gid: Gid,
}

/// Why privileges could not be dropped; worded as what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivilegeError(pub String);

impl fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PrivilegeError {}

fn err(text: String) -> PrivilegeError {
    PrivilegeError(text)
}

/// Finds `user` (a name, or a numeric uid) and `group` (a name or gid; default: the
/// user's primary group).
pub fn lookup(user: &str, group: Option<&str>) -> Result<Identity, PrivilegeError> {
    let by_name =
        User::from_name(user).map_err(|e| err(format!("cannot look up user {user:?}: {e}")))?;
    let found = match by_name {
        Some(u) => Some(u),
        None => match user.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid))
                .map_err(|e| err(format!("cannot look up uid {uid}: {e}")))?,
            Err(_) => None,
        },
    };
    let Some(u) = found else {
        return Err(err(format!(
            "user {user:?} does not exist: create it or fix --user"
        )));
    };
    let (group, gid) = match group {
        None => {
            let name = Group::from_gid(u.gid)
                .ok()
                .flatten()
                .map_or_else(|| u.gid.to_string(), |g| g.name);
            (name, u.gid)
        }
        Some(name) => {
            let by_name = Group::from_name(name)
                .map_err(|e| err(format!("cannot look up group {name:?}: {e}")))?;
            let found = match by_name {
                Some(g) => Some(g),
                None => match name.parse::<u32>() {
                    Ok(gid) => Group::from_gid(Gid::from_raw(gid))
                        .map_err(|e| err(format!("cannot look up gid {gid}: {e}")))?,
                    Err(_) => None,
                },
            };
            let g = found.ok_or_else(|| {
                err(format!(
                    "group {name:?} does not exist: create it or fix --group"
                ))
            })?;
            (g.name, g.gid)
        }
    };
    Ok(Identity {
        user: u.name,
        uid: u.uid,
        group,
        gid,
    })
}

/// Becomes `id` for good: supplementary groups reduced to its group, then group, then
/// user, all threads. Already running as `id` (not root): nothing to do.
pub fn drop_to(id: &Identity) -> Result<(), PrivilegeError> {
    let (uid, gid) = (unistd::geteuid(), unistd::getegid());
    if !uid.is_root() {
        if uid == id.uid && gid == id.gid && unistd::getuid() == id.uid {
            return Ok(());
        }
        return Err(err(format!(
            "switching to user {} needs root, but ringsocks runs as uid {uid}: start it as \
             root (it drops root once the listeners are bound) or leave out --user",
            id.user
        )));
    }
    let step = |what: &str, r: nix::Result<()>| {
        r.map_err(|e| {
            err(format!(
                "cannot drop privileges to {}: {what}: {e}",
                id.user
            ))
        })
    };
    step("setgroups", unistd::setgroups(&[id.gid]))?;
    step("setgid", unistd::setgid(id.gid))?;
    step("setuid", unistd::setuid(id.uid))?;
    let now = (
        unistd::getuid(),
        unistd::geteuid(),
        unistd::getgid(),
        unistd::getegid(),
    );
    if now != (id.uid, id.uid, id.gid, id.gid) {
        return Err(err(format!(
            "dropping privileges to {} left uid/euid/gid/egid at {now:?}",
            id.user
        )));
    }
    if !id.uid.is_root() && unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(err(format!(
            "after dropping privileges to {} root could be regained",
            id.user
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_user_is_a_clear_error() {
        let e = lookup("no-such-user-ringsocks", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "user \"no-such-user-ringsocks\" does not exist: create it or fix --user"
        );
        let e = lookup("root", Some("no-such-group-ringsocks")).unwrap_err();
        assert!(e.to_string().contains("fix --group"), "{e}");
    }

    #[test]
    fn users_and_groups_resolve_by_name_or_number() {
        let root = lookup("root", None).unwrap();
        assert_eq!((root.uid.as_raw(), root.gid.as_raw()), (0, 0));
        assert_eq!(root.group, "root");
        assert_eq!(lookup("0", Some("0")).unwrap(), root);
        let nobody = lookup("nobody", None).unwrap();
        assert_eq!(nobody.uid.as_raw(), 65534);
        let with_group = lookup("nobody", Some("root")).unwrap();
        assert_eq!(with_group.gid.as_raw(), 0);
    }
}
