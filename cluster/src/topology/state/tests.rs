//! Tests of the topology state's commands.

use super::*;

fn host(n: u128) -> HostId {
    HostId::from_u128(n)
}

fn node(tokens: Vec<Token>) -> TopologyNode {
    TopologyNode {
        name: "n".to_owned(),
        rpc_addr: "127.0.0.1:1".to_owned(),
        tokens,
        state: NodeState::Normal,
    }
}

fn formed() -> TopologyState {
    let mut state = TopologyState::default();
    let nodes = BTreeMap::from([(host(1), node(vec![10, 20]))]);
    state
        .apply(&Command::Form {
            cluster_name: "c".to_owned(),
            nodes,
        })
        .expect("a first form is accepted");
    state
}

fn join(h: u128, tokens: Vec<Token>) -> Command {
    Command::Join(JoinRequest {
        cluster_name: "c".to_owned(),
        protocol_version: crate::PROTOCOL_VERSION,
        host: host(h),
        name: "new".to_owned(),
        rpc_addr: "127.0.0.1:2".to_owned(),
        tokens,
        adopt: false,
        replaces: None,
    })
}

#[test]
fn a_bootstrap_moves_through_its_steps_and_the_rings_follow() {
    let mut state = formed();
    assert_eq!(state.version, 1);
    assert_eq!(state.apply(&join(2, vec![15])), Ok(2));
    let movement = state.movement.clone().expect("the join starts a bootstrap");
    assert_eq!(movement.step, MovementStep::Stream);
    assert_eq!(
        state.read_ring().host_count(),
        1,
        "reads stay on the old ring"
    );
    let other = state.other_write_ring().expect("a movement runs");
    assert_eq!(other.host_count(), 2, "writes reach the joining host too");
    let finish = Command::Finish {
        movement: movement.id,
    };
    assert!(state.apply(&finish).is_err(), "no finish before read_new");
    let advance = Command::Advance {
        movement: movement.id,
        step: MovementStep::ReadNew,
    };
    assert_eq!(state.apply(&advance), Ok(3));
    assert_eq!(state.read_ring().host_count(), 2);
    assert_eq!(
        state.other_write_ring().map(|r| r.host_count()),
        Some(1),
        "the old replicas still take writes"
    );
    assert!(state.apply(&advance).is_err(), "a step is taken once");
    assert_eq!(state.apply(&finish), Ok(4));
    assert_eq!(state.nodes[&host(2)].state, NodeState::Normal);
    assert!(state.movement.is_none() && state.other_write_ring().is_none());
}

#[test]
fn joins_are_validated_and_serialized() {
    let mut state = formed();
    assert!(
        state
            .apply(&join(2, vec![10]))
            .unwrap_err()
            .contains("already")
    );
    assert!(
        state
            .apply(&join(2, vec![]))
            .unwrap_err()
            .contains("without tokens")
    );
    let Command::Join(mut other_cluster) = join(2, vec![15]) else {
        unreachable!("join builds a Join")
    };
    other_cluster.cluster_name = "d".to_owned();
    assert!(
        state
            .apply(&Command::Join(other_cluster))
            .unwrap_err()
            .contains("cluster name")
    );
    state.apply(&join(2, vec![15])).expect("a valid join");
    assert_eq!(
        state.apply(&join(2, vec![15])),
        Ok(2),
        "the same host asking again changes nothing"
    );
    assert!(
        state
            .apply(&join(3, vec![16]))
            .unwrap_err()
            .contains("busy"),
        "a second join waits for the first"
    );
    assert_eq!(state.version, 2, "refused commands change nothing");
}

#[test]
fn an_aborted_bootstrap_forgets_the_host_and_left_is_permanent() {
    let mut state = formed();
    state.apply(&join(2, vec![15])).expect("a valid join");
    let id = state.movement.as_ref().map(|m| m.id).expect("a bootstrap");
    state
        .apply(&Command::Abort {
            movement: id,
            reason: "test".to_owned(),
        })
        .expect("the running movement aborts");
    assert!(!state.nodes.contains_key(&host(2)) && state.movement.is_none());
    state.apply(&join(2, vec![15])).expect("it may ask again");
    assert_ne!(state.movement.as_ref().map(|m| m.id), Some(id), "a new id");

    state
        .nodes
        .get_mut(&host(1))
        .expect("formed with host 1")
        .state = NodeState::Left;
    assert!(!state.admits(host(1)));
    let again = state.apply(&join(1, vec![30])).unwrap_err();
    assert!(again.contains("never accepted again"), "{again}");
}

#[test]
fn an_adopted_host_is_normal_at_once_and_form_is_taken_once() {
    let mut state = formed();
    let Command::Join(mut adopted) = join(2, vec![15]) else {
        unreachable!("join builds a Join")
    };
    adopted.adopt = true;
    state.apply(&Command::Join(adopted)).expect("adopted");
    assert_eq!(state.nodes[&host(2)].state, NodeState::Normal);
    assert!(state.movement.is_none());
    let again = Command::Form {
        cluster_name: "c".to_owned(),
        nodes: BTreeMap::new(),
    };
    assert!(state.apply(&again).unwrap_err().contains("already formed"));
}

#[test]
fn a_leaving_host_reads_until_read_new_and_then_is_left_without_tokens() {
    let mut state = formed();
    let Command::Join(mut adopted) = join(2, vec![15]) else {
        unreachable!("join builds a Join")
    };
    adopted.adopt = true;
    state.apply(&Command::Join(adopted)).expect("adopted");
    let leave = |host| Command::Leave {
        host,
        kind: MovementKind::Decommission,
        replication_factor: 1,
    };
    let too_few = Command::Leave {
        host: host(2),
        kind: MovementKind::RemoveNode,
        replication_factor: 2,
    };
    assert!(state.apply(&too_few).unwrap_err().contains("fewer than"));
    state.apply(&leave(host(2))).expect("a decommission starts");
    let second = state.apply(&leave(host(1))).unwrap_err();
    assert!(second.contains("busy"), "one movement at a time: {second}");
    let id = state.movement.as_ref().map(|m| m.id).expect("a movement");
    assert_eq!(state.read_ring().host_count(), 2, "it still serves reads");
    assert_eq!(state.other_write_ring().map(|r| r.host_count()), Some(1));
    state
        .apply(&Command::Advance {
            movement: id,
            step: MovementStep::ReadNew,
        })
        .expect("read_new");
    assert_eq!(state.read_ring().host_count(), 1, "reads leave it");
    assert_eq!(
        state.other_write_ring().map(|r| r.host_count()),
        Some(2),
        "it still takes writes"
    );
    state
        .apply(&Command::Finish { movement: id })
        .expect("finish");
    assert_eq!(state.nodes[&host(2)].state, NodeState::Left);
    assert!(state.nodes[&host(2)].tokens.is_empty());
    assert!(!state.admits(host(2)));
    assert_eq!(state.read_ring().host_count(), 1);
}

fn replace(h: u128, replaced: u128) -> Command {
    let Command::Join(mut request) = join(h, Vec::new()) else {
        unreachable!("join builds a Join")
    };
    request.replaces = Some(host(replaced));
    Command::Join(request)
}

#[test]
fn a_replacement_takes_the_dead_hosts_tokens_and_an_abort_gives_them_back() {
    let mut state = formed();
    assert!(
        state
            .apply(&replace(2, 9))
            .unwrap_err()
            .contains("not in the ring")
    );
    let Command::Join(mut with_tokens) = replace(2, 1) else {
        unreachable!("replace builds a Join")
    };
    with_tokens.tokens = vec![15];
    assert!(
        state
            .apply(&Command::Join(with_tokens))
            .unwrap_err()
            .contains("tokens of its own")
    );
    state.apply(&replace(2, 1)).expect("a replace starts");
    let movement = state.movement.clone().expect("a replace runs");
    assert_eq!(
        (movement.kind, movement.host, movement.departed()),
        (MovementKind::Replace, host(2), Some(host(1)))
    );
    assert_eq!(state.nodes[&host(2)].tokens, vec![10, 20]);
    assert_eq!(state.nodes[&host(1)].state, NodeState::Leaving);
    let hosts = |ring: Ring| ring.hosts().iter().copied().collect::<Vec<_>>();
    assert_eq!(hosts(state.read_ring()), vec![host(1)], "reads stay on it");
    assert_eq!(
        state.other_write_ring().map(hosts),
        Some(vec![host(2)]),
        "writes reach the replacement"
    );
    assert!(state.apply(&replace(3, 1)).unwrap_err().contains("busy"));
    state
        .apply(&Command::Abort {
            movement: movement.id,
            reason: "test".to_owned(),
        })
        .expect("the replace aborts");
    assert!(!state.nodes.contains_key(&host(2)));
    assert_eq!(state.nodes[&host(1)].state, NodeState::Normal);

    state.apply(&replace(3, 1)).expect("another replace starts");
    let id = state.movement.as_ref().map(|m| m.id).expect("a replace");
    for command in [
        Command::Advance {
            movement: id,
            step: MovementStep::ReadNew,
        },
        Command::Finish { movement: id },
    ] {
        state.apply(&command).expect("the replace goes on");
    }
    assert_eq!(state.nodes[&host(3)].state, NodeState::Normal);
    assert_eq!(state.nodes[&host(1)].state, NodeState::Left);
    assert!(state.nodes[&host(1)].tokens.is_empty());
    assert_eq!(hosts(state.read_ring()), vec![host(3)]);
    let again = state.apply(&replace(4, 1)).unwrap_err();
    assert!(again.contains("left"), "{again}");
}

#[test]
fn an_aborted_leave_keeps_the_host_normal() {
    let mut state = formed();
    let Command::Join(mut adopted) = join(2, vec![15]) else {
        unreachable!("join builds a Join")
    };
    adopted.adopt = true;
    state.apply(&Command::Join(adopted)).expect("adopted");
    state
        .apply(&Command::Leave {
            host: host(1),
            kind: MovementKind::RemoveNode,
            replication_factor: 1,
        })
        .expect("a removal starts");
    let id = state.movement.as_ref().map(|m| m.id).expect("a movement");
    state
        .apply(&Command::Abort {
            movement: id,
            reason: "test".to_owned(),
        })
        .expect("abort");
    assert_eq!(state.nodes[&host(1)].state, NodeState::Normal);
    assert_eq!(state.read_ring().host_count(), 2);
}

#[test]
fn a_cleanup_waits_for_no_movement_and_holds_movements_off_until_it_ends() {
    let mut state = formed();
    state.apply(&join(2, vec![15])).expect("a bootstrap starts");
    let refused = state
        .apply(&Command::StartCleanup { host: host(1) })
        .unwrap_err();
    assert!(refused.contains("while a movement runs"), "{refused}");
    let joining = state
        .apply(&Command::StartCleanup { host: host(2) })
        .unwrap_err();
    assert!(joining.contains("only a normal host"), "{joining}");
    let id = state.movement.as_ref().map(|m| m.id).expect("a bootstrap");
    for command in [
        Command::Advance {
            movement: id,
            step: MovementStep::ReadNew,
        },
        Command::Finish { movement: id },
    ] {
        state.apply(&command).expect("the bootstrap goes on");
    }
    let version = state.version;
    assert_eq!(
        state.apply(&Command::StartCleanup { host: host(1) }),
        Ok(version),
        "a cleanup changes no route"
    );
    let cleanup = state.cleanups[&host(1)];
    assert_ne!(cleanup, id, "ids are not reused");
    let busy = state.apply(&join(3, vec![16])).unwrap_err();
    assert!(busy.contains("a cleanup runs"), "{busy}");
    let leave = Command::Leave {
        host: host(2),
        kind: MovementKind::Decommission,
        replication_factor: 1,
    };
    assert!(state.apply(&leave).unwrap_err().contains("a cleanup runs"));
    state
        .apply(&Command::StartCleanup { host: host(1) })
        .expect("a second start replaces the first");
    let stale = Command::EndCleanup {
        host: host(1),
        cleanup,
    };
    assert!(state.apply(&stale).unwrap_err().contains("not running"));
    let current = state.cleanups[&host(1)];
    state
        .apply(&Command::EndCleanup {
            host: host(1),
            cleanup: current,
        })
        .expect("the running cleanup ends");
    assert!(state.cleanups.is_empty());
    assert_eq!(state.version, version, "nothing a node routes by changed");
    state.apply(&leave).expect("movements start again");
}

#[test]
fn a_source_serves_a_movements_chunks_only_while_it_streams() {
    let mut state = formed();
    assert!(matches!(state.stream_open(0), Err(StreamClosed::NotYet(_))));
    state.apply(&join(2, vec![15])).expect("a bootstrap starts");
    let id = state.movement.as_ref().map(|m| m.id).expect("a bootstrap");
    assert_eq!(state.stream_open(id), Ok(()));
    assert!(matches!(
        state.stream_open(id + 1),
        Err(StreamClosed::NotYet(_))
    ));
    state
        .apply(&Command::Abort {
            movement: id,
            reason: "test".to_owned(),
        })
        .expect("rolled back");
    let Err(StreamClosed::Closed(why)) = state.stream_open(id) else {
        panic!("a rolled back movement's chunks are refused");
    };
    assert!(why.starts_with("movement:"), "{why}");
    state.apply(&join(2, vec![15])).expect("a second attempt");
    let again = state.movement.as_ref().map(|m| m.id).expect("a bootstrap");
    assert!(
        matches!(state.stream_open(id), Err(StreamClosed::Closed(_))),
        "the first attempt's chunks stay refused"
    );
    state
        .apply(&Command::Advance {
            movement: again,
            step: MovementStep::ReadNew,
        })
        .expect("streamed");
    assert!(matches!(
        state.stream_open(again),
        Err(StreamClosed::Closed(_))
    ));
}

#[test]
fn requests_of_a_host_that_left_are_refused_naming_the_sender() {
    let mut state = formed();
    assert_eq!(state.check_sender(&host(1).to_string()), Ok(()));
    assert_eq!(state.check_sender(""), Ok(()), "left to the header checks");
    assert_eq!(state.check_sender(&host(9).to_string()), Ok(()), "unknown");
    state
        .nodes
        .get_mut(&host(1))
        .expect("formed with host 1")
        .state = NodeState::Left;
    let refused = state.check_sender(&host(1).to_string()).unwrap_err();
    assert!(refused.starts_with("header.sender:"), "{refused}");
}
