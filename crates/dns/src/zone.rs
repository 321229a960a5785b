//! What zone transfers need: the records of a whole apex zone (AXFR,
//! RFC 5936) and the records one stored record produces (IXFR, RFC 1995,
//! differences between two versions of it).
//!
//! An apex zone holds, in this order: the SOA, the NS records, the glue
//! address records of name servers below the apex, then for every stored
//! record in key order the records [`DnsService::record_set`] gives. The
//! transfer module sends the SOA again at the end (RFC 5936 section 2.2).
//! A delegated prefix's record (`0.NA/<prefix>`) gives the NS records and
//! glue of its zone cut, so a secondary refers as this node does; records
//! stored under a delegated prefix (there should be none) are not left
//! out, though a secondary would not serve them below the cut.
//!
//! The zone is read from one snapshot of the store ([`Store::snapshot`]),
//! a page of stored records at a time: it is the zone of one moment, its
//! SOA serial the snapshot's sequence, whatever is written while it is
//! read.
//!
//! Not captured: names that exist here without records (homed prefixes with no identifier, records with
//! no publicly readable value, partial GTIN names) hold nothing to
//! transfer, so a secondary answers NXDOMAIN where this node answers
//! NODATA. Records whose TTL counts down to an absolute time are
//! transferred with the TTL left at `now`.
//!
//! [`Store::snapshot`]: idnode_store::Store::snapshot

use crate::DnsError;
use crate::error::corrupt;
use crate::name::{identifier_name, prefix_name};
use crate::records::{self, public_record};
use crate::service::{DnsService, ors_naptr_records};
use crate::special;
use hickory_proto::rr::Record;
use idnode_core::Identifier;
use idnode_store::{Snapshot, Space};
use std::collections::VecDeque;

/// Stored records read per store scan during a zone iteration.
const PAGE: usize = 256;

impl DnsService {
    /// The SOA record of the apex at `apex` (in [`Zones::apexes`] order),
    /// with the current serial.
    ///
    /// [`Zones::apexes`]: crate::Zones::apexes
    pub fn soa_record(&self, apex: usize) -> Option<Record> {
        let zone = self.zones().zones.get(apex)?;
        Some(self.soa(zone, self.zones().timers.ttl))
    }

    /// The apex's own records: SOA, NS, glue.
    pub fn apex_records(&self, apex: usize) -> Vec<Record> {
        self.apex_records_at(apex, self.soa_serial())
    }

    /// The apex's own records, the SOA with `serial`.
    fn apex_records_at(&self, apex: usize, serial: u32) -> Vec<Record> {
        let zones = self.zones();
        let Some(zone) = zones.zones.get(apex) else {
            return Vec::new();
        };
        let mut out = vec![records::soa_record(
            zone,
            &zones.timers,
            serial,
            zones.timers.ttl,
        )];
        out.extend(records::ns_records(zone, zones));
        out.extend(records::glue_records(zone, zones, None));
        out
    }

    /// Every record a stored record (`Space::Records` value) produces under
    /// the apex at `apex`: TXT, URI and NAPTR at the identifier's name
    /// (none when that name would pass 255 octets), and NAPTR at its GTIN
    /// or OID name when it is under the GS1 or OID prefix, and for a
    /// delegated prefix's record (`0.NA/<prefix>` with `HS_SITE.PREFIX`
    /// values) the NS records and glue of its zone cut at the prefix's
    /// name. Values without public read produce nothing.
    pub fn record_set(
        &self,
        apex: usize,
        stored: &[u8],
        now: u32,
    ) -> Result<Vec<Record>, DnsError> {
        let zones = self.zones();
        let Some(zone) = zones.zones.get(apex) else {
            return Ok(Vec::new());
        };
        let record = public_record(stored).map_err(corrupt)?;
        let id = Identifier::parse(record.identifier).map_err(corrupt)?;
        let mut out = Vec::new();
        if let Ok(owner) = identifier_name(&id, &zone.apex) {
            out.extend(records::txt_records(&owner, &record.values, now));
            out.extend(records::uri_records(&owner, &record.values, now));
            out.extend(records::identifier_naptr_records(
                &owner,
                &record.values,
                now,
            ));
        }
        if let Some(delegated) = id.as_prefix_record()
            && let Ok(cut) = prefix_name(&delegated, &zone.apex)
        {
            let delegation = records::delegation_records(&cut, &record.values, now);
            out.extend(delegation.ns);
            out.extend(delegation.glue);
        }
        let prefix = id.prefix_parsed();
        if zones.gs1.as_ref().is_some_and(|g| g.key() == prefix.key())
            && let Ok(owner) = special::gtin_name(id.suffix(), &zone.apex)
        {
            out.extend(records::identifier_naptr_records(
                &owner,
                &record.values,
                now,
            ));
        }
        if zones.oid.as_ref().is_some_and(|o| o.key() == prefix.key())
            && let Ok(owner) = special::oid_name(id.suffix(), &zone.apex)
        {
            out.extend(ors_naptr_records(&owner, &record, now));
        }
        Ok(out)
    }

    /// Every record of the apex zone at `apex`, for AXFR (see the module
    /// docs): from a snapshot of the store taken now, read lazily, a page
    /// of stored records at a time. The first record is the SOA, with the
    /// snapshot's serial. When no snapshot can be taken, the only item is
    /// the error.
    pub fn zone(&self, apex: usize, now: u32) -> ZoneRecords<'_> {
        let mut records = ZoneRecords {
            service: self,
            apex,
            now,
            snapshot: None,
            pending: VecDeque::new(),
            after: None,
            done: true,
            error: None,
        };
        if apex >= self.zones().zones.len() {
            return records;
        }
        match self.store().snapshot() {
            Ok(snapshot) => {
                // The serial is the sequence truncated, as `soa_serial` has it.
                records.pending = self
                    .apex_records_at(apex, snapshot.sequence() as u32)
                    .into();
                records.snapshot = Some(snapshot);
                records.done = false;
            }
            Err(e) => records.error = Some(e.into()),
        }
        records
    }
}

/// The records of an apex zone; see [`DnsService::zone`]. At most a page
/// of stored records' records is held at once. After an error it ends.
pub struct ZoneRecords<'a> {
    service: &'a DnsService,
    apex: usize,
    now: u32,
    snapshot: Option<Box<dyn Snapshot + 'a>>,
    pending: VecDeque<Record>,
    after: Option<Vec<u8>>,
    done: bool,
    /// Yielded before anything else (the snapshot could not be taken).
    error: Option<DnsError>,
}

impl ZoneRecords<'_> {
    /// Reads the next page of stored records into `pending`.
    fn refill(&mut self) -> Result<(), DnsError> {
        let Some(snapshot) = &self.snapshot else {
            self.done = true;
            return Ok(());
        };
        let page = snapshot.scan(Space::Records, b"", self.after.as_deref(), PAGE)?;
        if page.len() < PAGE {
            // Released as soon as the last page is read.
            self.done = true;
            self.snapshot = None;
        }
        if let Some((key, _)) = page.last() {
            self.after = Some(key.clone());
        }
        for (_, stored) in &page {
            let set = self.service.record_set(self.apex, stored, self.now)?;
            self.pending.extend(set);
        }
        Ok(())
    }
}

impl Iterator for ZoneRecords<'_> {
    type Item = Result<Record, DnsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        loop {
            if let Some(record) = self.pending.pop_front() {
                return Some(Ok(record));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.refill() {
                self.done = true;
                self.pending.clear();
                return Some(Err(e));
            }
        }
    }
}
