//! Work split across threads so that results never depend on the thread count: the caller
//! cuts the work into items fixed by the data (never by the number of threads), each item is
//! computed by one thread in a fixed order, and results come back in item order for the
//! caller to combine in that order.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Zero a part of a new buffer (from `Vec::spare_capacity_mut`) and return it as values.
/// Kernels that overwrite a new output give each thread its own part to zero just before it
/// writes there: zeroing the whole buffer on the calling thread first (`vec![0.0; n]`) was a
/// tenth of a two-thread epoch at 64 px, spent while the other thread waited.
pub(crate) fn zeroed(part: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    part.fill(MaybeUninit::new(0.0));
    // SAFETY: every element was initialised on the line above, and MaybeUninit<f32> has the
    // layout of f32.
    unsafe { &mut *(part as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Scratch buffers each thread keeps for its next kernel call.
const KEPT_SCRATCH: usize = 4;

thread_local! {
    static SCRATCH: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A thread's working buffer of `len` values, handed back to that thread's pool when
/// dropped. Its values are unspecified (left from an earlier call): callers write every
/// value before they read it.
///
/// Why: the convolution's column buffers are several MB per chunk at 256 px. Allocated anew
/// in every call, they came from the worker threads' own glibc arenas, whose heaps are
/// unmapped when empty and mapped again by the next call: a quarter of a 256 px ResNet-18
/// epoch went to the kernel's page faults and the TLB shootdowns they cause.
pub(crate) struct Scratch {
    buf: Vec<f32>,
    len: usize,
}

/// A scratch buffer of `len` values from this thread's pool (the smallest kept one that is
/// large enough, else the largest one grown).
pub(crate) fn scratch(len: usize) -> Scratch {
    if len == 0 {
        // Nothing to lend: keep the pool's buffers for the requests that need them.
        return Scratch {
            buf: Vec::new(),
            len,
        };
    }
    let kept = SCRATCH.with(|pool| {
        let mut pool = pool.borrow_mut();
        let fits = (0..pool.len())
            .filter(|&i| pool[i].len() >= len)
            .min_by_key(|&i| pool[i].len());
        fits.or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].len()))
            .map(|i| pool.swap_remove(i))
    });
    let mut buf = kept.unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    Scratch { buf, len }
}

impl Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() == 0 {
            return;
        }
        // During thread exit the pool may be gone; the buffer is then simply freed.
        let _ = SCRATCH.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            pool.push(buf);
            if pool.len() > KEPT_SCRATCH {
                let smallest = (0..pool.len()).min_by_key(|&i| pool[i].len());
                if let Some(i) = smallest {
                    pool.swap_remove(i);
                }
            }
        });
    }
}

/// Run `work(scratch, index, item)` for every item on up to `track::provenance::threads()`
/// threads when `parallel`, else on the calling thread. Threads take the next item as they
/// finish one (items differ in size, so a fixed assignment left a thread idle), each with its
/// own scratch space from `scratch()`; results come back in item order.
pub(crate) fn for_each_chunk<I: Send, R: Send, S>(
    items: Vec<I>,
    parallel: bool,
    scratch: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, usize, I) -> R + Sync,
) -> Vec<R> {
    let threads = if parallel {
        crate::track::provenance::threads().min(items.len())
    } else {
        1
    };
    if threads <= 1 {
        let mut sc = scratch();
        return items
            .into_iter()
            .enumerate()
            .map(|(i, it)| work(&mut sc, i, it))
            .collect();
    }
    let queue = Mutex::new(items.into_iter().enumerate());
    let next = || queue.lock().unwrap_or_else(|e| e.into_inner()).next();
    let results = Mutex::new(Vec::new());
    // On rayon's global pool (sized to the thread setting by `nn::use_thread_setting`): its
    // threads live for the whole process, where spawning threads per call cost about 50 µs
    // per convolution or batch norm.
    rayon::scope(|sc| {
        for _ in 0..threads {
            let (scratch, work, next, results) = (&scratch, &work, &next, &results);
            sc.spawn(move |_| {
                let mut s = scratch();
                let mut out = Vec::new();
                while let Some((i, it)) = next() {
                    out.push((i, work(&mut s, i, it)));
                }
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(out);
            });
        }
    });
    let mut done: Vec<(usize, R)> = results.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}
