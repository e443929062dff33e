//! The dispatch of [`SystemsSpawner`] where no Slurm is needed: states without a known system,
//! unknown systems in options, who may use a system, merged timeouts and metrics. The hub's
//! `--test slurm` binary runs the rest against the dev cluster.

use serde_json::json;

use super::*;
use crate::{AllowRule, PartitionConfig};

/// Two systems whose Slurm commands do not exist (nothing here asks Slurm for an answer).
fn spawner() -> SystemsSpawner {
    let system = |name: &str, poll: u64| SystemConfig {
        name: name.into(),
        title: name.to_uppercase(),
        slurm: SlurmConfig {
            bin_dir: "/nonexistent/slurm/bin".into(),
            poll_interval: poll,
            ..SlurmConfig::default()
        },
        ..SystemConfig::default()
    };
    SystemsSpawner::new(
        &SpawnerConfig {
            cmd: vec!["/bin/true".into()],
            poll_interval: 1,
            ..SpawnerConfig::default()
        },
        &[system("alpha", 7), system("beta", 3)],
        Path::new("/tmp"),
    )
    .unwrap()
}

fn state(system: &str) -> SpawnerState {
    SlurmState {
        system: system.into(),
        job_id: "42".into(),
        user: "alice".into(),
        partition: "devel".into(),
        nodes: 1,
        output: "/x/42.log".into(),
        host: None,
        tunnel: None,
        hub_tunnel: None,
    }
    .to_state()
}

#[tokio::test]
async fn a_state_without_a_known_system_is_never_given_up_nor_a_panic() {
    let s = spawner();
    for (st, words) in [
        (state("gamma"), "not configured any more"),
        (state(""), "without a system"),
    ] {
        match s.poll(&st).await {
            PollStatus::Unknown { reason } => assert!(reason.contains(words), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(s.stop(&st, Duration::ZERO).await.is_err());
        assert!(s.describe(&st).is_none());
        assert!(s.restore(&st).await.unwrap().is_none());
        assert!(s.resume(&st, &Updates::default()).await.is_err());
    }
    let garbage = SpawnerState(json!({"pid": 3}));
    assert!(matches!(s.poll(&garbage).await, PollStatus::Exited { .. }));
    s.stop(&SpawnerState::default(), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(s.system_of(&state("beta")).as_deref(), Some("beta"));
    assert_eq!(s.system_of(&state("")), None);
    let all = s.poll_all(&[garbage, state("gamma")]).await;
    assert!(matches!(all[0], PollStatus::Exited { .. }));
    assert!(matches!(all[1], PollStatus::Unknown { .. }));
}

#[tokio::test]
async fn options_naming_no_configured_system_are_refused_by_field() {
    let s = spawner();
    let ctx = FormContext::new("alice");
    let errors = s
        .validate_options(&ctx, &json!({"system": "gamma", "partition": "devel"}))
        .await
        .unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "system");
    assert_eq!(
        errors[0].message,
        "unknown system 'gamma'; choose one of alpha, beta"
    );
    let mut options = ValidatedOptions::default();
    options.0.insert("system".into(), json!("gamma"));
    assert!(matches!(
        s.estimate(&ctx, &options).await,
        Some(Err(SpawnError::InvalidOptions(_)))
    ));
    assert!(s.admit(&ctx, &options).await.is_err());
    let req = SpawnRequest {
        user_options: options,
        ..SpawnRequest::new("alice", "")
    };
    assert!(matches!(
        s.start(&req).await,
        Err(SpawnError::InvalidOptions(_))
    ));
}

#[test]
fn systems_timeouts_and_metrics_are_the_children_s() {
    let s = spawner();
    let names: Vec<(String, String)> = s.systems().into_iter().map(|i| (i.name, i.title)).collect();
    assert_eq!(
        names,
        [
            ("alpha".to_owned(), "ALPHA".to_owned()),
            ("beta".to_owned(), "BETA".to_owned())
        ]
    );
    assert_eq!(s.timeouts().poll_interval, Duration::from_secs(3));
    let metrics = s.metrics();
    let polls = metrics
        .iter()
        .find(|m| m.name == "nbhub_slurm_polls_total")
        .expect("the poller's counter");
    for system in ["alpha", "beta"] {
        assert!(
            polls
                .samples
                .iter()
                .any(|(labels, _)| labels.contains(&("system", system.to_owned()))),
            "{polls:?}"
        );
    }
    assert_eq!(
        metrics
            .iter()
            .filter(|m| m.name == "nbhub_slurm_polls_total")
            .count(),
        1,
        "one family, a series per system"
    );
}

#[test]
fn an_ssh_system_without_its_tracking_account_is_refused_naming_the_key() {
    let err = SystemsSpawner::new(
        &SpawnerConfig {
            cmd: vec!["/bin/true".into()],
            ..SpawnerConfig::default()
        },
        &[SystemConfig {
            name: "far".into(),
            transport: Transport::Ssh,
            ssh: Some(crate::SshConfig {
                login_hosts: vec!["login".into()],
                known_hosts: "/k".into(),
                identity_file: "/i".into(),
                ..Default::default()
            }),
            ..SystemConfig::default()
        }],
        Path::new("/tmp"),
    )
    .err()
    .expect("refused");
    assert!(
        err.to_string().contains("systems[0].ssh.tracking_user"),
        "{err}"
    );
}

#[test]
fn allow_rules_and_accounts_decide_who_may_use_a_system() {
    let config = SlurmConfig {
        partitions: vec![PartitionConfig {
            name: "batch".into(),
            ..Default::default()
        }],
        allow: vec![AllowRule {
            groups: vec!["beta-users".into()],
            partitions: vec!["batch".into()],
            ..Default::default()
        }],
        ..SlurmConfig::default()
    };
    let form = FormSpec::default();
    let mut alice = FormContext::new("alice");
    assert!(
        !may_use(&config, &alice, &form),
        "no rule gives alice a partition"
    );
    alice.groups = vec!["beta-users".into()];
    assert!(may_use(&config, &alice, &form));
    // A rule naming only partitions the system does not offer gives nothing.
    let elsewhere = SlurmConfig {
        allow: vec![AllowRule {
            users: vec!["*".into()],
            partitions: vec!["gpu".into()],
            ..Default::default()
        }],
        ..config.clone()
    };
    assert!(!may_use(&elsewhere, &alice, &form));
    // No account to charge (no association with Slurm's accounting): not offered.
    let no_accounts: FormSpec = serde_json::from_value(json!({"fields": [
        {"name": "account", "label": "Account", "kind": {"type": "select", "choices": []}}
    ]}))
    .unwrap();
    assert!(!may_use(&SlurmConfig::default(), &alice, &no_accounts));
    assert!(may_use(&SlurmConfig::default(), &alice, &form));
}

#[test]
fn last_options_reach_only_their_own_system() {
    let mut ctx = FormContext::new("alice");
    ctx.last_options = Some(ValidatedOptions(
        json!({"system": "beta", "partition": "batch"})
            .as_object()
            .unwrap()
            .clone(),
    ));
    assert!(system_ctx(&ctx, "beta").last_options.is_some());
    assert!(system_ctx(&ctx, "alpha").last_options.is_none());
}

#[tokio::test]
async fn one_system_has_no_picker() {
    let s = SystemsSpawner::new(
        &SpawnerConfig {
            cmd: vec!["/bin/true".into()],
            ..SpawnerConfig::default()
        },
        &[SystemConfig {
            name: "only".into(),
            slurm: SlurmConfig {
                bin_dir: "/nonexistent/slurm/bin".into(),
                ..SlurmConfig::default()
            },
            ..SystemConfig::default()
        }],
        Path::new("/tmp"),
    )
    .unwrap();
    let ctx = FormContext::new("alice");
    let form = s.options_form(&ctx).await.expect("a form");
    assert!(form.field("system").is_none(), "{form:?}");
    assert!(form.field("partition").is_some(), "the system's own form");
    let errors = s
        .validate_options(&ctx, &json!({"system": "other"}))
        .await
        .unwrap_err();
    assert_eq!(errors[0].field, "system");
    assert_eq!(
        errors[0].message,
        "unknown system 'other'; choose one of only"
    );
}

#[tokio::test]
async fn the_ended_signal_changes_when_any_system_s_does() {
    let (a_tx, a_rx) = watch::channel(0u64);
    let (b_tx, b_rx) = watch::channel(0u64);
    let mut merged = merge_signals(vec![a_rx, b_rx]);
    b_tx.send_modify(|n| *n += 1);
    tokio::time::timeout(Duration::from_secs(5), merged.changed())
        .await
        .expect("in time")
        .expect("open");
    a_tx.send_modify(|n| *n += 1);
    tokio::time::timeout(Duration::from_secs(5), merged.changed())
        .await
        .expect("in time")
        .expect("open");
    assert_eq!(*merged.borrow_and_update(), 2);
    // Every child gone: the merged signal closes.
    drop((a_tx, b_tx));
    let closed = tokio::time::timeout(Duration::from_secs(5), merged.changed())
        .await
        .expect("in time");
    assert!(closed.is_err());
}
