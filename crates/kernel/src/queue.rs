//! [`EventQueue`]: a min-heap keyed by `(time, seq)` built for the scheduler's hot path.
//!
//! The heap itself holds only small `Copy` nodes (key + slot index); payloads sit in a slab
//! whose slots are recycled, so pushing and popping never allocate once warm and sifting
//! moves 24 bytes regardless of the payload size. The heap is 4-ary (half the depth of a
//! binary heap, so fewer dependent loads per pop; it wins clearly once the queue outgrows
//! L1) and the smallest child is picked without branches, because which child is smaller
//! is unpredictable and mispredictions would dominate.

/// Heap node: ordering key plus the payload's slab slot.
#[derive(Clone, Copy, Debug)]
struct Node {
    /// Time with the sign bit flipped so unsigned order equals signed order.
    time_key: u64,
    /// Insertion sequence: unique, so keys never tie.
    seq: u64,
    slot: usize,
}

impl Node {
    /// `(time, seq)` packed so one 128-bit comparison orders nodes.
    #[inline(always)]
    fn key(self) -> u128 {
        (u128::from(self.time_key) << 64) | u128::from(self.seq)
    }

    /// The signed time back from the flipped key.
    #[inline(always)]
    fn time(self) -> i64 {
        (self.time_key ^ SIGN) as i64
    }
}

/// Flips i64 order into u64 order.
const SIGN: u64 = 1 << 63;

/// Children per heap node.
const ARITY: usize = 4;
// `min4` is written out for exactly four children.
const _: () = assert!(ARITY == 4);

/// Moves `node` (logically at `hole`) up to its place.
#[inline(always)]
fn sift_up(heap: &mut [Node], mut hole: usize, node: Node) {
    let key = node.key();
    while hole > 0 {
        let parent = (hole - 1) / ARITY;
        let p = heap[parent];
        if key >= p.key() {
            break;
        }
        heap[hole] = p;
        hole = parent;
    }
    if let Some(slot) = heap.get_mut(hole) {
        *slot = node;
    }
}

/// Index of the smallest of the four nodes starting at `first` (tournament, branch-free).
#[inline(always)]
fn min4(heap: &[Node], first: usize) -> usize {
    let q = &heap[first..first + 4];
    let (k0, k1, k2, k3) = (q[0].key(), q[1].key(), q[2].key(), q[3].key());
    let a = usize::from(k1 < k0);
    let ka = if k1 < k0 { k1 } else { k0 };
    let b = 2 + usize::from(k3 < k2);
    let kb = if k3 < k2 { k3 } else { k2 };
    first + if kb < ka { b } else { a }
}

/// A queue popping items in ascending `(time, insertion sequence)` order: ties are FIFO.
pub(crate) struct EventQueue<T> {
    heap: Vec<Node>,
    slab: Vec<Option<T>>,
    free: Vec<usize>,
    next_seq: u64,
}

impl<T> EventQueue<T> {
    pub(crate) fn new() -> Self {
        EventQueue {
            heap: Vec::new(),
            slab: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
        }
    }

    /// Number of queued items.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Time of the earliest item, without touching its payload.
    #[inline]
    pub(crate) fn peek_time(&self) -> Option<i64> {
        self.heap.first().map(|n| n.time())
    }

    /// Time and payload of the earliest item.
    #[inline]
    pub(crate) fn peek(&self) -> Option<(i64, &T)> {
        let node = *self.heap.first()?;
        let item = self.slab.get(node.slot)?.as_ref()?;
        Some((node.time(), item))
    }

    /// Queues `item` at `time` and returns its sequence number.
    #[inline]
    pub(crate) fn push(&mut self, time: i64, item: T) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(s) = self.slab.get_mut(slot) {
                    *s = Some(item);
                }
                slot
            }
            None => {
                self.slab.push(Some(item));
                self.slab.len() - 1
            }
        };
        let node = Node {
            time_key: (time as u64) ^ SIGN,
            seq,
            slot,
        };
        self.heap.push(node);
        self.sift_up(self.heap.len() - 1, node);
        seq
    }

    /// Removes the earliest item, returning `(time, seq, item)`.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<(i64, u64, T)> {
        let last = self.heap.pop()?;
        let top = match self.heap.first().copied() {
            Some(top) => {
                self.sift_down_from_root(last);
                top
            }
            None => last,
        };
        let item = self.slab.get_mut(top.slot)?.take()?;
        self.free.push(top.slot);
        Some((top.time(), top.seq, item))
    }

    /// Keeps only the items for which `keep` returns true, then restores heap order.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let slab = &mut self.slab;
        let free = &mut self.free;
        self.heap.retain(|node| {
            let Some(s) = slab.get_mut(node.slot) else {
                return false;
            };
            if s.as_ref().is_some_and(&mut keep) {
                return true;
            }
            *s = None;
            free.push(node.slot);
            false
        });
        // Floyd's heapify: O(n).
        for i in (0..self.heap.len().div_ceil(ARITY)).rev() {
            let node = self.heap[i];
            self.sift_down(i, node);
        }
    }

    /// Moves `node` (logically at `hole`) up to its place.
    #[inline(always)]
    fn sift_up(&mut self, hole: usize, node: Node) {
        sift_up(&mut self.heap, hole, node);
    }

    /// Places `node` into the vacated root: walk the hole down to a leaf along the smallest
    /// children, then sift `node` up from there. Popped replacements come from the end of
    /// the heap and usually belong near the bottom, so this does fewer comparisons.
    #[inline(always)]
    fn sift_down_from_root(&mut self, node: Node) {
        // A local slice lets the optimiser keep pointer and length in registers.
        let heap = self.heap.as_mut_slice();
        let n = heap.len();
        let mut hole = 0;
        let mut first = 1;
        while first + ARITY <= n {
            let best = min4(heap, first);
            heap[hole] = heap[best];
            hole = best;
            first = ARITY * hole + 1;
        }
        if first < n {
            // The last parent may have fewer than ARITY children.
            let mut best = first;
            for i in first + 1..n {
                best = if heap[i].key() < heap[best].key() {
                    i
                } else {
                    best
                };
            }
            heap[hole] = heap[best];
            hole = best;
        }
        sift_up(heap, hole, node);
    }

    /// Classic sift-down of `node` from `hole` (used by heapify).
    fn sift_down(&mut self, mut hole: usize, node: Node) {
        let n = self.heap.len();
        let key = node.key();
        loop {
            let first = ARITY * hole + 1;
            if first >= n {
                break;
            }
            let mut child = first;
            for i in first + 1..(first + ARITY).min(n) {
                if self.heap[i].key() < self.heap[child].key() {
                    child = i;
                }
            }
            if key <= self.heap[child].key() {
                break;
            }
            self.heap[hole] = self.heap[child];
            hole = child;
        }
        self.heap[hole] = node;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::DetRng;

    #[test]
    fn pops_in_time_then_fifo_order() {
        let mut q = EventQueue::new();
        let mut rng = DetRng::new(5);
        let mut expected = Vec::new();
        for i in 0..5_000u32 {
            let t = rng.gen_range(-50i64..50);
            let seq = q.push(t, i);
            expected.push((t, seq, i));
        }
        expected.sort_by_key(|&(t, s, _)| (t, s));
        let mut got = Vec::new();
        while let Some(x) = q.pop() {
            got.push(x);
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn every_small_size_pops_sorted() {
        // Covers heaps whose last parent has 1..=4 children, with duplicate times.
        for n in 0..64i64 {
            let mut q = EventQueue::new();
            for i in 0..n {
                q.push((i * 7919) % 13, i);
            }
            let mut prev = None;
            let mut count = 0;
            while let Some((t, s, _)) = q.pop() {
                if let Some(p) = prev {
                    assert!((t, s) > p, "n={n}");
                }
                prev = Some((t, s));
                count += 1;
            }
            assert_eq!(count, n);
        }
    }

    #[test]
    fn interleaved_push_pop_matches_sorted_model() {
        let mut q = EventQueue::new();
        let mut model = std::collections::BTreeSet::new();
        let mut rng = DetRng::new(8);
        for _ in 0..20_000 {
            if rng.chance(3, 5) || model.is_empty() {
                let t = rng.gen_range(0i64..1_000);
                let s = q.push(t, ());
                model.insert((t, s));
            } else {
                let want = model.pop_first();
                let got = q.pop().map(|(t, s, ())| (t, s));
                assert_eq!(got, want);
            }
            assert_eq!(q.len(), model.len());
        }
    }

    #[test]
    fn retain_keeps_order_and_recycles_slots() {
        let mut q = EventQueue::new();
        for i in 0..100i64 {
            q.push(100 - i, i);
        }
        q.retain(|&i| i % 3 == 0);
        assert_eq!(q.len(), 34);
        let mut last = i64::MIN;
        while let Some((t, _, i)) = q.pop() {
            assert_eq!(i % 3, 0);
            assert!(t > last);
            last = t;
        }
        // Slots are reused, so the slab does not grow.
        for i in 0..100i64 {
            q.push(i, i);
        }
        assert_eq!(q.slab.len(), 100);
    }
}
