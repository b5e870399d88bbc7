//! The table of requests in flight: iocbs at addresses that never move,
//! and keys (index + generation) that never name another request.

use uaio_abi::{iocb, iovec};

/// iocbs per chunk; chunks are never moved or freed while the table lives.
const CHUNK: usize = 64;

/// One entry: the generation of its current (or last) occupant, what the
/// owner keeps there while the request is in flight, and the iovec array
/// of a vectored request (its capacity is reused).
pub(crate) struct Entry<T> {
    pub(crate) gen: u64,
    pub(crate) value: Option<T>,
    pub(crate) iov: Vec<iovec>,
}

pub(crate) struct Slots<T> {
    cbs: Vec<Box<[iocb; CHUNK]>>,
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    used: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots { cbs: Vec::new(), entries: Vec::new(), free: Vec::new(), used: 0 }
    }
}

/// The `aio_data` of the request in entry `index` at generation `gen`.
pub(crate) fn data_of(index: u32, gen: u64) -> u64 {
    (gen << 32) | index as u64
}

impl<T> Slots<T> {
    /// Takes a free entry, stores `value` there with a new generation, and
    /// returns its index and generation.
    pub(crate) fn insert(&mut self, value: T) -> (u32, u64) {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = self.entries.len();
                if i.is_multiple_of(CHUNK) {
                    self.cbs.push(Box::new([iocb::default(); CHUNK]));
                }
                self.entries.push(Entry { gen: 0, value: None, iov: Vec::new() });
                i as u32
            }
        };
        let e = &mut self.entries[index as usize];
        e.gen += 1;
        e.value = Some(value);
        self.used += 1;
        (index, e.gen)
    }

    /// Frees entry `index` and returns what it held.
    pub(crate) fn remove(&mut self, index: u32) -> Option<T> {
        let v = self.entries.get_mut(index as usize)?.value.take()?;
        self.free.push(index);
        self.used -= 1;
        Some(v)
    }

    /// The occupied entry named by an event's `aio_data`, if its generation
    /// matches.
    pub(crate) fn find_data(&self, data: u64) -> Option<u32> {
        let index = data as u32;
        let e = self.entries.get(index as usize)?;
        (e.value.is_some() && (e.gen as u32) == (data >> 32) as u32).then_some(index)
    }

    /// The occupied entry `index` if its generation is exactly `gen`.
    pub(crate) fn find(&self, index: u32, gen: u64) -> Option<u32> {
        let e = self.entries.get(index as usize)?;
        (e.value.is_some() && e.gen == gen).then_some(index)
    }

    pub(crate) fn entry(&mut self, index: u32) -> &mut Entry<T> {
        &mut self.entries[index as usize]
    }

    /// The entry's iocb and its iovec storage, together.
    pub(crate) fn parts(&mut self, index: u32) -> (&mut iocb, &mut Entry<T>) {
        let i = index as usize;
        (&mut self.cbs[i / CHUNK][i % CHUNK], &mut self.entries[i])
    }

    /// The address of entry `index`'s iocb: stable for the table's life.
    pub(crate) fn cb_ptr(&mut self, index: u32) -> *mut iocb {
        let i = index as usize;
        &mut self.cbs[i / CHUNK][i % CHUNK]
    }

    /// Occupied entries.
    pub(crate) fn len(&self) -> usize {
        self.used
    }

    /// Every occupied entry.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut Entry<T>)> {
        self.entries.iter_mut().enumerate().filter(|(_, e)| e.value.is_some()).map(|(i, e)| (i as u32, e))
    }
}
