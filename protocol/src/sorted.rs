//! Ordered maps and sets kept as sorted vectors: the subset of `BTreeMap`/`BTreeSet` the room and
//! the objects use, with the same order and results, in a fraction of the Worker's wasm.
//!
//! Every `BTreeMap<K, V>` instance brings its own node code (insert with splits, remove with
//! merges and steals, range walks): 3-7 KB of wasm per key/value pair of types. Here the keys sit
//! in one `Vec<K>` and the values in another, so the search is generic over the key alone (a
//! handful of instances: `u64`, `String`, `(u64, u64)`) and what depends on the value is a
//! `Vec<V>` insert or remove. Lookups are a binary search over contiguous keys; an insert or a
//! remove moves the entries after it, which for the sizes these maps hold (a room's connections,
//! its members, a user's rate buckets) is a copy of a few kilobytes at most. The property tests
//! below check every operation against `BTreeMap`.

use alloc::vec::Vec;
use core::borrow::Borrow;
use core::fmt;
use core::ops::Index;

/// A map ordered by key (see the module's documentation).
#[derive(Clone, PartialEq, Eq)]
pub struct SortedMap<K, V> {
    keys: Vec<K>,
    vals: Vec<V>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap { keys: Vec::new(), vals: Vec::new() }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SortedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Where `key` is in `keys`, or where it would go.
fn search<K: Borrow<Q>, Q: Ord + ?Sized>(keys: &[K], key: &Q) -> Result<usize, usize> {
    keys.binary_search_by(|k| k.borrow().cmp(key))
}

impl<K, V> SortedMap<K, V> {
    pub const fn new() -> Self {
        SortedMap { keys: Vec::new(), vals: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The entries in ascending key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator {
        self.keys.iter().zip(self.vals.iter())
    }

    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = (&K, &mut V)> + ExactSizeIterator {
        self.keys.iter().zip(self.vals.iter_mut())
    }

    pub fn keys(&self) -> core::slice::Iter<'_, K> {
        self.keys.iter()
    }

    pub fn values(&self) -> core::slice::Iter<'_, V> {
        self.vals.iter()
    }

    pub fn values_mut(&mut self) -> core::slice::IterMut<'_, V> {
        self.vals.iter_mut()
    }

    /// Keeps the entries for which `keep` is true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let mut kept = 0;
        for i in 0..self.keys.len() {
            if keep(&self.keys[i], &mut self.vals[i]) {
                self.keys.swap(kept, i);
                self.vals.swap(kept, i);
                kept += 1;
            }
        }
        self.keys.truncate(kept);
        self.vals.truncate(kept);
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        search(&self.keys, key).ok().map(|i| &self.vals[i])
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        search(&self.keys, key).ok().map(|i| &mut self.vals[i])
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        search(&self.keys, key).is_ok()
    }

    /// Sets `key`'s value, returning the one it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match search(&self.keys, &key) {
            Ok(i) => Some(core::mem::replace(&mut self.vals[i], value)),
            Err(i) => {
                self.keys.insert(i, key);
                self.vals.insert(i, value);
                None
            }
        }
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let i = search(&self.keys, key).ok()?;
        self.keys.remove(i);
        Some(self.vals.remove(i))
    }

    /// The entry for `key`, to read or fill in place.
    pub fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        match search(&self.keys, &key) {
            Ok(i) => Entry { map: self, at: i, key: None },
            Err(i) => Entry { map: self, at: i, key: Some(key) },
        }
    }
}

/// A map's slot for one key, found once (`SortedMap::entry`).
pub struct Entry<'a, K, V> {
    map: &'a mut SortedMap<K, V>,
    at: usize,
    /// The key when it is not in the map yet.
    key: Option<K>,
}

impl<'a, K, V> Entry<'a, K, V> {
    pub fn or_insert_with(self, make: impl FnOnce() -> V) -> &'a mut V {
        if let Some(key) = self.key {
            self.map.keys.insert(self.at, key);
            self.map.vals.insert(self.at, make());
        }
        &mut self.map.vals[self.at]
    }

    pub fn or_insert(self, value: V) -> &'a mut V {
        self.or_insert_with(|| value)
    }

    pub fn or_default(self) -> &'a mut V
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }
}

impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> Index<&Q> for SortedMap<K, V> {
    type Output = V;

    /// Panics when `key` is absent, as `BTreeMap`'s does: only for keys known to be there.
    fn index(&self, key: &Q) -> &V {
        match self.get(key) {
            Some(v) => v,
            None => panic!("no entry for the key"),
        }
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SortedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = SortedMap::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl<K, V> IntoIterator for SortedMap<K, V> {
    type Item = (K, V);
    type IntoIter = core::iter::Zip<alloc::vec::IntoIter<K>, alloc::vec::IntoIter<V>>;

    fn into_iter(self) -> Self::IntoIter {
        self.keys.into_iter().zip(self.vals)
    }
}

impl<'a, K, V> IntoIterator for &'a SortedMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = core::iter::Zip<core::slice::Iter<'a, K>, core::slice::Iter<'a, V>>;

    fn into_iter(self) -> Self::IntoIter {
        self.keys.iter().zip(self.vals.iter())
    }
}

/// A set ordered by value (see the module's documentation).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SortedSet<T> {
    items: Vec<T>,
}

impl<T: fmt::Debug> fmt::Debug for SortedSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.items.iter()).finish()
    }
}

impl<T> SortedSet<T> {
    pub const fn new() -> Self {
        SortedSet { items: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items in ascending order.
    pub fn iter(&self) -> core::slice::Iter<'_, T> {
        self.items.iter()
    }

    /// The smallest item.
    pub fn first(&self) -> Option<&T> {
        self.items.first()
    }

    /// Removes and returns the smallest item.
    pub fn pop_first(&mut self) -> Option<T> {
        if self.items.is_empty() {
            None
        } else {
            Some(self.items.remove(0))
        }
    }
}

impl<T: Ord> SortedSet<T> {
    pub fn contains<Q: Ord + ?Sized>(&self, item: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        search(&self.items, item).is_ok()
    }

    /// Adds `item`; false when it was there already.
    pub fn insert(&mut self, item: T) -> bool {
        match search(&self.items, &item) {
            Ok(_) => false,
            Err(i) => {
                self.items.insert(i, item);
                true
            }
        }
    }

    /// Removes `item`; false when it was not there.
    pub fn remove<Q: Ord + ?Sized>(&mut self, item: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        match search(&self.items, item) {
            Ok(i) => {
                self.items.remove(i);
                true
            }
            Err(_) => false,
        }
    }
}

impl<T: Ord> FromIterator<T> for SortedSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut set = SortedSet::new();
        for item in iter {
            set.insert(item);
        }
        set
    }
}

impl<T: Ord, const N: usize> From<[T; N]> for SortedSet<T> {
    fn from(items: [T; N]) -> Self {
        items.into_iter().collect()
    }
}

impl<T> IntoIterator for SortedSet<T> {
    type Item = T;
    type IntoIter = alloc::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<'a, T> IntoIterator for &'a SortedSet<T> {
    type Item = &'a T;
    type IntoIter = core::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u16),
        Remove(u8),
        Get(u8),
        GetMut(u8, u16),
        Entry(u8, u16),
        EntryDefault(u8),
        Retain(u8),
        PopFirst,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Keys from a small range so that inserts hit present keys and removes find them.
        let k = 0u8..24;
        prop_oneof![
            4 => (k.clone(), any::<u16>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => k.clone().prop_map(Op::Remove),
            1 => k.clone().prop_map(Op::Get),
            1 => (k.clone(), any::<u16>()).prop_map(|(k, v)| Op::GetMut(k, v)),
            2 => (k.clone(), any::<u16>()).prop_map(|(k, v)| Op::Entry(k, v)),
            1 => k.clone().prop_map(Op::EntryDefault),
            1 => (1u8..5).prop_map(Op::Retain),
            1 => Just(Op::PopFirst),
        ]
    }

    proptest! {
        /// Every operation answers as `BTreeMap`'s does, and the entries stay in the same order.
        #[test]
        fn map_agrees_with_btreemap(ops in proptest::collection::vec(op(), 0..200)) {
            let mut ours: SortedMap<String, u16> = SortedMap::new();
            let mut theirs: BTreeMap<String, u16> = BTreeMap::new();
            let key = |k: u8| format!("k{k:02}");
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(ours.insert(key(k), v), theirs.insert(key(k), v)),
                    Op::Remove(k) => prop_assert_eq!(ours.remove(key(k).as_str()), theirs.remove(key(k).as_str())),
                    Op::Get(k) => {
                        prop_assert_eq!(ours.get(key(k).as_str()), theirs.get(key(k).as_str()));
                        prop_assert_eq!(ours.contains_key(key(k).as_str()), theirs.contains_key(key(k).as_str()));
                        if theirs.contains_key(key(k).as_str()) {
                            prop_assert_eq!(ours[key(k).as_str()], theirs[key(k).as_str()]);
                        }
                    }
                    Op::GetMut(k, v) => {
                        let (a, b) = (ours.get_mut(key(k).as_str()), theirs.get_mut(key(k).as_str()));
                        prop_assert_eq!(a.is_some(), b.is_some());
                        if let (Some(a), Some(b)) = (a, b) {
                            *a = a.wrapping_add(v);
                            *b = b.wrapping_add(v);
                        }
                    }
                    Op::Entry(k, v) => {
                        let a = ours.entry(key(k)).or_insert(v);
                        *a = a.wrapping_mul(3);
                        let b = theirs.entry(key(k)).or_insert(v);
                        *b = b.wrapping_mul(3);
                    }
                    Op::EntryDefault(k) => {
                        *ours.entry(key(k)).or_default() += 1;
                        *theirs.entry(key(k)).or_default() += 1;
                    }
                    Op::Retain(m) => {
                        ours.retain(|k, v| { *v = v.wrapping_add(1); (k.len() + *v as usize) % m as usize != 0 });
                        theirs.retain(|k, v| { *v = v.wrapping_add(1); (k.len() + *v as usize) % m as usize != 0 });
                    }
                    Op::PopFirst => {
                        // The map has no pop_first; the set's is checked below. Here: the first entry.
                        prop_assert_eq!(ours.iter().next(), theirs.iter().next());
                    }
                }
                prop_assert_eq!(ours.len(), theirs.len());
                prop_assert_eq!(ours.is_empty(), theirs.is_empty());
                prop_assert!(ours.iter().eq(theirs.iter()));
                prop_assert!(ours.iter().rev().eq(theirs.iter().rev()));
                prop_assert!(ours.keys().eq(theirs.keys()));
                prop_assert!(ours.values().eq(theirs.values()));
            }
            let collected: SortedMap<String, u16> = theirs.clone().into_iter().rev().collect();
            prop_assert!(collected.iter().eq(theirs.iter()));
            prop_assert!((&ours).into_iter().eq(&theirs));
            prop_assert!(ours.clone().into_iter().eq(theirs.into_iter()));
        }

        /// The set answers as `BTreeSet`'s does.
        #[test]
        fn set_agrees_with_btreeset(ops in proptest::collection::vec(op(), 0..200)) {
            let mut ours: SortedSet<(u8, u8)> = SortedSet::new();
            let mut theirs: BTreeSet<(u8, u8)> = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) | Op::Entry(k, v) | Op::GetMut(k, v) => {
                        let item = (k, (v % 4) as u8);
                        prop_assert_eq!(ours.insert(item), theirs.insert(item));
                    }
                    Op::Remove(k) | Op::EntryDefault(k) => {
                        let item = (k, k % 4);
                        prop_assert_eq!(ours.remove(&item), theirs.remove(&item));
                    }
                    Op::Get(k) => prop_assert_eq!(ours.contains(&(k, k % 4)), theirs.contains(&(k, k % 4))),
                    Op::Retain(_) => prop_assert_eq!(ours.first(), theirs.first()),
                    Op::PopFirst => prop_assert_eq!(ours.pop_first(), theirs.pop_first()),
                }
                prop_assert_eq!(ours.len(), theirs.len());
                prop_assert!(ours.iter().eq(theirs.iter()));
            }
            let collected: SortedSet<(u8, u8)> = theirs.iter().rev().copied().collect();
            prop_assert!(collected.iter().eq(theirs.iter()));
            prop_assert!(ours.into_iter().eq(theirs.into_iter()));
        }
    }
}
