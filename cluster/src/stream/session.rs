//! A receiving stream session as persisted in `cluster/stream-session` under the data dir
//! (format: docs/cluster.md "Stream session file", version 2; version 1 files are read), so a
//! stream interrupted by a crash of either side goes on from where it stood instead of from the
//! start.
//!
//! Invariants: a group's position only moves forward, and only after the cells up to it are
//! durable on this node; the file is replaced atomically and a damaged file is an error, never
//! an empty session. Must never: mark a group done before its last chunk is applied.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use crate::ClusterError;
use crate::identity::{CLUSTER_DIR, seal, unseal, write_atomically};
use crate::ring::{HostId, TokenSpan};

const SESSION_FILE: &str = "stream-session";
const HEADER: &str = "allidb-stream-session 2";
/// The header of version 1 files (no `movement` line: a rebuild's, or a movement's of an older
/// build, which is then not resumed).
const HEADER_V1: &str = "allidb-stream-session 1";

/// Why a session streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamPurpose {
    /// Every range this node replicates, from the other replicas (`allidb cluster rebuild`).
    Rebuild,
    /// The ranges a joining node takes, from the replicas it displaces.
    Bootstrap,
    /// The ranges a node takes from a decommissioned one.
    Decommission,
    /// The ranges a node takes from a removed (dead) one, from the surviving replicas.
    RemoveNode,
    /// The ranges a replacement takes from the dead host it replaces, from the surviving
    /// replicas.
    Replace,
}

impl StreamPurpose {
    /// Its name in the file, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamPurpose::Rebuild => "rebuild",
            StreamPurpose::Bootstrap => "bootstrap",
            StreamPurpose::Decommission => "decommission",
            StreamPurpose::RemoveNode => "removenode",
            StreamPurpose::Replace => "replace",
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "rebuild" => Ok(StreamPurpose::Rebuild),
            "bootstrap" => Ok(StreamPurpose::Bootstrap),
            "decommission" => Ok(StreamPurpose::Decommission),
            "removenode" => Ok(StreamPurpose::RemoveNode),
            "replace" => Ok(StreamPurpose::Replace),
            other => Err(format!("unknown stream purpose {other:?}")),
        }
    }
}

/// Where a stream stands: the last partition looked at, in key order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamPosition {
    /// Owning tenant.
    pub tenant: String,
    /// Entity id.
    pub entity_id: String,
}

/// The ranges one source streams: they share their replicas, so any of them can serve the
/// whole group from the group's position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamGroup {
    /// The token ranges (disjoint).
    pub spans: Vec<TokenSpan>,
    /// The replicas that may serve them, in the order they are tried.
    pub sources: Vec<HostId>,
    /// The last partition received (`None`: none yet).
    pub after: Option<StreamPosition>,
    /// Every partition of the group was received.
    pub done: bool,
}

/// One receiving session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSession {
    /// Random, 32 hex digits in the file and on the wire.
    pub id: u128,
    /// Why it streams.
    pub purpose: StreamPurpose,
    /// The topology movement it serves (`None`: a rebuild): sent with every chunk request, so
    /// a source refuses the chunks of a movement its log closed.
    pub movement: Option<u64>,
    /// Only this tenant's partitions (`None`: every tenant's).
    pub tenant: Option<String>,
    /// What streams, group by group.
    pub groups: Vec<StreamGroup>,
    /// Partitions, cells and cell bytes received so far, over every attempt.
    pub partitions: u64,
    /// Cells received.
    pub cells: u64,
    /// Bytes of the cells received.
    pub bytes: u64,
}

impl StreamSession {
    /// The session's id as on the wire.
    pub fn id_hex(&self) -> String {
        format!("{:032x}", self.id)
    }

    /// Whether every group is done.
    pub fn finished(&self) -> bool {
        self.groups.iter().all(|g| g.done)
    }

    /// The session stored under `data_dir`, if any.
    pub fn load(data_dir: &Path) -> Result<Option<StreamSession>, ClusterError> {
        let path = data_dir.join(CLUSTER_DIR).join(SESSION_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ClusterError::Io { path, source }),
        };
        decode(&text)
            .map(Some)
            .map_err(|reason| ClusterError::CorruptStreamSession { path, reason })
    }

    /// Replaces the stored session with this one (atomically, durably).
    pub fn store(&self, data_dir: &Path) -> Result<(), ClusterError> {
        write_atomically(data_dir, SESSION_FILE, &encode(self))
    }

    /// Removes the stored session (a finished or abandoned one).
    pub fn remove(data_dir: &Path) -> Result<(), ClusterError> {
        let path = data_dir.join(CLUSTER_DIR).join(SESSION_FILE);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ClusterError::Io { path, source }),
        }
    }
}

fn encode(session: &StreamSession) -> String {
    let mut body = format!(
        "{HEADER}\nsession {}\npurpose {}\nmovement {}\ntenant {}\nreceived {} {} {}\n",
        session.id_hex(),
        session.purpose.as_str(),
        session
            .movement
            .map_or("-".to_owned(), |movement| movement.to_string()),
        session
            .tenant
            .as_deref()
            .map_or("-".to_owned(), hex::encode),
        session.partitions,
        session.cells,
        session.bytes,
    );
    for group in &session.groups {
        let spans: Vec<String> = group
            .spans
            .iter()
            .map(|s| format!("{}:{}", s.start, s.end))
            .collect();
        let sources: Vec<String> = group.sources.iter().map(HostId::to_string).collect();
        let after = group.after.as_ref().map_or("-".to_owned(), |p| {
            format!("{}:{}", hex::encode(&p.tenant), hex::encode(&p.entity_id))
        });
        let _ = writeln!(
            body,
            "group {} {} {} {after}",
            u8::from(group.done),
            spans.join(","),
            sources.join(","),
        );
    }
    seal(body)
}

fn decode(text: &str) -> Result<StreamSession, String> {
    let body = unseal(text)?;
    let mut lines = body.lines();
    let version = match lines.next() {
        Some(HEADER) => 2,
        Some(HEADER_V1) => 1,
        _ => return Err(format!("unknown header (expected {HEADER:?})")),
    };
    let mut field = |name: &str| -> Result<String, String> {
        let line = lines.next().unwrap_or_default();
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(str::to_owned)
            .ok_or_else(|| format!("expected field {name:?}, found {line:?}"))
    };
    let id = u128::from_str_radix(&field("session")?, 16).map_err(|e| format!("session: {e}"))?;
    let purpose = StreamPurpose::parse(&field("purpose")?)?;
    let movement = match version {
        1 => None,
        _ => match field("movement")?.as_str() {
            "-" => None,
            text => Some(text.parse().map_err(|e| format!("movement: {e}"))?),
        },
    };
    let tenant = match field("tenant")?.as_str() {
        "-" => None,
        text => Some(unhex(text)?),
    };
    let received = field("received")?;
    let counts: Vec<u64> = received
        .split(' ')
        .map(|n| {
            n.parse()
                .map_err(|_| format!("bad received line {received:?}"))
        })
        .collect::<Result<_, _>>()?;
    let [partitions, cells, bytes] = counts[..] else {
        return Err(format!("bad received line {received:?}"));
    };
    let groups = lines
        .map(|line| decode_group(line).ok_or_else(|| format!("bad group line {line:?}")))
        .collect::<Result<_, _>>()?;
    Ok(StreamSession {
        id,
        purpose,
        movement,
        tenant,
        groups,
        partitions,
        cells,
        bytes,
    })
}

fn decode_group(line: &str) -> Option<StreamGroup> {
    let mut fields = line.strip_prefix("group ")?.split(' ');
    let done = match fields.next()? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let spans = fields
        .next()?
        .split(',')
        .map(|s| {
            let (start, end) = s.split_once(':')?;
            Some(TokenSpan {
                start: start.parse().ok()?,
                end: end.parse().ok()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let sources = fields
        .next()?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect::<Option<Vec<_>>>()?;
    let after = match fields.next()? {
        "-" => None,
        text => {
            let (tenant, id) = text.split_once(':')?;
            Some(StreamPosition {
                tenant: unhex(tenant).ok()?,
                entity_id: unhex(id).ok()?,
            })
        }
    };
    if fields.next().is_some() {
        return None;
    }
    Some(StreamGroup {
        spans,
        sources,
        after,
        done,
    })
}

fn unhex(text: &str) -> Result<String, String> {
    hex::decode(text)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| format!("{text:?} is not hex-encoded UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> StreamSession {
        StreamSession {
            id: 0xfeed_u128 << 64 | 7,
            purpose: StreamPurpose::Bootstrap,
            movement: Some(7),
            tenant: Some("acme corp".to_owned()),
            groups: vec![
                StreamGroup {
                    spans: vec![
                        TokenSpan { start: 5, end: 9 },
                        TokenSpan {
                            start: u64::MAX,
                            end: 2,
                        },
                    ],
                    sources: vec![HostId::from_u128(1), HostId::from_u128(2)],
                    after: Some(StreamPosition {
                        tenant: "acme corp".to_owned(),
                        entity_id: "doc:1 2".to_owned(),
                    }),
                    done: false,
                },
                StreamGroup {
                    spans: vec![TokenSpan { start: 9, end: 9 }],
                    sources: vec![HostId::from_u128(3)],
                    after: None,
                    done: true,
                },
            ],
            partitions: 3,
            cells: 10,
            bytes: 4096,
        }
    }

    #[test]
    fn a_session_round_trips_and_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(StreamSession::load(dir.path()).unwrap(), None);
        let stored = session();
        stored.store(dir.path()).unwrap();
        assert_eq!(StreamSession::load(dir.path()).unwrap(), Some(stored));
        StreamSession::remove(dir.path()).unwrap();
        assert_eq!(StreamSession::load(dir.path()).unwrap(), None);
        StreamSession::remove(dir.path()).unwrap();
    }

    #[test]
    fn a_version_1_file_is_read_without_a_movement() {
        let dir = tempfile::tempdir().unwrap();
        let mut stored = session();
        stored.movement = None;
        stored.store(dir.path()).unwrap();
        let path = dir.path().join(CLUSTER_DIR).join(SESSION_FILE);
        let text = fs::read_to_string(&path).unwrap();
        let body = unseal(&text).unwrap();
        let v1 = body.replace(HEADER, HEADER_V1).replace("movement -\n", "");
        fs::write(&path, seal(v1)).unwrap();
        assert_eq!(StreamSession::load(dir.path()).unwrap(), Some(stored));
    }

    #[test]
    fn a_damaged_session_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        session().store(dir.path()).unwrap();
        let path = dir.path().join(CLUSTER_DIR).join(SESSION_FILE);
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, text.replace("group 0", "group 1")).unwrap();
        let err = StreamSession::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
    }
}
