//! proxy-wasm ABI 0.2.1: the numbers both sides agree on, and the header map encoding.

/// `proxy_status_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    CasMismatch = 8,
    Unimplemented = 12,
}

/// `proxy_buffer_type_t` values this host serves.
pub const BUFFER_HTTP_CALL_RESPONSE_BODY: i32 = 4;
pub const BUFFER_VM_CONFIGURATION: i32 = 6;
pub const BUFFER_PLUGIN_CONFIGURATION: i32 = 7;

/// `proxy_map_type_t` values this host serves.
pub const MAP_HTTP_REQUEST_HEADERS: i32 = 0;
pub const MAP_HTTP_CALL_RESPONSE_HEADERS: i32 = 6;

/// `proxy_action_t`.
pub const ACTION_CONTINUE: i32 = 0;

pub fn log_level(level: i32) -> &'static str {
    match level {
        0 => "trace",
        1 => "debug",
        2 => "info",
        3 => "warn",
        4 => "error",
        _ => "critical",
    }
}

/// Serializes a header map as the ABI wants it: u32 count, count × (u32 key length, u32 value
/// length), then each key and value followed by a NUL byte. Little-endian, like wasm.
pub fn encode_map(pairs: &[(String, String)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len() + 2)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Reads a header map the filter serialized; `None` when it is malformed.
pub fn decode_map(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let u32_at = |i: usize| -> Option<usize> {
        Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?) as usize)
    };
    let count = u32_at(0)?;
    let mut lens = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        lens.push((u32_at(4 + i * 8)?, u32_at(8 + i * 8)?));
    }
    let mut at = 4 + count * 8;
    let mut pairs = Vec::with_capacity(lens.len());
    for (kl, vl) in lens {
        let k = bytes.get(at..at + kl)?;
        at += kl + 1;
        let v = bytes.get(at..at + vl)?;
        at += vl + 1;
        pairs.push((
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_round_trip_and_layout() {
        let pairs = vec![
            (":status".to_owned(), "200".to_owned()),
            ("a".to_owned(), String::new()),
        ];
        let bytes = encode_map(&pairs);
        assert_eq!(&bytes[..4], &2u32.to_le_bytes());
        assert_eq!(&bytes[4..12], &[7, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(&bytes[20..], b":status\x00200\x00a\x00\x00");
        assert_eq!(decode_map(&bytes), Some(pairs));
        assert_eq!(decode_map(&bytes[..10]), None);
    }
}
