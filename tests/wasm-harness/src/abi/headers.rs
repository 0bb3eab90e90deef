//! Header-map hostcalls (`proxy_*_header_map_*`) and the map wire format.
//!
//! Wire format (as the Rust SDK serializes it): `u32 count`, then
//! `(u32 key_len, u32 value_len)` per pair, then each `key\0value\0`.
//! All integers little-endian.

use crate::memory::{copy_out, finish, read, read_string, write_u32, HostResult};
use crate::state::StoreData;
use crate::types::{Headers, MapType, Status};
use wasmtime::{Caller, Linker};

/// Serializes pairs into the proxy-wasm map wire format.
pub fn serialize_map(map: &[(String, String)]) -> Vec<u8> {
    let size = 4 + map
        .iter()
        .map(|(k, v)| k.len() + v.len() + 10)
        .sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (k, v) in map {
        bytes.extend_from_slice(&(k.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in map {
        bytes.extend_from_slice(k.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(v.as_bytes());
        bytes.push(0);
    }
    bytes
}

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(raw)).ok()
}

/// Parses the proxy-wasm map wire format; `None` when malformed.
/// Empty input is an empty map (the SDK sends nothing for "no headers").
pub fn deserialize_map(bytes: &[u8]) -> Option<Headers> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = u32_at(bytes, 0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    let mut map = Vec::with_capacity(count.min(1024));
    for n in 0..count {
        let key_len = u32_at(bytes, 4 + n * 8)?;
        let value_len = u32_at(bytes, 8 + n * 8)?;
        let key = bytes.get(data..data.checked_add(key_len)?)?;
        data = data.checked_add(key_len + 1)?;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data = data.checked_add(value_len + 1)?;
        map.push((
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Some(map)
}

/// First value of `name` (case-insensitive).
pub(crate) fn find<'a>(map: &'a [(String, String)], name: &str) -> Option<&'a str> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Envoy `setCopy`: replace the first occurrence, drop the others, append if absent.
pub(crate) fn replace(map: &mut Headers, name: &str, value: String) {
    let mut seen = false;
    map.retain_mut(|(k, v)| {
        if !k.eq_ignore_ascii_case(name) {
            return true;
        }
        if seen {
            return false;
        }
        seen = true;
        *v = value.clone();
        true
    });
    if !seen {
        map.push((name.to_ascii_lowercase(), value));
    }
}

/// Removes every occurrence of `name`.
pub(crate) fn remove(map: &mut Headers, name: &str) {
    map.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
}

/// Runs `f` on the map `map_type` of the effective context.
fn with_map<R>(
    data: &mut StoreData,
    map_type: u32,
    f: impl FnOnce(&mut Headers) -> R,
) -> Result<R, Status> {
    let map_type = MapType::from_raw(map_type).ok_or(Status::BadArgument)?;
    let map = match map_type {
        MapType::HttpRequestHeaders => data.current_stream().map(|s| &mut s.request_headers),
        MapType::HttpRequestTrailers => data.current_stream().map(|s| &mut s.request_trailers),
        MapType::HttpResponseHeaders => data.current_stream().map(|s| &mut s.response_headers),
        MapType::HttpResponseTrailers => data.current_stream().map(|s| &mut s.response_trailers),
        MapType::HttpCallResponseHeaders => data.callout_response.as_mut().map(|r| &mut r.headers),
        MapType::HttpCallResponseTrailers => {
            data.callout_response.as_mut().map(|r| &mut r.trailers)
        }
        MapType::GrpcReceiveInitialMetadata | MapType::GrpcReceiveTrailingMetadata => None,
    };
    map.map(f).ok_or(Status::NotFound)
}

fn get_pairs(
    c: &mut Caller<'_, StoreData>,
    map_type: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let bytes = with_map(c.data_mut(), map_type, |m| serialize_map(m))?;
    copy_out(c, &bytes, ptr_ptr, size_ptr)
}

fn get_size(c: &mut Caller<'_, StoreData>, map_type: u32, size_ptr: u32) -> HostResult {
    let size = with_map(c.data_mut(), map_type, |m| serialize_map(m).len())?;
    write_u32(c, size_ptr, u32::try_from(size).unwrap_or(u32::MAX))
}

fn set_pairs(c: &mut Caller<'_, StoreData>, map_type: u32, ptr: u32, len: u32) -> HostResult {
    let bytes = read(c, ptr, len)?;
    let pairs = deserialize_map(&bytes).ok_or(Status::BadArgument)?;
    let pairs = pairs
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    with_map(c.data_mut(), map_type, |m| *m = pairs)?;
    Ok(())
}

fn get_value(
    c: &mut Caller<'_, StoreData>,
    map_type: u32,
    key_ptr: u32,
    key_len: u32,
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    let key = read_string(c, key_ptr, key_len)?;
    let value = with_map(c.data_mut(), map_type, |m| find(m, &key).map(str::to_owned))?
        .ok_or(Status::NotFound)?;
    copy_out(c, value.as_bytes(), ptr_ptr, size_ptr)
}

fn add_value(
    c: &mut Caller<'_, StoreData>,
    map_type: u32,
    key: (u32, u32),
    value: (u32, u32),
) -> HostResult {
    let key = read_string(c, key.0, key.1)?;
    let value = read_string(c, value.0, value.1)?;
    with_map(c.data_mut(), map_type, |m| {
        m.push((key.to_ascii_lowercase(), value))
    })?;
    Ok(())
}

fn replace_value(
    c: &mut Caller<'_, StoreData>,
    map_type: u32,
    key: (u32, u32),
    value: (u32, u32),
) -> HostResult {
    let key = read_string(c, key.0, key.1)?;
    let value = read_string(c, value.0, value.1)?;
    with_map(c.data_mut(), map_type, |m| replace(m, &key, value))?;
    Ok(())
}

fn remove_value(
    c: &mut Caller<'_, StoreData>,
    map_type: u32,
    key_ptr: u32,
    key_len: u32,
) -> HostResult {
    let key = read_string(c, key_ptr, key_len)?;
    with_map(c.data_mut(), map_type, |m| remove(m, &key))?;
    Ok(())
}

type C<'a> = Caller<'a, StoreData>;

pub(crate) fn link(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, t: u32, p: u32, s: u32| finish(get_pairs(&mut c, t, p, s)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: C<'_>, t: u32, s: u32| finish(get_size(&mut c, t, s)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, t: u32, p: u32, l: u32| finish(set_pairs(&mut c, t, p, l)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, kl: u32, p: u32, s: u32| {
            finish(get_value(&mut c, t, kp, kl, p, s))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, kl: u32, vp: u32, vl: u32| {
            finish(add_value(&mut c, t, (kp, kl), (vp, vl)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, kl: u32, vp: u32, vl: u32| {
            finish(replace_value(&mut c, t, (kp, kl), (vp, vl)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, kl: u32| finish(remove_value(&mut c, t, kp, kl)),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Headers {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn map_roundtrips_through_wire_format() {
        let map = pairs(&[(":method", "GET"), (":path", "/bytes/1"), ("x", "")]);
        let bytes = serialize_map(&map);
        assert_eq!(&bytes[..4], &3u32.to_le_bytes());
        assert_eq!(deserialize_map(&bytes), Some(map));
    }

    #[test]
    fn map_matches_sdk_encoding() {
        // Taken from the SDK's own SERIALIZED_MAP test vector (first pair).
        let bytes = serialize_map(&pairs(&[(":method", "GET")]));
        let expected: &[u8] = &[
            1, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 58, 109, 101, 116, 104, 111, 100, 0, 71, 69, 84, 0,
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn truncated_map_is_rejected_not_panicking() {
        let bytes = serialize_map(&pairs(&[("key", "value")]));
        for cut in 1..bytes.len() - 1 {
            assert_eq!(deserialize_map(&bytes[..cut]), None, "cut at {cut}");
        }
        assert_eq!(deserialize_map(&[255, 255, 255, 255]), None);
    }

    #[test]
    fn replace_keeps_position_and_drops_duplicates() {
        let mut map = pairs(&[("a", "1"), ("X-Y", "2"), ("b", "3"), ("x-y", "4")]);
        replace(&mut map, "x-y", "new".into());
        assert_eq!(map, pairs(&[("a", "1"), ("X-Y", "new"), ("b", "3")]));
        replace(&mut map, "Fresh", "v".into());
        assert_eq!(map.last(), Some(&("fresh".to_string(), "v".to_string())));
        remove(&mut map, "x-Y");
        assert_eq!(find(&map, "x-y"), None);
    }
}
