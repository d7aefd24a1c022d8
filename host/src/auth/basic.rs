//! Parsing an HTTP Basic `Authorization` header (RFC 7617).
//!
//! Policy: anything that is not exactly `Basic <base64 of user:password>`
//! in UTF-8 is [`AuthError::Malformed`], never a panic or a 500. The
//! password may contain `:`; the user name may not (it is split at the first).
//! A user name that no account could have ([`super::valid_user_name`]:
//! control characters, spaces, slashes…) is malformed too, so what the
//! host logs as a name is always a plain word: a newline in it cannot
//! forge a log line.

use base64::Engine as _;

use super::AuthError;

/// A user name and password as sent; the password is kept out of `Debug`.
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

/// Longest header accepted: 64-character names and generous passwords fit
/// many times over; anything longer is not a login.
const MAX_HEADER: usize = 4096;

/// Splits `Basic dXNlcjpwYXNz` into user and password.
pub(crate) fn parse(header: Option<&str>) -> Result<Credentials, AuthError> {
    let header = header.map(str::trim).filter(|h| !h.is_empty());
    let header = header.ok_or(AuthError::Missing)?;
    if header.len() > MAX_HEADER {
        return Err(AuthError::Malformed("header too long"));
    }
    let (scheme, encoded) = header
        .split_once(' ')
        .ok_or(AuthError::Malformed("expected \"Basic <credentials>\""))?;
    // The scheme name is case-insensitive (RFC 7235 §2.1).
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::Malformed("only the Basic scheme is supported"));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| AuthError::Malformed("credentials are not valid base64"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| AuthError::Malformed("credentials are not UTF-8"))?;
    let (user, password) = text
        .split_once(':')
        .ok_or(AuthError::Malformed("credentials have no ':'"))?;
    if user.is_empty() {
        return Err(AuthError::Malformed("empty user name"));
    }
    if !super::valid_user_name(user) {
        return Err(AuthError::Malformed(
            "the user name has characters no account name has",
        ));
    }
    Ok(Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(raw: &[u8]) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    #[test]
    fn splits_at_the_first_colon() {
        let c = parse(Some(&encode(b"ada:pa:ss"))).unwrap();
        assert_eq!(c.user, "ada");
        assert_eq!(c.password, "pa:ss");
        assert!(!format!("{c:?}").contains("pa:ss"));
    }

    #[test]
    fn refuses_what_is_not_basic() {
        assert_eq!(parse(None).unwrap_err(), AuthError::Missing);
        assert_eq!(parse(Some("  ")).unwrap_err(), AuthError::Missing);
        for bad in [
            "Bearer abc".to_string(),
            "Basic".to_string(),
            "Basic !!!".to_string(),
            encode(b"nocolon"),
            encode(b":nouser"),
            encode(&[0xff, b':', b'x']),
            encode(b"ann\n2026-12-07T03:00:00Z  INFO admin logged in:x"),
            encode(b"ann\r:x"),
            encode(b"a b:x"),
        ] {
            assert!(
                matches!(parse(Some(&bad)), Err(AuthError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
