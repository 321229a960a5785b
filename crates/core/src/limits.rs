//! Limits enforced at every entrance (docs/handle-protocol.md, "Values").

/// Longest identifier, in bytes of UTF-8.
pub const MAX_IDENTIFIER_BYTES: usize = 2048;
/// Most values in one record.
pub const MAX_VALUES: usize = 2048;
/// Longest value type, in bytes.
pub const MAX_TYPE_BYTES: usize = 128;
/// Largest data of one value.
pub const MAX_DATA_BYTES: usize = 64 * 1024;
/// Largest whole record, encoded.
pub const MAX_RECORD_BYTES: usize = 256 * 1024;
/// Most references of one value.
pub const MAX_REFERENCES: usize = 256;
