//! The daemon's allocator and its options (`cmd/src/bin/allidbd.rs`: jemalloc, one arena per
//! physical CPU), so that allocations cost in an example what they cost in `allidbd`.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// SAFETY: jemalloc reads this symbol as a NUL-terminated C string of options; the bytes are
// static, never written, and end with the NUL.
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_OPTIONS: &[u8; 20] = b"percpu_arena:phycpu\0";
