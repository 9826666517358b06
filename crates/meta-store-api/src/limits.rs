//! The uniform limits every engine enforces, identically.
//!
//! LMDB cannot store keys longer than 511 bytes, so no engine accepts them:
//! a store can then move from any engine to any other without a key that
//! fits in one and not in the other.

use crate::error::{Error, KeyPreview, Result};
use crate::keys::KeyError;

/// The longest key, in bytes, any engine accepts.
pub const MAX_KEY_LEN: usize = 511;

/// The largest value, in bytes, any engine accepts (16 MiB).
pub const MAX_VALUE_LEN: usize = 16 * 1024 * 1024;

/// Checks a key against the uniform limits: non-empty, at most
/// [`MAX_KEY_LEN`] bytes.
pub fn check_key(key: &[u8]) -> Result<()> {
    let reason = if key.is_empty() {
        KeyError::Empty
    } else if key.len() > MAX_KEY_LEN {
        KeyError::TooLong {
            len: key.len(),
            max: MAX_KEY_LEN,
        }
    } else {
        return Ok(());
    };
    Err(Error::InvalidKey {
        key: KeyPreview::new(key),
        reason,
    })
}

/// Checks a value against [`MAX_VALUE_LEN`]; `key` is only used for the
/// error message.
pub fn check_value(key: &[u8], value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_LEN {
        return Err(Error::InvalidValue {
            key: KeyPreview::new(key),
            len: value.len(),
            max: MAX_VALUE_LEN,
        });
    }
    Ok(())
}

/// Checks a key/value pair: [`check_key`] then [`check_value`].
pub fn check_entry(key: &[u8], value: &[u8]) -> Result<()> {
    check_key(key)?;
    check_value(key, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_accept_the_boundary_and_reject_past_it() {
        assert!(check_key(&[0u8; MAX_KEY_LEN]).is_ok());
        assert!(matches!(
            check_key(&[0u8; MAX_KEY_LEN + 1]),
            Err(Error::InvalidKey {
                reason: KeyError::TooLong { len: 512, .. },
                ..
            })
        ));
        assert!(matches!(
            check_key(b""),
            Err(Error::InvalidKey {
                reason: KeyError::Empty,
                ..
            })
        ));
        assert!(check_value(b"k", &vec![0u8; MAX_VALUE_LEN]).is_ok());
        assert!(matches!(
            check_value(b"k", &vec![0u8; MAX_VALUE_LEN + 1]),
            Err(Error::InvalidValue { .. })
        ));
    }
}
