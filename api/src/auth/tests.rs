//! The key sets and the authenticator: parsing, redaction, reload, generated keys, counting.

use super::*;

fn line(key: &str, rest: &str) -> String {
    format!("{} {rest}\n", hash_key(key))
}

fn enabled_with_file(path: &Path) -> Authenticator {
    Authenticator::new(AuthOptions {
        enabled: true,
        default_tenant: "default".into(),
        key_file: Some(path.to_owned()),
        keys_env: None,
    })
    .unwrap()
}

#[test]
fn hash_is_sha256_hex() {
    assert_eq!(
        hash_key("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn parses_lines_comments_roles_and_expiry() {
    let text = format!(
        "# keys\n\n{}  {}{}",
        line("k1", "acme read"),
        line("k2", "acme WRITE 100"),
        line("k3", "ops admin")
    );
    let set = KeySet::parse(&text, "keys.txt").unwrap();
    assert_eq!(set.len(), 3);
    let k2 = set.authenticate_at("k2", 99).unwrap();
    assert_eq!(
        k2,
        Principal {
            tenant: "acme".into(),
            role: Role::Write,
            key_id: "keys.txt:4".into(),
        }
    );
    let expired = set.authenticate_at("k2", 100).unwrap_err();
    assert!(matches!(&expired, AuthError::Unauthenticated(m) if m.contains("expired")));
    assert!(matches!(
        set.authenticate_at("nope", 0),
        Err(AuthError::Unauthenticated(_))
    ));
}

#[test]
fn bad_lines_name_source_and_line_without_echoing_them() {
    let cases = [
        ("zz acme read", "64 hex digits"),
        (&line("k", "acme reader"), "role"),
        (&line("k", "acme read soon"), "expiry"),
        (&line("k", "acme"), "expected"),
        (&line("k", "acme read 1 extra"), "expected"),
    ];
    for (text, why) in cases {
        let text = format!("# header\n{text}");
        let err = KeySet::parse(&text, "keys.txt").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("line 2 in keys.txt"), "{message}");
        assert!(message.contains(why), "{message}");
        assert!(!message.contains(&hash_key("k")), "{message}");
    }
    let duplicate = format!("{}{}", line("k", "a read"), line("k", "b read"));
    assert!(
        KeySet::parse(&duplicate, "f")
            .unwrap_err()
            .to_string()
            .contains("already listed")
    );
}

#[test]
fn refused_keys_are_counted_and_accepted_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(&path, line("good", "acme read 100")).unwrap();
    let auth = enabled_with_file(&path);
    assert!(auth.authenticate_at(Some("good"), 99).is_ok());
    assert_eq!(auth.failed_authentications(), 0);
    for key in [None, Some(""), Some("unknown")] {
        assert!(auth.authenticate_at(key, 99).is_err());
    }
    assert!(auth.authenticate_at(Some("good"), 100).is_err());
    assert_eq!(auth.failed_authentications(), 4);
}

#[test]
fn debug_output_redacts_keys() {
    let set = KeySet::parse(&line("secret", "acme admin"), "f").unwrap();
    let shown = format!("{set:?}");
    assert!(!shown.contains(&hash_key("secret")), "{shown}");
    assert!(!shown.contains("acme"), "{shown}");
}

#[test]
fn disabled_auth_runs_as_default_tenant_admin() {
    let auth = Authenticator::new(AuthOptions {
        enabled: false,
        default_tenant: "main".into(),
        key_file: None,
        keys_env: None,
    })
    .unwrap();
    for key in [None, Some(""), Some("whatever")] {
        assert_eq!(
            auth.authenticate(key).unwrap(),
            Principal {
                tenant: "main".into(),
                role: Role::Admin,
                key_id: "auth-disabled".into(),
            }
        );
    }
}

#[test]
fn enabled_auth_refuses_missing_empty_and_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(&path, line("good", "acme read")).unwrap();
    let auth = enabled_with_file(&path);
    for key in [None, Some(""), Some("bad")] {
        let err = auth.authenticate(key).unwrap_err();
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::Unauthenticated
        );
    }
    let caller = auth.authenticate(Some("good")).unwrap();
    assert_eq!(caller.tenant, "acme");
    assert!(caller.require(Role::Read).is_ok());
    let denied = caller.require(Role::Write).unwrap_err();
    assert_eq!(
        tonic::Status::from(denied).code(),
        tonic::Code::PermissionDenied
    );
}

#[test]
fn reload_swaps_keys_and_keeps_old_set_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(&path, line("old", "acme write")).unwrap();
    let auth = enabled_with_file(&path);
    assert!(auth.authenticate(Some("old")).is_ok());

    std::fs::write(&path, line("new", "acme write")).unwrap();
    assert_eq!(auth.reload().unwrap(), 1);
    assert!(auth.authenticate(Some("old")).is_err());
    assert!(auth.authenticate(Some("new")).is_ok());

    std::fs::write(&path, "garbage line here\n").unwrap();
    assert!(auth.reload().is_err());
    assert!(auth.authenticate(Some("new")).is_ok());

    std::fs::remove_file(&path).unwrap();
    assert!(matches!(auth.reload(), Err(AuthError::KeyFile { .. })));
    assert_eq!(auth.key_count(), 1);
}

#[test]
fn env_lines_may_be_separated_by_semicolons() {
    let value = format!("{};{}", line("a", "t1 read").trim(), line("b", "t2 admin"));
    let mut set = KeySet::parse_env(&value, "KEYS").unwrap();
    assert_eq!(set.authenticate_at("b", 0).unwrap().role, Role::Admin);
    assert_eq!(set.authenticate_at("a", 0).unwrap().tenant, "t1");
    let err = KeySet::parse_env("x y z", "KEYS").unwrap_err().to_string();
    assert!(err.contains("in $KEYS"), "{err}");

    let clash = KeySet::parse_env(&line("a", "t9 read"), "KEYS").unwrap();
    assert!(set.merge(clash, "$KEYS").is_err());
}

#[test]
fn generated_keys_are_random_url_safe_and_granted_by_their_line() {
    let generated = generate_key("acme", Role::Write, Some(2_000_000_000)).unwrap();
    let body = generated.key.strip_prefix(GENERATED_KEY_PREFIX).unwrap();
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .unwrap();
    assert_eq!(decoded.len(), GENERATED_KEY_BYTES);
    assert!(
        body.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{body}"
    );
    assert_ne!(
        generate_key("acme", Role::Write, None).unwrap().key,
        generated.key
    );
    assert!(!format!("{generated:?}").contains(&generated.key));
    assert!(!generated.key_file_line.contains(&generated.key));

    let set = KeySet::parse(&generated.key_file_line, "generated").unwrap();
    let caller = set.authenticate_at(&generated.key, 1_999_999_999).unwrap();
    assert_eq!(
        caller,
        Principal {
            tenant: "acme".into(),
            role: Role::Write,
            key_id: "generated:1".into(),
        }
    );
    assert!(set.authenticate_at(&generated.key, 2_000_000_000).is_err());
    let forever = generate_key("ops", Role::Admin, None).unwrap();
    assert_eq!(forever.key_file_line.split_whitespace().count(), 3);
}

#[test]
fn key_lines_refuse_tenants_the_key_file_cannot_hold() {
    for bad in ["", "two words", "tab\there", "nul\0"] {
        let err = generate_key(bad, Role::Read, None).unwrap_err();
        assert!(
            matches!(
                err,
                AuthError::BadOption {
                    option: "tenant",
                    ..
                }
            ),
            "{bad:?}: {err}"
        );
    }
    let too_long = "t".repeat(1000);
    assert!(key_file_line(&hash_key("k"), &too_long, Role::Read, None).is_err());
}

#[test]
fn failed_authentications_are_counted_but_denials_and_successes_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(
        &path,
        format!(
            "{}{}",
            line("reader", "acme read"),
            line("old", "acme read 100")
        ),
    )
    .unwrap();
    let auth = enabled_with_file(&path);
    assert_eq!(auth.failed_authentications(), 0);
    let caller = auth.authenticate(Some("reader")).unwrap();
    assert!(caller.require(Role::Admin).is_err());
    assert_eq!(auth.failed_authentications(), 0);
    for key in [None, Some(""), Some("unknown"), Some("old")] {
        assert!(auth.authenticate(key).is_err());
    }
    assert_eq!(auth.failed_authentications(), 4);
}

#[test]
fn metadata_key_extraction() {
    let mut metadata = tonic::metadata::MetadataMap::new();
    assert_eq!(Authenticator::key_from_metadata(&metadata), None);
    metadata.insert(API_KEY_METADATA, "k".parse().unwrap());
    assert_eq!(Authenticator::key_from_metadata(&metadata), Some("k"));
}
