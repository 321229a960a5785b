//! A write transaction that knows the sequence number of its next change,
//! so a record can carry its own version inside its encoding.

use crate::error::Result;
use bytes::Bytes;
use idnode_core::Record;
use idnode_store::{Space, Store, StoreError, WriteTxn};

/// Wraps a [`WriteTxn`], tracking the sequence number the next staged
/// change will carry.
///
/// The store serializes transactions, so the last committed sequence read
/// right after `begin` is the transaction's base. Every put is checked
/// against the number predicted for it; a mismatch (an engine that numbers
/// changes differently) fails the operation instead of storing a record
/// whose version lies.
pub(crate) struct Txn<'a> {
    inner: Box<dyn WriteTxn + 'a>,
    next: u64,
}

impl<'a> Txn<'a> {
    pub(crate) fn begin(store: &'a dyn Store) -> Result<Self> {
        let mut inner = store.begin()?;
        if let Some(origin) = crate::audit::current() {
            inner.set_origin(origin.encode());
        }
        let next = store.last_sequence() + 1;
        Ok(Self { inner, next })
    }

    pub(crate) fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.inner.get(space, key)?)
    }

    /// Reads and decodes a record, seeing this transaction's own writes.
    pub(crate) fn record(&mut self, key: &str) -> Result<Option<Record>> {
        self.get(Space::Records, key.as_bytes())?
            .map(|bytes| decode_record(key, &bytes))
            .transpose()
    }

    /// Stages `record` under `key`, first setting its version to the
    /// sequence number of this change. Returns that version.
    pub(crate) fn put_record(&mut self, key: &str, record: &mut Record) -> Result<u64> {
        record.version = self.next;
        let bytes = Bytes::from(record.encode());
        let sequence = self.inner.put(Space::Records, key.as_bytes(), bytes);
        self.check(sequence)
    }

    pub(crate) fn put(&mut self, space: Space, key: &[u8], value: Bytes) -> Result<u64> {
        let sequence = self.inner.put(space, key, value);
        self.check(sequence)
    }

    pub(crate) fn delete(&mut self, space: Space, key: &[u8]) -> Result<u64> {
        let sequence = self.inner.delete(space, key);
        self.check(sequence)
    }

    fn check(&mut self, sequence: u64) -> Result<u64> {
        if sequence != self.next {
            return Err(StoreError::Engine(format!(
                "the store numbered a change {sequence}, expected {}; transaction abandoned",
                self.next
            ))
            .into());
        }
        self.next += 1;
        Ok(sequence)
    }

    /// Commits every staged change as one durable batch.
    pub(crate) fn commit(self) -> Result<u64> {
        Ok(self.inner.commit()?)
    }
}

/// Decodes a stored record; a failure means the store holds corrupt data.
pub(crate) fn decode_record(key: &str, bytes: &[u8]) -> Result<Record> {
    Record::decode(bytes).map_err(|e| StoreError::Corrupt(format!("record {key}: {e}")).into())
}
