//! [`Few`]: a vector that keeps its first `N` items inline and moves to the
//! heap only past them. The request path makes short lists (the counters
//! of one request, the RBAC values of one record) whose allocation and
//! free cost more than the work done with them, most of all under the
//! allocator of a Wasm VM.

/// Up to `N` items inline, then a `Vec`. Derefs to a slice.
#[derive(Clone)]
pub struct Few<T: Copy + Default, const N: usize> {
    inline: [T; N],
    /// Items in `inline`; unused once `spilled` holds them all.
    len: usize,
    /// Every item, once there were more than `N`.
    spilled: Vec<T>,
}

impl<T: Copy + Default, const N: usize> Few<T, N> {
    /// An empty list; allocates nothing.
    pub fn new() -> Self {
        Few {
            inline: [T::default(); N],
            len: 0,
            spilled: Vec::new(),
        }
    }

    fn is_spilled(&self) -> bool {
        !self.spilled.is_empty()
    }

    /// Appends one item.
    pub fn push(&mut self, item: T) {
        if self.is_spilled() {
            self.spilled.push(item);
            return;
        }
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = item;
                self.len += 1;
            }
            None => {
                let mut all = Vec::with_capacity(N.saturating_mul(2).max(4));
                all.extend_from_slice(&self.inline);
                all.push(item);
                self.spilled = all;
                self.len = 0;
            }
        }
    }

    /// Appends every item of `items`.
    pub fn extend_from_slice(&mut self, items: &[T]) {
        for &item in items {
            self.push(item);
        }
    }

    /// The items, in the order pushed.
    pub fn as_slice(&self) -> &[T] {
        if self.is_spilled() {
            &self.spilled
        } else {
            self.inline.get(..self.len).unwrap_or_default()
        }
    }

    /// The items, mutably (to sort them in place).
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        if self.is_spilled() {
            &mut self.spilled
        } else {
            self.inline.get_mut(..self.len).unwrap_or_default()
        }
    }

    /// Keeps the first `len` items.
    pub fn truncate(&mut self, len: usize) {
        if self.is_spilled() {
            // Emptied, the list is inline again (and empty).
            self.spilled.truncate(len);
            if self.spilled.is_empty() {
                self.len = 0;
            }
        } else {
            self.len = self.len.min(len);
        }
    }

    /// Removes consecutive repeated items (all repeats, once sorted).
    pub fn dedup(&mut self)
    where
        T: PartialEq,
    {
        let items = self.as_mut_slice();
        let mut kept = 0;
        for i in 0..items.len() {
            let Some(&item) = items.get(i) else {
                break;
            };
            let repeat = kept > 0 && items.get(kept - 1) == Some(&item);
            if !repeat {
                if let Some(slot) = items.get_mut(kept) {
                    *slot = item;
                }
                kept += 1;
            }
        }
        self.truncate(kept);
    }
}

impl<T: Copy + Default, const N: usize> Default for Few<T, N> {
    fn default() -> Self {
        Few::new()
    }
}

impl<T: Copy + Default, const N: usize> std::ops::Deref for Few<T, N> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<'f, T: Copy + Default, const N: usize> IntoIterator for &'f Few<T, N> {
    type Item = &'f T;
    type IntoIter = std::slice::Iter<'f, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl<T: Copy + Default, const N: usize> Extend<T> for Few<T, N> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        for item in items {
            self.push(item);
        }
    }
}

impl<T: Copy + Default, const N: usize> FromIterator<T> for Few<T, N> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut few = Few::new();
        few.extend(items);
        few
    }
}

impl<T: Copy + Default + std::fmt::Debug, const N: usize> std::fmt::Debug for Few<T, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<T: Copy + Default + PartialEq, const N: usize> PartialEq for Few<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Copy + Default + Eq, const N: usize> Eq for Few<T, N> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_stay_in_order_across_the_move_to_the_heap() {
        let mut few: Few<u32, 3> = Few::new();
        assert!(few.is_empty());
        for i in 0..3 {
            few.push(i);
        }
        assert!(!few.is_spilled());
        few.extend_from_slice(&[3, 4]);
        assert!(few.is_spilled());
        few.extend(5..40);
        assert_eq!(few.as_slice(), (0..40).collect::<Vec<_>>());
        assert_eq!(few.len(), 40);
    }

    #[test]
    fn dedup_keeps_one_of_each_run_inline_and_on_the_heap() {
        for input in [vec![1, 1, 2], vec![3, 3, 3, 1, 1, 2, 2, 2, 2, 5, 5]] {
            let mut few: Few<u8, 4> = input.iter().copied().collect();
            few.as_mut_slice().sort_unstable();
            few.dedup();
            let mut expected = input.clone();
            expected.sort_unstable();
            expected.dedup();
            assert_eq!(few.as_slice(), expected.as_slice());
        }
        let mut empty: Few<u8, 2> = [7, 8, 9].into_iter().collect();
        empty.truncate(0);
        assert!(empty.is_empty());
        empty.push(1);
        assert_eq!(empty.as_slice(), [1]);
    }

    #[test]
    fn equality_and_debug_see_only_the_items() {
        let a: Few<u8, 2> = [1, 2, 3].into_iter().collect();
        let b: Few<u8, 2> = [1, 2, 3].into_iter().collect();
        let c: Few<u8, 8> = [1, 2].into_iter().collect();
        assert_eq!(a, b);
        assert_eq!(format!("{a:?}"), "[1, 2, 3]");
        assert_eq!(format!("{c:?}"), "[1, 2]");
    }
}
