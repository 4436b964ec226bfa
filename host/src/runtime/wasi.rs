//! The five WASI preview 1 functions a Rust `wasm32-wasip1` filter imports: enough for its
//! standard library (random seeds for hash maps, empty environment, stdout/stderr, exit). A full
//! WASI implementation would give a filter a file system and clocks it has no business with.

use wasmtime::{Caller, Extern, Linker};
use wasmtime::{Result, bail, format_err};

use super::hostcalls::HostState;

pub const PROVIDED: &[&str] = &[
    "random_get",
    "environ_get",
    "environ_sizes_get",
    "fd_write",
    "proc_exit",
];

fn mem(c: &mut Caller<'_, HostState>) -> Result<wasmtime::Memory> {
    c.get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or_else(|| format_err!("no memory"))
}

pub fn link(linker: &mut Linker<HostState>) -> Result<()> {
    const M: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        M,
        "random_get",
        |mut c: Caller<'_, HostState>, buf: i32, len: i32| -> Result<i32> {
            let m = mem(&mut c)?;
            let (buf, len) = (buf as u32 as usize, len as u32 as usize);
            let Some(dst) = m.data_mut(&mut c).get_mut(buf..buf + len) else {
                bail!("random_get out of bounds")
            };
            // Seeds for the module's hash maps: unpredictable enough, no crypto here.
            let mut x = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64
                ^ (dst.as_ptr() as u64).rotate_left(17);
            for b in dst {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            Ok(0)
        },
    )?;
    linker.func_wrap(
        M,
        "environ_sizes_get",
        |mut c: Caller<'_, HostState>, count: i32, size: i32| -> Result<i32> {
            let m = mem(&mut c)?;
            for p in [count, size] {
                let p = p as u32 as usize;
                let Some(dst) = m.data_mut(&mut c).get_mut(p..p + 4) else {
                    bail!("environ_sizes_get out of bounds")
                };
                dst.copy_from_slice(&0u32.to_le_bytes());
            }
            Ok(0)
        },
    )?;
    linker.func_wrap(
        M,
        "environ_get",
        |_: Caller<'_, HostState>, _environ: i32, _buf: i32| 0,
    )?;
    linker.func_wrap(
        M,
        "fd_write",
        |mut c: Caller<'_, HostState>, fd: i32, iovs: i32, n: i32, written: i32| -> Result<i32> {
            let m = mem(&mut c)?;
            let data = m.data(&c);
            let mut text = Vec::new();
            for i in 0..n as u32 as usize {
                let at = iovs as u32 as usize + i * 8;
                let word = |o: usize| {
                    data.get(o..o + 4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                };
                let (Some(ptr), Some(len)) = (word(at), word(at + 4)) else {
                    bail!("fd_write out of bounds")
                };
                text.extend_from_slice(
                    data.get(ptr..ptr + len)
                        .ok_or_else(|| format_err!("fd_write out of bounds"))?,
                );
            }
            let total = text.len() as u32;
            let level = if fd == 2 { "error" } else { "info" };
            (c.data().log)(level, String::from_utf8_lossy(&text).trim_end());
            let w = written as u32 as usize;
            let Some(dst) = m.data_mut(&mut c).get_mut(w..w + 4) else {
                bail!("fd_write out of bounds")
            };
            dst.copy_from_slice(&total.to_le_bytes());
            Ok(0)
        },
    )?;
    linker.func_wrap(
        M,
        "proc_exit",
        |_: Caller<'_, HostState>, code: i32| -> Result<()> {
            bail!("the module called proc_exit({code})")
        },
    )?;
    Ok(())
}
