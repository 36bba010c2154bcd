//! Redis Cluster's key → slot function and the slot → primary table read from
//! `CLUSTER SLOTS`. Pure data: no I/O.

use redis::Value;
use std::collections::HashMap;

/// Number of hash slots of a Redis Cluster.
pub(crate) const SLOTS: usize = 16384;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the checksum Redis Cluster
/// hashes keys with.
pub(crate) fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key`: CRC16 of its hash tag (the text between the first `{` and the first
/// `}` after it, if not empty), else of the whole key, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS as u16
}

/// One entry of `CLUSTER SLOTS`: an inclusive slot range and its nodes (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotRange {
    pub start: u16,
    pub end: u16,
    pub primary: String,
    pub replicas: Vec<String>,
}

/// Parses a `CLUSTER SLOTS` reply. A node announced without an IP (empty or `?`) is
/// reachable at `default_host`, the host that answered.
pub(crate) fn parse_cluster_slots(
    reply: &Value,
    default_host: &str,
) -> Result<Vec<SlotRange>, String> {
    let bad = || format!("unexpected CLUSTER SLOTS reply {reply:?}");
    let Value::Array(entries) = reply else {
        return Err(bad());
    };
    let mut ranges = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(fields) = entry else {
            return Err(bad());
        };
        let [start, end, nodes @ ..] = &fields[..] else {
            return Err(bad());
        };
        let slot = |v: &Value| {
            redis::from_redis_value_ref::<u16>(v)
                .ok()
                .filter(|&s| usize::from(s) < SLOTS)
        };
        let (Some(start), Some(end)) = (slot(start), slot(end)) else {
            return Err(bad());
        };
        let mut addrs = nodes.iter().map(|n| node_addr(n, default_host));
        let primary = addrs.next().flatten().ok_or_else(bad)?;
        let replicas = addrs.collect::<Option<Vec<_>>>().ok_or_else(bad)?;
        if start > end {
            return Err(bad());
        }
        ranges.push(SlotRange {
            start,
            end,
            primary,
            replicas,
        });
    }
    Ok(ranges)
}

/// `[ip, port, id, …]` → `ip:port`.
fn node_addr(node: &Value, default_host: &str) -> Option<String> {
    let Value::Array(fields) = node else {
        return None;
    };
    let host: String = redis::from_redis_value_ref(fields.first()?).ok()?;
    let port: u16 = redis::from_redis_value_ref(fields.get(1)?).ok()?;
    let host = if host.is_empty() || host == "?" {
        default_host
    } else {
        &host
    };
    Some(format!("{host}:{port}"))
}

/// Which node serves each slot: `T` is whatever stands for a node (its connection).
pub(crate) struct SlotTable<T> {
    /// Per slot, an index into `nodes`; `NONE`: not served.
    owner: Vec<u16>,
    /// Distinct nodes with their `host:port`.
    nodes: Vec<(String, T)>,
}

const NONE: u16 = u16::MAX;

impl<T: Clone> SlotTable<T> {
    /// The table of `ranges` (their primaries), `node` giving the `T` of an address.
    pub(crate) fn new(ranges: &[SlotRange], mut node: impl FnMut(&str) -> T) -> Self {
        let mut table = SlotTable {
            owner: vec![NONE; SLOTS],
            nodes: Vec::new(),
        };
        let mut index: HashMap<&str, u16> = HashMap::new();
        for r in ranges {
            let i = *index.entry(r.primary.as_str()).or_insert_with(|| {
                table.nodes.push((r.primary.clone(), node(&r.primary)));
                (table.nodes.len() - 1) as u16
            });
            table.owner[usize::from(r.start)..=usize::from(r.end)].fill(i);
        }
        table
    }

    /// The node serving `slot`, if any.
    pub(crate) fn get(&self, slot: u16) -> Option<&T> {
        let i = *self.owner.get(usize::from(slot))?;
        self.nodes.get(usize::from(i)).map(|(_, n)| n)
    }

    /// A copy in which `slot` is served by `addr` (as a `MOVED` answer says).
    pub(crate) fn with_slot(&self, slot: u16, addr: &str, node: impl FnOnce() -> T) -> Self {
        let mut nodes = self.nodes.clone();
        let i = match nodes.iter().position(|(a, _)| a == addr) {
            Some(i) => i,
            None => {
                nodes.push((addr.to_string(), node()));
                nodes.len() - 1
            }
        };
        let mut owner = self.owner.clone();
        if let Some(o) = owner.get_mut(usize::from(slot)) {
            *o = i as u16;
        }
        SlotTable { owner, nodes }
    }

    /// How many slots have a node.
    #[cfg(test)]
    pub(crate) fn served(&self) -> usize {
        self.owner.iter().filter(|&&o| o != NONE).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_and_slots_match_redis() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        // Hash tags: only the first {...} counts, and only if not empty.
        assert_eq!(key_slot(b"{foo}:w"), 12182);
        assert_eq!(key_slot(b"x{foo}y{bar}"), 12182);
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
        assert_eq!(key_slot(b"foo{{bar}}zap"), crc16(b"{bar") % 16384);
        assert_eq!(key_slot(b"{unclosed"), crc16(b"{unclosed") % 16384);
        assert_eq!(key_slot(b""), 0);
    }

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"0123abcd".to_vec()),
        ])
    }

    #[test]
    fn parses_cluster_slots_and_routes() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(10922), node("", 7001)]),
            Value::Array(vec![
                Value::Int(10923),
                Value::Int(16383),
                node("10.0.0.1", 7000),
            ]),
        ]);
        let ranges = parse_cluster_slots(&reply, "seed.example").unwrap();
        assert_eq!(ranges[0].primary, "10.0.0.1:7000");
        assert_eq!(ranges[0].replicas, vec!["10.0.0.4:7003".to_string()]);
        assert_eq!(ranges[1].primary, "seed.example:7001");
        let mut made = Vec::new();
        let table = SlotTable::new(&ranges, |a| {
            made.push(a.to_string());
            a.to_string()
        });
        // One T per distinct primary.
        assert_eq!(made, vec!["10.0.0.1:7000", "seed.example:7001"]);
        assert_eq!(table.served(), 16384);
        assert_eq!(table.get(0).unwrap(), "10.0.0.1:7000");
        assert_eq!(table.get(5461).unwrap(), "seed.example:7001");
        assert_eq!(table.get(16383).unwrap(), "10.0.0.1:7000");
        let moved = table.with_slot(42, "10.0.0.9:7009", || "new".to_string());
        assert_eq!(moved.get(42).unwrap(), "new");
        assert_eq!(moved.get(41).unwrap(), "10.0.0.1:7000");
        assert_eq!(table.get(42).unwrap(), "10.0.0.1:7000");
        let back = moved.with_slot(42, "seed.example:7001", || unreachable!());
        assert_eq!(back.get(42).unwrap(), "seed.example:7001");
    }

    #[test]
    fn partial_tables_and_bad_replies() {
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Int(100),
            Value::Int(199),
            node("h", 1),
        ])]);
        let table = SlotTable::new(&parse_cluster_slots(&reply, "x").unwrap(), |a| {
            a.to_string()
        });
        assert_eq!(table.served(), 100);
        assert!(table.get(99).is_none());
        assert!(table.get(200).is_none());
        assert!(parse_cluster_slots(&Value::Nil, "x").is_err());
        let inverted = Value::Array(vec![Value::Array(vec![
            Value::Int(9),
            Value::Int(1),
            node("h", 1),
        ])]);
        assert!(parse_cluster_slots(&inverted, "x").is_err());
        let no_node = Value::Array(vec![Value::Array(vec![Value::Int(1), Value::Int(9)])]);
        assert!(parse_cluster_slots(&no_node, "x").is_err());
    }
}
