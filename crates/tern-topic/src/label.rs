//! Interned level strings: every distinct level of the subscription trie too long to sit in its
//! node is stored once, in one buffer, and nodes refer to it by a `u32`.

use hashbrown::HashTable;

use crate::hash::Hashers;

#[derive(Clone, Copy)]
struct Slot {
    start: u32,
    len: u32,
    /// Number of trie nodes with this label; 0 marks a free slot.
    refs: u32,
}

/// Level strings with reference counts.
pub(crate) struct Labels {
    text: String,
    slots: Vec<Slot>,
    free: Vec<u32>,
    table: HashTable<u32>,
    /// Bytes of `text` no live label uses any more.
    garbage: usize,
}

impl Labels {
    pub(crate) fn new() -> Self {
        Self {
            text: String::new(),
            slots: Vec::new(),
            free: Vec::new(),
            table: HashTable::new(),
            garbage: 0,
        }
    }

    fn slot_text<'a>(text: &'a str, slot: &Slot) -> &'a str {
        let start = slot.start as usize;
        &text[start..start + slot.len as usize]
    }

    /// The string of the live label `id`.
    #[inline]
    pub(crate) fn text(&self, id: u32) -> &str {
        Self::slot_text(&self.text, &self.slots[id as usize])
    }

    /// The id of `level` with one more reference, interning it when new.
    pub(crate) fn acquire(&mut self, hashers: &Hashers, level: &str) -> u32 {
        let hash = hashers.hash(level);
        let Self {
            text, slots, table, ..
        } = self;
        if let Some(&id) = table.find(hash, |&id| {
            Self::slot_text(text, &slots[id as usize]) == level
        }) {
            self.slots[id as usize].refs += 1;
            return id;
        }
        let start = u32::try_from(self.text.len()).expect("more than 4 GiB of distinct levels");
        self.text.push_str(level);
        let slot = Slot {
            start,
            len: level.len() as u32,
            refs: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = slot;
                id
            }
            None => {
                let id = u32::try_from(self.slots.len()).expect("more than 2^32 distinct levels");
                self.slots.push(slot);
                id
            }
        };
        let Self {
            text, slots, table, ..
        } = self;
        table.insert_unique(hash, id, |&id| {
            hashers.hash(Self::slot_text(text, &slots[id as usize]))
        });
        id
    }

    /// Drops one reference to `id`, forgetting the string with the last one.
    pub(crate) fn release(&mut self, hashers: &Hashers, id: u32) {
        let slot = &mut self.slots[id as usize];
        slot.refs -= 1;
        if slot.refs > 0 {
            return;
        }
        let slot = *slot;
        let hash = hashers.hash(Self::slot_text(&self.text, &slot));
        if let Ok(entry) = self.table.find_entry(hash, |&x| x == id) {
            entry.remove();
        }
        self.free.push(id);
        self.garbage += slot.len as usize;
        if self.table.is_empty() {
            self.clear();
        } else if self.garbage > 4096 && self.garbage * 2 > self.text.len() {
            self.compact();
        }
    }

    /// Copies the live strings into a fresh buffer.
    fn compact(&mut self) {
        let mut text = String::with_capacity(self.text.len() - self.garbage);
        for slot in self.slots.iter_mut().filter(|slot| slot.refs > 0) {
            let start = text.len() as u32;
            text.push_str(Self::slot_text(&self.text, slot));
            slot.start = start;
        }
        self.text = text;
        self.garbage = 0;
    }

    fn clear(&mut self) {
        *self = Self::new();
    }

    /// Number of distinct live labels.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}
