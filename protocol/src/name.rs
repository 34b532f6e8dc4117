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

/// Room names: 1-128 bytes of `A-Z a-z 0-9 _ - . :` (the colon separates namespaces, as in
/// `chat:lobby`, so that token rights can grant `chat:*`).
pub fn validate_room(name: &str) -> Result<(), NameError> {
    check(name, "room name", ROOM_NAME_MAX, "A-Z a-z 0-9 _ - . :", |b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
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
