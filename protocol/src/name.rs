//! Validation of the names that arrive from outside: room names, client ids, user ids.

/// Longest room name, in bytes.
pub const ROOM_NAME_MAX: usize = 128;
/// Longest client id or user id, in bytes.
pub const ID_MAX: usize = 64;
/// Prefix of anonymous user ids (`anon:<name>`), so an anonymous user never passes for a token's.
pub const ANON_PREFIX: &str = "anon:";

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Normal: the input was empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// Normal: the input was longer than its limit.
    #[error("{what} is longer than {max} bytes")]
    TooLong { what: &'static str, max: usize },
    /// Normal: a character outside the documented set.
    #[error("{what} may only contain {allowed}")]
    BadChar { what: &'static str, allowed: &'static str },
    /// Normal: a user-limited room name that breaks its rules.
    #[error("{0}")]
    Limited(&'static str),
}

fn check(value: &str, what: &'static str, max: usize, allowed: &'static str, ok: fn(u8) -> bool) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty(what));
    }
    if value.len() > max {
        return Err(NameError::TooLong { what, max });
    }
    if !value.bytes().all(ok) {
        return Err(NameError::BadChar { what, allowed });
    }
    Ok(())
}

/// Separates a user-limited room's name from the users it admits: `dm~alice,bob`.
pub const USERS_MARK: char = '~';

/// Room names: 1-128 bytes of `A-Z a-z 0-9 _ - . :` (the colon separates namespaces, as in
/// `chat:lobby`, so that token rights can grant `chat:*`), or a **user-limited** name
/// `<name>~<user>,<user>…` ([`limited_to`]).
pub fn validate_room(name: &str) -> Result<(), NameError> {
    if name.len() > ROOM_NAME_MAX {
        return Err(NameError::TooLong { what: "room name", max: ROOM_NAME_MAX });
    }
    let Some((base, users)) = name.split_once(USERS_MARK) else { return validate_room_base(name) };
    validate_room_base(base)?;
    let mut previous: Option<&str> = None;
    for user in users.split(',') {
        validate_user(user)?;
        if is_reserved_user(user) {
            return Err(NameError::Limited("a user-limited room lists only token users (not :… or anon:…)"));
        }
        if previous.is_some_and(|p| p >= user) {
            return Err(NameError::Limited("a user-limited room lists its users once each, in ascending byte order (dm~alice,bob)"));
        }
        previous = Some(user);
    }
    Ok(())
}

fn validate_room_base(name: &str) -> Result<(), NameError> {
    check(name, "room name", ROOM_NAME_MAX, "A-Z a-z 0-9 _ - . : (and one ~ before a user list)", |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')
    })
}

/// Room patterns as tokens carry them: a room name, or a prefix of one before a final `*`
/// (`chat:*`, `dm~*`, `*`).
pub fn validate_pattern(pattern: &str) -> Result<(), NameError> {
    match pattern.strip_suffix('*') {
        None => validate_room(pattern),
        Some("") => Ok(()),
        // A prefix may stop right after the user mark, or inside the user list.
        Some(prefix) => match prefix.strip_suffix(USERS_MARK).or_else(|| prefix.strip_suffix(',')) {
            Some(base) => validate_room(base).or_else(|_| validate_room_base(base)),
            None => validate_room(prefix),
        },
    }
}

/// The users a user-limited room admits (`dm~alice,bob` admits `alice` and `bob`), or `None` for
/// a room open to every user the token's patterns grant it. Only the users listed may join or use
/// such a room, whatever the token's patterns also allow; one pattern (`dm~*`) then covers every
/// such room a user is listed in. Assumes a name [`validate_room`] accepted.
pub fn limited_to(room: &str) -> Option<impl Iterator<Item = &str>> {
    room.split_once(USERS_MARK).map(|(_, users)| users.split(','))
}

/// Whether `user` may use `room` by its name: every user for an ordinary room, the listed ones
/// for a user-limited room.
pub fn admits(room: &str, user: &str) -> bool {
    match limited_to(room) {
        Some(mut users) => users.any(|u| u == user),
        None => true,
    }
}

/// Client ids: 1-64 bytes of `A-Z a-z 0-9 _ -`.
pub fn validate_client_id(id: &str) -> Result<(), NameError> {
    check(id, "client id", ID_MAX, "A-Z a-z 0-9 _ -", |b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// User ids: 1-64 bytes of `A-Z a-z 0-9 _ - . : @`.
pub fn validate_user(id: &str) -> Result<(), NameError> {
    check(id, "user id", ID_MAX, "A-Z a-z 0-9 _ - . : @", |b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@'))
}

/// Whether a user id is one the server assigns itself and no token may claim: anything starting
/// with a colon (`:api`, the backend; `:http` and whatever comes next) or with [`ANON_PREFIX`]
/// (anonymous users). A token carrying one would let its holder act as the backend or as an
/// anonymous member.
pub fn is_reserved_user(id: &str) -> bool {
    id.starts_with(':') || id.starts_with(ANON_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(validate_room("chat:lobby").is_ok());
        assert!(validate_room("a.b-c_D9").is_ok());
        assert_eq!(validate_room(""), Err(NameError::Empty("room name")));
        assert!(matches!(validate_room("has space"), Err(NameError::BadChar { .. })));
        assert!(matches!(validate_room("slash/x"), Err(NameError::BadChar { .. })));
        assert!(matches!(validate_room("é"), Err(NameError::BadChar { .. })));
        assert!(validate_room(&"a".repeat(ROOM_NAME_MAX)).is_ok());
        assert!(matches!(validate_room(&"a".repeat(ROOM_NAME_MAX + 1)), Err(NameError::TooLong { .. })));
    }

    #[test]
    fn user_limited_rooms() {
        assert!(validate_room("dm~alice,bob").is_ok());
        assert!(validate_room("team:x~a@b.c,bob").is_ok());
        assert!(validate_room("solo~alice").is_ok());
        for bad in
            ["dm~bob,alice", "dm~alice,alice", "dm~", "~alice", "dm~alice,", "dm~alice~bob", "dm~al ice", "dm~:api", "dm~anon:x", "dm,x"]
        {
            assert!(validate_room(bad).is_err(), "{bad}");
        }
        assert!(validate_room(&format!("dm~{}", "a".repeat(ROOM_NAME_MAX))).is_err());
        assert!(admits("dm~alice,bob", "alice") && admits("dm~alice,bob", "bob"));
        assert!(!admits("dm~alice,bob", "carol") && !admits("dm~alice,bob", "ali") && !admits("dm~alice,bob", "alice,bob"));
        assert!(admits("chat:lobby", "anyone"));
        assert_eq!(limited_to("dm~alice,bob").unwrap().collect::<Vec<_>>(), ["alice", "bob"]);
        for pattern in ["dm~*", "*", "chat:*", "dm~alice,*", "dm~alice,bob", "dm~al*"] {
            assert!(validate_pattern(pattern).is_ok(), "{pattern}");
        }
        for pattern in ["dm~~*", "d m*", "dm~bob,alice*"] {
            assert!(validate_pattern(pattern).is_err(), "{pattern}");
        }
    }

    #[test]
    fn client_and_user_ids() {
        assert!(validate_client_id("c-1_x").is_ok());
        assert!(validate_client_id("c:1").is_err());
        assert!(validate_user("alice@example.com").is_ok());
        assert!(validate_user("al ice").is_err());
        assert!(validate_user(&"u".repeat(ID_MAX + 1)).is_err());
    }

    #[test]
    fn reserved_users() {
        for id in [":api", ":http", ":", ":foo", "anon:", "anon:x"] {
            assert!(is_reserved_user(id), "{id}");
        }
        for id in ["api", "alice:api", "anon", "anonymous", "a:non:x", "anon-x"] {
            assert!(!is_reserved_user(id), "{id}");
        }
    }
}
