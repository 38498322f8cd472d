//! Model-based property test: random sequences of put / delete / edge add-remove / flush /
//! compact / reopen against an in-memory model of the cell semantics; after every step, every
//! read (get of each id, scan of each tenant) agrees with the model.

use std::collections::BTreeMap;
use std::time::Duration;

use allidb_storage::cell::{Embedding, EntityBody};
use allidb_storage::{Durability, Edge, EdgeRef, EdgeWrite, Engine, EntityWrite, Options};
use proptest::prelude::*;

const TENANTS: [&str; 2] = ["acme", "acme2"];
const IDS: [&str; 6] = ["a", "ab", "b", "c", "d\u{e9}", "e"];
const RELATIONS: [&str; 2] = ["knows", ""];

#[derive(Clone, Debug)]
enum Op {
    Put {
        tenant: usize,
        id: usize,
        tag: u8,
        outs: Vec<(usize, usize, u8)>,
        ins: Vec<(usize, usize, u8)>,
    },
    Delete {
        tenant: usize,
        id: usize,
    },
    AddEdge {
        tenant: usize,
        from: usize,
        rel: usize,
        to: usize,
        weight: u8,
    },
    RemoveEdge {
        tenant: usize,
        from: usize,
        rel: usize,
        to: usize,
    },
    Flush,
    Compact,
    Reopen,
}

fn arb_edges() -> impl Strategy<Value = Vec<(usize, usize, u8)>> {
    proptest::collection::vec((0..RELATIONS.len(), 0..IDS.len(), any::<u8>()), 0..3)
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2usize, 0..IDS.len(), any::<u8>(), arb_edges(), arb_edges())
            .prop_map(|(tenant, id, tag, outs, ins)| Op::Put { tenant, id, tag, outs, ins }),
        2 => (0..2usize, 0..IDS.len()).prop_map(|(tenant, id)| Op::Delete { tenant, id }),
        3 => (0..2usize, 0..IDS.len(), 0..RELATIONS.len(), 0..IDS.len(), any::<u8>())
            .prop_map(|(tenant, from, rel, to, weight)| Op::AddEdge { tenant, from, rel, to, weight }),
        2 => (0..2usize, 0..IDS.len(), 0..RELATIONS.len(), 0..IDS.len())
            .prop_map(|(tenant, from, rel, to)| Op::RemoveEdge { tenant, from, rel, to }),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

/// The model: per (tenant, id), the live body and the live edge cells on each side.
#[derive(Clone, Debug, Default)]
struct ModelPartition {
    body: Option<EntityBody>,
    /// (relation, to) -> weight
    out: BTreeMap<(String, String), f64>,
    /// (relation, from) -> weight
    inn: BTreeMap<(String, String), f64>,
}

type Model = BTreeMap<(String, String), ModelPartition>;

fn body(tag: u8, created: i64) -> EntityBody {
    EntityBody {
        entity_type: format!("type{}", tag % 3),
        embeddings: vec![Embedding {
            version: 1,
            vector: vec![f32::from(tag), 1.5, -2.0],
            timestamp_nanos: 7,
        }],
        chunks: Vec::new(),
        importance: f64::from(tag) / 10.0,
        attributes: [("k".to_owned(), tag.to_string())].into(),
        created_at_nanos: created,
        updated_at_nanos: created,
        typed_attributes: BTreeMap::new(),
        sources: Vec::new(),
        expires_at_nanos: 0,
    }
}

fn part<'a>(model: &'a mut Model, tenant: &str, id: &str) -> &'a mut ModelPartition {
    model.entry((tenant.to_owned(), id.to_owned())).or_default()
}

fn apply(model: &mut Model, op: &Op, step: i64) {
    match op {
        Op::Put {
            tenant,
            id,
            tag,
            outs,
            ins,
        } => {
            let (t, id) = (TENANTS[*tenant], IDS[*id]);
            let outs: BTreeMap<(String, String), f64> = outs
                .iter()
                .filter(|(_, to, _)| IDS[*to] != id)
                .map(|(r, to, w)| {
                    (
                        (RELATIONS[*r].to_owned(), IDS[*to].to_owned()),
                        f64::from(*w),
                    )
                })
                .collect();
            let ins: BTreeMap<(String, String), f64> = ins
                .iter()
                .filter(|(_, from, _)| IDS[*from] != id)
                .map(|(r, from, w)| {
                    (
                        (RELATIONS[*r].to_owned(), IDS[*from].to_owned()),
                        f64::from(*w),
                    )
                })
                .collect();
            let old = part(model, t, id).clone();
            for (rel, to) in old.out.keys() {
                if !outs.contains_key(&(rel.clone(), to.clone())) {
                    part(model, t, to).inn.remove(&(rel.clone(), id.to_owned()));
                }
            }
            for ((rel, to), w) in &outs {
                part(model, t, to)
                    .inn
                    .insert((rel.clone(), id.to_owned()), *w);
            }
            let p = part(model, t, id);
            let created = old.body.as_ref().map_or(step, |b| b.created_at_nanos);
            let mut b = body(*tag, step);
            b.created_at_nanos = created;
            p.body = Some(b);
            p.out = outs;
            p.inn.extend(ins);
        }
        Op::Delete { tenant, id } => {
            let (t, id) = (TENANTS[*tenant], IDS[*id]);
            let old = part(model, t, id).clone();
            if old.body.is_none() {
                return;
            }
            for (rel, to) in old.out.keys() {
                part(model, t, to).inn.remove(&(rel.clone(), id.to_owned()));
            }
            for (rel, from) in old.inn.keys() {
                part(model, t, from)
                    .out
                    .remove(&(rel.clone(), id.to_owned()));
            }
            *part(model, t, id) = ModelPartition::default();
        }
        Op::AddEdge {
            tenant,
            from,
            rel,
            to,
            weight,
        } => {
            let (t, from, rel, to) = (TENANTS[*tenant], IDS[*from], RELATIONS[*rel], IDS[*to]);
            part(model, t, from)
                .out
                .insert((rel.to_owned(), to.to_owned()), f64::from(*weight));
            part(model, t, to)
                .inn
                .insert((rel.to_owned(), from.to_owned()), f64::from(*weight));
        }
        Op::RemoveEdge {
            tenant,
            from,
            rel,
            to,
        } => {
            let (t, from, rel, to) = (TENANTS[*tenant], IDS[*from], RELATIONS[*rel], IDS[*to]);
            part(model, t, from)
                .out
                .remove(&(rel.to_owned(), to.to_owned()));
            part(model, t, to)
                .inn
                .remove(&(rel.to_owned(), from.to_owned()));
        }
        Op::Flush | Op::Compact | Op::Reopen => {}
    }
}

fn run(engine: &Engine, op: &Op, step: i64) {
    let d = Durability::Buffered;
    match op {
        Op::Put {
            tenant,
            id,
            tag,
            outs,
            ins,
        } => {
            let id = IDS[*id];
            let edges = |list: &Vec<(usize, usize, u8)>| -> Vec<EdgeWrite> {
                list.iter()
                    .filter(|(_, other, _)| IDS[*other] != id)
                    .map(|(r, other, w)| EdgeWrite {
                        relation: RELATIONS[*r].to_owned(),
                        other: IDS[*other].to_owned(),
                        weight: f64::from(*w),
                        timestamp_nanos: 1,
                        sources: Vec::new(),
                    })
                    .collect()
            };
            let write = EntityWrite {
                id: id.to_owned(),
                body: body(*tag, step),
                out_edges: edges(outs),
                in_edges: edges(ins),
            };
            engine
                .put_entities(TENANTS[*tenant], vec![write], d)
                .unwrap();
        }
        Op::Delete { tenant, id } => {
            engine.delete_entity(TENANTS[*tenant], IDS[*id], d).unwrap();
        }
        Op::AddEdge {
            tenant,
            from,
            rel,
            to,
            weight,
        } => {
            let edge = Edge {
                from: IDS[*from].to_owned(),
                to: IDS[*to].to_owned(),
                relation: RELATIONS[*rel].to_owned(),
                weight: f64::from(*weight),
                timestamp_nanos: 1,
                sources: Vec::new(),
            };
            engine.add_edges(TENANTS[*tenant], &[edge], d).unwrap();
        }
        Op::RemoveEdge {
            tenant,
            from,
            rel,
            to,
        } => {
            let edge = EdgeRef {
                from: IDS[*from].to_owned(),
                relation: RELATIONS[*rel].to_owned(),
                to: IDS[*to].to_owned(),
            };
            engine.remove_edges(TENANTS[*tenant], &[edge], d).unwrap();
        }
        Op::Flush => engine.flush().unwrap(),
        Op::Compact => engine.compact().unwrap(),
        Op::Reopen => unreachable!("handled by the driver"),
    }
}

fn check(engine: &Engine, model: &Model) -> Result<(), TestCaseError> {
    for tenant in TENANTS {
        let mut expected_scan = Vec::new();
        for id in IDS {
            let got = engine.get_entity(tenant, id).unwrap();
            let want = model
                .get(&(tenant.to_owned(), id.to_owned()))
                .cloned()
                .unwrap_or_default();
            match (&got, &want.body) {
                (None, None) => {}
                (Some(e), Some(b)) => {
                    prop_assert_eq!(&e.body, b, "body of {}/{}", tenant, id);
                    let out: BTreeMap<(String, String), f64> = e
                        .out_edges
                        .iter()
                        .map(|x| ((x.relation.clone(), x.to.clone()), x.weight))
                        .collect();
                    let inn: BTreeMap<(String, String), f64> = e
                        .in_edges
                        .iter()
                        .map(|x| ((x.relation.clone(), x.from.clone()), x.weight))
                        .collect();
                    prop_assert_eq!(out.len(), e.out_edges.len(), "duplicate out-edges");
                    prop_assert_eq!(&out, &want.out, "out-edges of {}/{}", tenant, id);
                    prop_assert_eq!(&inn, &want.inn, "in-edges of {}/{}", tenant, id);
                    expected_scan.push(id.to_owned());
                }
                _ => prop_assert!(
                    false,
                    "{}/{}: engine {:?} model {:?}",
                    tenant,
                    id,
                    got.is_some(),
                    want.body.is_some()
                ),
            }
        }
        let scanned: Vec<String> = engine
            .scan(tenant, None, None)
            .unwrap()
            .map(|e| e.unwrap().id)
            .collect();
        prop_assert_eq!(scanned, expected_scan.clone());
        let bounded: Vec<String> = engine
            .scan(tenant, Some("ab"), Some("d"))
            .unwrap()
            .map(|e| e.unwrap().id)
            .collect();
        let want: Vec<String> = expected_scan
            .into_iter()
            .filter(|id| id.as_str() >= "ab" && id.as_str() < "d")
            .collect();
        prop_assert_eq!(bounded, want);
    }
    Ok(())
}

fn small_options(gc_grace: Duration) -> Options {
    Options {
        memtable_bytes: 64 << 10,
        target_file_bytes: 64 << 10,
        level1_bytes: 128 << 10,
        l0_compaction_trigger: 2,
        gc_grace,
        ..Options::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_model(ops in proptest::collection::vec(arb_op(), 1..60), gc_now in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let options = small_options(if gc_now { Duration::ZERO } else { Duration::from_secs(3600) });
        let mut engine = Engine::open(dir.path(), options.clone()).unwrap();
        let mut model = Model::new();
        for (step, op) in ops.iter().enumerate() {
            if let Op::Reopen = op {
                drop(engine);
                engine = Engine::open(dir.path(), options.clone()).unwrap();
            } else {
                run(&engine, op, step as i64);
                apply(&mut model, op, step as i64);
            }
            check(&engine, &model)?;
        }
    }
}
