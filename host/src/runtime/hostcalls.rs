//! The `env` functions a proxy-wasm module imports, on wasmtime. Each reads or writes the
//! module's memory and the [`HostState`] of the store; buffers handed to the module are
//! allocated in its memory through its own `proxy_on_memory_allocate`, as Envoy does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Extern, Linker, Memory, StoreLimits};
use wasmtime::{Result, bail, format_err};

use super::abi::{self, Status};

/// A call the filter dispatched, waiting to be performed.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

/// An answer to a dispatched call: no headers at all means it failed (as Envoy reports it).
#[derive(Clone, Debug, Default)]
pub struct CallResponse {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The filter's own answer to the request.
#[derive(Clone, Debug)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Shared data, visible to every instance of a runtime (Envoy shares it across worker VMs).
pub type SharedData = Arc<Mutex<HashMap<String, (Vec<u8>, u32)>>>;

/// Where the module's log lines go.
pub type LogSink = Arc<dyn Fn(&str, &str) + Send + Sync>;

pub struct HostState {
    pub limits: StoreLimits,
    pub plugin_config: Vec<u8>,
    pub clusters: Arc<HashMap<String, String>>,
    pub shared: SharedData,
    pub log: LogSink,
    pub effective_context: u32,
    pub request_headers: Vec<(String, String)>,
    pub call_response: Option<CallResponse>,
    pub local_response: Option<LocalResponse>,
    pub dispatched: Vec<Dispatch>,
    pub next_token: u32,
}

fn memory(caller: &mut Caller<'_, HostState>) -> Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => bail!("the module exports no memory"),
    }
}

fn read(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let mem = memory(caller)?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    mem.data(&caller)
        .get(ptr..ptr.saturating_add(len))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format_err!("the module passed {len} bytes at {ptr:#x}, outside its memory"))
}

fn read_str(caller: &mut Caller<'_, HostState>, ptr: i32, len: i32) -> Result<String> {
    Ok(String::from_utf8_lossy(&read(caller, ptr, len)?).into_owned())
}

fn write(caller: &mut Caller<'_, HostState>, ptr: i32, bytes: &[u8]) -> Result<()> {
    let mem = memory(caller)?;
    let ptr = ptr as u32 as usize;
    mem.data_mut(&mut *caller)
        .get_mut(ptr..ptr + bytes.len())
        .ok_or_else(|| format_err!("the module asked for a write at {ptr:#x}, outside its memory"))?
        .copy_from_slice(bytes);
    Ok(())
}

/// Copies `data` into memory the module allocates, and writes its address and size to the two
/// out-pointers.
fn hand_over(
    caller: &mut Caller<'_, HostState>,
    data: &[u8],
    ptr_out: i32,
    size_out: i32,
) -> Result<()> {
    let ptr = if data.is_empty() {
        0
    } else {
        let alloc = caller
            .get_export("proxy_on_memory_allocate")
            .and_then(Extern::into_func)
            .ok_or_else(|| format_err!("the module exports no proxy_on_memory_allocate"))?
            .typed::<i32, i32>(&caller)?;
        let ptr = alloc.call(&mut *caller, data.len() as i32)?;
        if ptr == 0 {
            bail!("the module could not allocate {} bytes", data.len());
        }
        write(caller, ptr, data)?;
        ptr
    };
    write(caller, ptr_out, &(ptr as u32).to_le_bytes())?;
    write(caller, size_out, &(data.len() as u32).to_le_bytes())
}

fn map_of(state: &HostState, map_type: i32) -> Option<&[(String, String)]> {
    match map_type {
        abi::MAP_HTTP_REQUEST_HEADERS => Some(&state.request_headers),
        abi::MAP_HTTP_CALL_RESPONSE_HEADERS => {
            state.call_response.as_ref().map(|r| r.headers.as_slice())
        }
        _ => None,
    }
}

/// The functions of the ABI this host does not serve: they exist (a module may import them, the
/// SDK imports them all) and answer `Unimplemented`, as a host may.
pub const UNIMPLEMENTED: &[(&str, usize)] = &[
    ("proxy_set_buffer_bytes", 5),
    ("proxy_set_header_map_pairs", 3),
    ("proxy_add_header_map_value", 5),
    ("proxy_replace_header_map_value", 5),
    ("proxy_remove_header_map_value", 3),
    ("proxy_set_property", 4),
    ("proxy_get_status", 3),
    ("proxy_grpc_call", 12),
    ("proxy_grpc_stream", 9),
    ("proxy_grpc_send", 4),
    ("proxy_grpc_cancel", 1),
    ("proxy_grpc_close", 1),
    ("proxy_register_shared_queue", 3),
    ("proxy_resolve_shared_queue", 5),
    ("proxy_dequeue_shared_queue", 3),
    ("proxy_enqueue_shared_queue", 3),
    ("proxy_call_foreign_function", 6),
];

/// Every `env` function this host defines.
pub fn provided() -> Vec<&'static str> {
    let mut names = vec![
        "proxy_log",
        "proxy_get_current_time_nanoseconds",
        "proxy_set_tick_period_milliseconds",
        "proxy_get_buffer_bytes",
        "proxy_get_header_map_pairs",
        "proxy_get_header_map_value",
        "proxy_get_property",
        "proxy_get_shared_data",
        "proxy_set_shared_data",
        "proxy_http_call",
        "proxy_send_local_response",
        "proxy_continue_stream",
        "proxy_close_stream",
        "proxy_done",
        "proxy_set_effective_context",
    ];
    names.extend(UNIMPLEMENTED.iter().map(|(n, _)| *n));
    names
}

pub fn link(linker: &mut Linker<HostState>) -> Result<()> {
    let ok = Status::Ok as i32;
    linker.func_wrap(
        "env",
        "proxy_log",
        move |mut c: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| -> Result<i32> {
            let msg = read_str(&mut c, ptr, len)?;
            (c.data().log)(abi::log_level(level), &msg);
            Ok(ok)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        move |mut c: Caller<'_, HostState>, out: i32| -> Result<i32> {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
            write(&mut c, out, &nanos.to_le_bytes())?;
            Ok(ok)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        move |_: Caller<'_, HostState>, _period: i32| ok,
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        move |mut c: Caller<'_, HostState>,
              kind: i32,
              start: i32,
              max: i32,
              ptr_out: i32,
              size_out: i32|
              -> Result<i32> {
            // The buffer is taken out of the state while it is copied into the module (no second
            // copy on the host side), then put back.
            let whole: Vec<u8> = match kind {
                abi::BUFFER_PLUGIN_CONFIGURATION => std::mem::take(&mut c.data_mut().plugin_config),
                abi::BUFFER_VM_CONFIGURATION => Vec::new(),
                abi::BUFFER_HTTP_CALL_RESPONSE_BODY => match c.data_mut().call_response.as_mut() {
                    Some(r) => std::mem::take(&mut r.body),
                    None => return Ok(Status::NotFound as i32),
                },
                _ => return Ok(Status::NotFound as i32),
            };
            let from = (start as u32 as usize).min(whole.len());
            let to = from.saturating_add(max as u32 as usize).min(whole.len());
            let handed = hand_over(&mut c, &whole[from..to], ptr_out, size_out);
            match kind {
                abi::BUFFER_PLUGIN_CONFIGURATION => c.data_mut().plugin_config = whole,
                abi::BUFFER_HTTP_CALL_RESPONSE_BODY => {
                    if let Some(r) = c.data_mut().call_response.as_mut() {
                        r.body = whole;
                    }
                }
                _ => {}
            }
            handed?;
            Ok(ok)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        move |mut c: Caller<'_, HostState>, map: i32, ptr_out: i32, size_out: i32| -> Result<i32> {
            let Some(pairs) = map_of(c.data(), map) else {
                return Ok(Status::NotFound as i32);
            };
            let bytes = abi::encode_map(pairs);
            hand_over(&mut c, &bytes, ptr_out, size_out)?;
            Ok(ok)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        move |mut c: Caller<'_, HostState>,
              map: i32,
              key: i32,
              key_len: i32,
              ptr_out: i32,
              size_out: i32|
              -> Result<i32> {
            let key = read_str(&mut c, key, key_len)?;
            let value = map_of(c.data(), map)
                .and_then(|pairs| pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(&key)))
                .map(|(_, v)| v.clone());
            match value {
                Some(v) => {
                    hand_over(&mut c, v.as_bytes(), ptr_out, size_out)?;
                    Ok(ok)
                }
                None => Ok(Status::NotFound as i32),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_property",
        move |_: Caller<'_, HostState>, _p: i32, _l: i32, _po: i32, _so: i32| {
            Status::NotFound as i32
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        move |mut c: Caller<'_, HostState>,
              key: i32,
              key_len: i32,
              ptr_out: i32,
              size_out: i32,
              cas_out: i32|
              -> Result<i32> {
            let key = read_str(&mut c, key, key_len)?;
            let entry = c
                .data()
                .shared
                .lock()
                .map_err(|_| format_err!("shared data poisoned"))?
                .get(&key)
                .cloned();
            let Some((value, cas)) = entry else {
                return Ok(Status::NotFound as i32);
            };
            hand_over(&mut c, &value, ptr_out, size_out)?;
            write(&mut c, cas_out, &cas.to_le_bytes())?;
            Ok(ok)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        move |mut c: Caller<'_, HostState>,
              key: i32,
              key_len: i32,
              value: i32,
              value_len: i32,
              cas: i32|
              -> Result<i32> {
            let key = read_str(&mut c, key, key_len)?;
            let value = read(&mut c, value, value_len)?;
            let shared = Arc::clone(&c.data().shared);
            let mut shared = shared
                .lock()
                .map_err(|_| format_err!("shared data poisoned"))?;
            let current = shared.get(&key).map_or(0, |(_, c)| *c);
            if cas != 0 && cas as u32 != current {
                return Ok(Status::CasMismatch as i32);
            }
            shared.insert(key, (value, current.wrapping_add(1).max(1)));
            Ok(ok)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_http_call",
        move |mut c: Caller<'_, HostState>,
              upstream: i32,
              upstream_len: i32,
              headers: i32,
              headers_len: i32,
              _body: i32,
              _body_len: i32,
              _trailers: i32,
              _trailers_len: i32,
              timeout_ms: i32,
              token_out: i32|
              -> Result<i32> {
            let cluster = read_str(&mut c, upstream, upstream_len)?;
            if !c.data().clusters.contains_key(&cluster) {
                // Envoy answers an unknown cluster the same way.
                return Ok(Status::BadArgument as i32);
            }
            let raw = read(&mut c, headers, headers_len)?;
            let headers = abi::decode_map(&raw)
                .ok_or_else(|| format_err!("the module sent a malformed header map"))?;
            let s = c.data_mut();
            s.next_token = s.next_token.wrapping_add(1).max(1);
            let token = s.next_token;
            s.dispatched.push(Dispatch {
                token,
                cluster,
                headers,
                timeout: Duration::from_millis(timeout_ms as u32 as u64),
            });
            write(&mut c, token_out, &token.to_le_bytes())?;
            Ok(ok)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        move |mut c: Caller<'_, HostState>,
              status: i32,
              _details: i32,
              _details_len: i32,
              body: i32,
              body_len: i32,
              headers: i32,
              headers_len: i32,
              _grpc: i32|
              -> Result<i32> {
            let body = read(&mut c, body, body_len)?;
            let raw = read(&mut c, headers, headers_len)?;
            let headers = abi::decode_map(&raw)
                .ok_or_else(|| format_err!("the module sent a malformed header map"))?;
            c.data_mut().local_response = Some(LocalResponse {
                status: status as u16,
                headers,
                body,
            });
            Ok(ok)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        move |_: Caller<'_, HostState>, _s: i32| ok,
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        move |_: Caller<'_, HostState>, _s: i32| ok,
    )?;
    linker.func_wrap("env", "proxy_done", move |_: Caller<'_, HostState>| ok)?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        move |mut c: Caller<'_, HostState>, ctx: i32| {
            c.data_mut().effective_context = ctx as u32;
            ok
        },
    )?;
    for (name, arity) in UNIMPLEMENTED {
        let ty = wasmtime::FuncType::new(
            linker.engine(),
            vec![wasmtime::ValType::I32; *arity],
            vec![wasmtime::ValType::I32],
        );
        linker.func_new("env", name, ty, |_, _, results| {
            results[0] = wasmtime::Val::I32(Status::Unimplemented as i32);
            Ok(())
        })?;
    }
    Ok(())
}
