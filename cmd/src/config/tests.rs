use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;

use allidb_index::lexical::analyzer::{Stemming, StopWords};
use allidb_storage::types::Durability;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn set(key: &str, value: &str) -> (String, String, String) {
    ("--set".to_owned(), key.to_owned(), value.to_owned())
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn load_file(text: &str) -> Result<Config, ConfigError> {
    let f = file(text);
    Config::load(&ConfigSources {
        file: Some(f.path().to_owned()),
        ..Default::default()
    })
}

fn assert_key_error(result: Result<Config, ConfigError>, key: &str, fragment: &str) {
    let message = result.expect_err("must be refused").to_string();
    assert!(message.contains(key), "{message:?} does not name {key}");
    assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
}

#[test]
fn cluster_keys_are_checked_only_when_enabled() {
    // An enabled cluster with `more` variables set.
    let enabled_with = |more: (&str, &str)| {
        Config::load(&ConfigSources {
            env: env(&[
                ("ALLIDB_CLUSTER_ENABLED", "true"),
                ("ALLIDB_CLUSTER_SECRET", "0123456789abcdef"),
                more,
            ]),
            ..Default::default()
        })
        .unwrap()
    };
    let config = enabled_with(("ALLIDB_CLUSTER_SEEDS", "10.0.0.1:7946, 10.0.0.2:7946"));
    assert!(config.cluster.enabled);
    assert_eq!(config.cluster.seeds, vec!["10.0.0.1:7946", "10.0.0.2:7946"]);
    assert_eq!(
        config.cluster.num_tokens, 0,
        "unset: as many as the ring's nodes hold"
    );
    let sixteen = enabled_with(("ALLIDB_CLUSTER_NUM_TOKENS", "16"));
    assert_eq!(sixteen.cluster.num_tokens, 16);
    assert_eq!(config.cluster.advertise_addr(), config.cluster.listen_addr);

    let enabled = "[cluster]\nenabled = true\nsecret = \"0123456789abcdef\"\n";
    assert_key_error(
        load_file("[cluster]\nenabled = true\n"),
        "cluster.secret",
        "at least 16",
    );
    assert_key_error(
        load_file(&format!("{enabled}replication_factor = 0\n")),
        "cluster.replication_factor",
        "out of range",
    );
    assert_key_error(
        load_file(&format!(
            "{enabled}hinted_handoff_window_secs = 86400\n[storage]\ngc_grace_secs = 86400\n"
        )),
        "storage.gc_grace_secs",
        "not longer than cluster.hinted_handoff_window_secs (86400 s)",
    );
    assert!(
        load_file(&format!(
            "{enabled}hinted_handoff_window_secs = 86400\n[storage]\ngc_grace_secs = 86401\n"
        ))
        .is_ok()
    );
    assert_key_error(
        load_file(&format!(
            "{enabled}repair_interval_secs = 864000\n[storage]\ngc_grace_secs = 864000\n"
        )),
        "cluster.repair_interval_secs",
        "not shorter than storage.gc_grace_secs (864000 s)",
    );
    assert_key_error(
        load_file(&format!("{enabled}stream_chunk_bytes = 1024\n")),
        "cluster.stream_chunk_bytes",
        "out of range",
    );
    for concurrency in [0, 17] {
        assert_key_error(
            load_file(&format!("{enabled}stream_concurrency = {concurrency}\n")),
            "cluster.stream_concurrency",
            "out of range",
        );
    }
    assert_key_error(
        load_file(&format!("{enabled}num_tokens = 257\n")),
        "cluster.num_tokens",
        "out of range",
    );
    assert_key_error(
        load_file(&format!(
            "{enabled}listen_addr = \"0.0.0.0:7946\"\nadvertise_addr = \"10.0.0.5:7946\"\n"
        )),
        "cluster.listen_addr",
        "loopback or private",
    );
    assert_key_error(
        load_file(&format!("{enabled}advertise_addr = \"8.8.8.8:7946\"\n")),
        "cluster.advertise_addr",
        "loopback or private",
    );
    assert_key_error(
        load_file(&format!("{enabled}rpc_advertise_addr = \"8.8.8.8:7000\"\n")),
        "cluster.rpc_advertise_addr",
        "loopback or private",
    );
    // Wildcard listeners (a container's): peers need a real address of this node.
    assert_key_error(
        load_file(&format!("{enabled}listen_addr = \"0.0.0.0:7946\"\n")),
        "cluster.listen_addr",
        "set cluster.advertise_addr",
    );
    let wildcard_grpc = format!(
        "{enabled}[server]\ngrpc_addr = \"0.0.0.0:7000\"\nallow_insecure_non_loopback = true\n"
    );
    assert_key_error(
        load_file(&wildcard_grpc),
        "server.grpc_addr",
        "set cluster.rpc_advertise_addr",
    );
    let advertised = load_file(&format!(
        "{enabled}rpc_advertise_addr = \"10.0.0.7:7000\"\n[server]\ngrpc_addr = \"0.0.0.0:7000\"\nallow_insecure_non_loopback = true\n"
    ))
    .unwrap();
    assert_eq!(
        advertised
            .cluster
            .rpc_advertise_addr(SocketAddr::from(([0, 0, 0, 0], 7000))),
        SocketAddr::from(([10, 0, 0, 7], 7000))
    );
    assert_key_error(
        load_file(&format!("{enabled}rpc_advertise_addr = \"10.0.0.7:0\"\n")),
        "cluster.rpc_advertise_addr",
        "not an address peers can call",
    );
    assert_key_error(
        load_file(&format!("{enabled}name = \"a b\"\n")),
        "cluster.name",
        "letters",
    );
    // Disabled: the same values are not checked (a single node never uses them).
    load_file("[cluster]\nreplication_factor = 0\n").unwrap();
}

#[test]
fn no_sources_give_the_defaults_which_are_valid() {
    let config = Config::load(&ConfigSources::default()).unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.server.grpc_addr.to_string(), "127.0.0.1:7000");
    assert_eq!(config.storage.durability(), Durability::Sync);
    assert!(!config.auth.enabled);
    assert_eq!(
        config.auth.options().keys_env.as_deref(),
        Some("ALLIDB_API_KEYS")
    );
}

#[test]
fn the_example_file_holds_exactly_the_defaults() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/allidb.toml");
    let config = Config::load(&ConfigSources {
        file: Some(path),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn the_docs_name_every_key_and_its_variable() {
    let docs = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .unwrap();
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    let optional = [
        ("tls", "cert_file"),
        ("tls", "key_file"),
        ("tls", "client_ca_file"),
        ("auth", "key_file"),
        ("cluster", "advertise_addr"),
        ("cluster", "rpc_advertise_addr"),
    ];
    let mut keys: Vec<(String, String)> = optional
        .iter()
        .map(|(s, k)| ((*s).to_owned(), (*k).to_owned()))
        .collect();
    for (section, table) in &defaults {
        assert!(SECTIONS.contains(&section.as_str()), "{section}");
        for key in table.as_table().unwrap().keys() {
            keys.push((section.clone(), key.clone()));
        }
    }
    for (section, key) in keys {
        let variable = format!("ALLIDB_{}_{}", section, key).to_ascii_uppercase();
        assert!(
            docs.contains(&format!("`{key}`")),
            "docs miss {section}.{key}"
        );
        assert!(docs.contains(&variable), "docs miss {variable}");
    }
}

#[test]
fn omitted_keys_keep_defaults() {
    let config = load_file("[index]\nm = 32\n").unwrap();
    assert_eq!(config.index.m, 32);
    assert_eq!(config.index.ef_construction, 200);
    assert_eq!(config.server, ServerConfig::default());
}

#[test]
fn layers_override_in_order_file_env_set_flags() {
    let f = file(
        "[server]\ngrpc_addr = \"127.0.0.1:1\"\n[index]\nef_search = 10\n[log]\nlevel = \"warn\"\n",
    );
    let config = Config::load(&ConfigSources {
        file: Some(f.path().to_owned()),
        env: env(&[
            ("ALLIDB_INDEX_EF_SEARCH", "20"),
            ("ALLIDB_LOG_LEVEL", "debug"),
            ("ALLIDB_AUTH_ENABLED", "TRUE"),
            ("ALLIDB_AUTH_KEY_FILE", "/etc/keys"),
            ("ALLIDB_STORAGE_DURABILITY", "periodic"),
            ("ALLIDB_API_KEYS", "not a config key"),
            ("ALLIDB_CONFIG", "/ignored"),
            ("HOME", "/root"),
        ]),
        flags: vec![
            set("index.ef_search", "30"),
            set("log.level", "error"),
            ("--log-level".into(), "log.level".into(), "trace".into()),
        ],
    })
    .unwrap();
    assert_eq!(config.server.grpc_addr.port(), 1); // file
    assert_eq!(config.index.ef_search, 30); // --set over env over file
    assert_eq!(config.log.level, "trace"); // named flag over --set
    assert!(config.auth.enabled);
    assert_eq!(config.auth.key_file, Some(PathBuf::from("/etc/keys")));
    assert_eq!(config.storage.durability(), Durability::Periodic(100));
}

#[test]
fn config_args_build_flag_overrides() {
    let args = ConfigArgs {
        set: vec!["query.max_hops=2".into()],
        data_dir: Some("/var/lib/allidb".into()),
        ..Default::default()
    };
    let sources = args.sources().unwrap();
    assert_eq!(
        sources.flags,
        vec![
            set("query.max_hops", "2"),
            (
                "--data-dir".into(),
                "storage.data_dir".into(),
                "/var/lib/allidb".into()
            )
        ]
    );
    let bad = ConfigArgs {
        set: vec!["query.max_hops".into()],
        ..Default::default()
    };
    assert!(
        bad.sources()
            .unwrap_err()
            .to_string()
            .contains("section.key=value")
    );
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    assert_key_error(
        load_file("[server]\ngrcp_addr = \"x\"\n"),
        "grcp_addr",
        "unknown field",
    );
    assert_key_error(load_file("[serverz]\n"), "serverz", "unknown field");
    let from_env = Config::load(&ConfigSources {
        env: env(&[("ALLIDB_INDEX_EFSEARCH", "3")]),
        ..Default::default()
    });
    assert_key_error(from_env, "index.efsearch", "ALLIDB_INDEX_EFSEARCH");
    let from_flag = Config::load(&ConfigSources {
        flags: vec![set("nosuch.key", "1")],
        ..Default::default()
    });
    assert_key_error(from_flag, "nosuch.key", "unknown section");
}

#[test]
fn wrongly_typed_values_are_refused_with_their_name() {
    assert_key_error(load_file("[index]\nm = \"many\"\n"), "m", "");
    let bad_int = Config::load(&ConfigSources {
        env: env(&[("ALLIDB_INDEX_M", "many")]),
        ..Default::default()
    });
    assert_key_error(bad_int, "index.m", "an integer");
    let bad_bool = Config::load(&ConfigSources {
        flags: vec![set("auth.enabled", "yes")],
        ..Default::default()
    });
    assert_key_error(bad_bool, "auth.enabled", "true or false");
    let bad_addr = Config::load(&ConfigSources {
        flags: vec![set("server.grpc_addr", "nowhere")],
        ..Default::default()
    });
    assert_key_error(bad_addr, "server.grpc_addr", "--set");
    let bad_enum = Config::load(&ConfigSources {
        flags: vec![set("index.metric", "manhattan")],
        ..Default::default()
    });
    assert_key_error(bad_enum, "index.metric", "manhattan");
}

#[test]
fn out_of_range_values_are_refused_with_their_name() {
    let cases = [
        ("index.m", "300", "(from --set index.m)"),
        ("index.m", "1", "out of range"),
        ("index.ef_construction", "8", "out of range"),
        ("index.ef_search", "0", "out of range"),
        ("storage.memtable_bytes", "10", "out of range"),
        ("storage.gc_grace_secs", "0", "out of range"),
        ("storage.tenant_ttl_secs", "sessions", "not tenant=seconds"),
        ("storage.tenant_ttl_secs", "sessions=0", "seconds must be"),
        ("storage.tenant_ttl_secs", "sessions=-3", "seconds must be"),
        (
            "storage.tenant_ttl_secs",
            "sessions=630720001",
            "seconds must be",
        ),
        ("storage.tenant_ttl_secs", "a=5,a=6", "listed twice"),
        ("storage.tenant_ttl_secs", "=5", "tenant id"),
        ("storage.min_free_bytes", "2000000000000", "out of range"),
        ("storage.periodic_sync_ms", "0", "out of range"),
        ("storage.memtable_idle_flush_secs", "86401", "out of range"),
        ("index.dump_interval_secs", "0", "out of range"),
        ("index.dump_wal_bytes", "1024", "out of range"),
        ("backup.retry_timeout_secs", "0", "at least 1"),
        ("index.lexical_k1", "-0.5", "k1 must be in [0, 100]"),
        ("index.lexical_b", "1.5", "b must be in [0, 1]"),
        ("index.lexical_stemming", "porter", "porter"),
        ("index.lexical_stop_words", "french", "french"),
        ("index.lexical_tenants", "docs", "not tenant=setting:value"),
        ("index.lexical_tenants", "docs=k1=2", "not setting:value"),
        (
            "index.lexical_tenants",
            "docs=k1:x",
            "k1 \"x\" is not a number",
        ),
        ("index.lexical_tenants", "docs=b:-1", "b must be in [0, 1]"),
        ("index.lexical_tenants", "docs=k1:1 k1:2", "k1 is set twice"),
        (
            "index.lexical_tenants",
            "docs=stemming:porter",
            "not none or english",
        ),
        (
            "index.lexical_tenants",
            "docs=stop_words:all",
            "not none or english",
        ),
        ("index.lexical_tenants", "docs=boost:2", "unknown setting"),
        (
            "index.lexical_tenants",
            "docs=enabled:no",
            "enabled \"no\" is not true or false",
        ),
        ("index.lexical_tenants", "docs=", "sets nothing"),
        (
            "index.lexical_tenants",
            "docs=b:0.5,docs=k1:1",
            "listed twice",
        ),
        ("index.lexical_tenants", "=b:0.5", "tenant id"),
        ("server.max_request_bytes", "1", "out of range"),
        ("server.max_inflight_request_bytes", "1000", "out of range"),
        (
            "server.max_inflight_request_bytes_per_tenant",
            "2097152000000000",
            "out of range",
        ),
        ("server.admission_wait_ms", "60001", "out of range"),
        ("query.max_hops", "9", "out of range"),
        ("query.max_candidates", "0", "out of range"),
        ("auth.default_tenant", "", "tenant id"),
        ("auth.keys_env", "ALLIDB_AUTH_KEYS", "override"),
        ("log.level", "loud", "not a level"),
        ("log.level", "allidb=verbose", "not a level"),
        ("storage.data_dir", "", "must not be empty"),
        (
            "server.http_addr",
            "127.0.0.1:7000",
            "also server.grpc_addr",
        ),
    ];
    for (key, value, fragment) in cases {
        let result = Config::load(&ConfigSources {
            flags: vec![set(key, value)],
            ..Default::default()
        });
        assert_key_error(result, key, fragment);
    }
    let fine = Config::load(&ConfigSources {
        flags: vec![
            set("log.level", "info,allidb_storage=debug"),
            set("index.m", "64"),
        ],
        ..Default::default()
    });
    assert!(fine.is_ok(), "{fine:?}");
    let ttls = Config::load(&ConfigSources {
        flags: vec![set(
            "storage.tenant_ttl_secs",
            "sessions=3600, news = 86400",
        )],
        ..Default::default()
    })
    .expect("a valid tenant TTL list");
    assert_eq!(
        ttls.storage.tenant_ttls().unwrap(),
        BTreeMap::from([("news".to_owned(), 86400), ("sessions".to_owned(), 3600)])
    );
    let lexical = Config::load(&ConfigSources {
        flags: vec![
            set("index.lexical_b", "0.5"),
            set("index.lexical_stemming", "english"),
            set(
                "index.lexical_tenants",
                "docs=k1:2 stop_words:english, raw = stemming:none enabled:false",
            ),
        ],
        ..Default::default()
    })
    .expect("valid lexical settings")
    .index
    .lexical()
    .expect("valid lexical settings");
    let (default, docs, raw) = (&lexical.default, lexical.of("docs"), lexical.of("raw"));
    assert_eq!((default.bm25.k1, default.bm25.b), (1.2, 0.5));
    assert_eq!(default.analyzer.stemming, Stemming::English);
    assert_eq!(default.analyzer.stop_words, StopWords::None);
    assert_eq!((docs.bm25.k1, docs.bm25.b), (2.0, 0.5));
    assert_eq!(docs.analyzer.stemming, Stemming::English);
    assert_eq!(docs.analyzer.stop_words, StopWords::English);
    assert_eq!(raw.analyzer.stemming, Stemming::None);
    assert!(default.enabled && docs.enabled && !raw.enabled);
    assert_eq!(lexical.of("other"), default);
    let off = Config::load(&ConfigSources {
        flags: vec![
            set("index.lexical_enabled", "false"),
            set("index.lexical_tenants", "docs=enabled:true"),
        ],
        ..Default::default()
    })
    .expect("valid lexical settings")
    .index
    .lexical()
    .expect("valid lexical settings");
    assert!(!off.default.enabled && off.of("docs").enabled);
    let share_over_budget = Config::load(&ConfigSources {
        flags: vec![
            set("server.max_inflight_request_bytes", "67108864"),
            set("server.max_inflight_request_bytes_per_tenant", "134217728"),
        ],
        ..Default::default()
    });
    assert_key_error(
        share_over_budget,
        "server.max_inflight_request_bytes_per_tenant",
        "more than server.max_inflight_request_bytes",
    );
}

#[test]
fn non_loopback_needs_auth_and_tls_or_an_explicit_opt_in() {
    let with = |flags: &[(&str, &str)]| {
        Config::load(&ConfigSources {
            flags: flags.iter().map(|(k, v)| set(k, v)).collect(),
            ..Default::default()
        })
    };
    assert_key_error(
        with(&[("server.grpc_addr", "0.0.0.0:7000")]),
        "server.grpc_addr",
        "beyond loopback",
    );
    assert_key_error(
        with(&[
            ("server.http_addr", "10.0.0.1:7001"),
            ("auth.enabled", "true"),
        ]),
        "server.http_addr",
        "beyond loopback",
    );
    assert!(
        with(&[
            ("server.grpc_addr", "0.0.0.0:7000"),
            ("server.allow_insecure_non_loopback", "true")
        ])
        .is_ok()
    );
    assert!(
        with(&[
            ("server.grpc_addr", "0.0.0.0:7000"),
            ("auth.enabled", "true"),
            ("tls.enabled", "true"),
            ("tls.cert_file", "/c.pem"),
            ("tls.key_file", "/k.pem"),
        ])
        .is_ok()
    );
    // The admin port may listen anywhere (metrics scrapers).
    assert!(with(&[("server.admin_addr", "0.0.0.0:7002")]).is_ok());
    assert_key_error(
        with(&[("tls.enabled", "true")]),
        "tls.cert_file",
        "required",
    );
    assert_key_error(
        with(&[("tls.client_ca_file", "/ca.pem")]),
        "tls.client_ca_file",
        "tls.enabled",
    );
}

#[test]
fn unreadable_and_malformed_files_name_the_file() {
    let missing = Config::load(&ConfigSources {
        file: Some(PathBuf::from("/nonexistent/allidb.toml")),
        ..Default::default()
    });
    assert!(matches!(missing, Err(ConfigError::Read { .. })));
    assert_key_error(load_file("[server\n"), "config file", "");
}
