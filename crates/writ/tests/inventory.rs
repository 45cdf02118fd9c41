//! End-to-end, the whole "findings in, governed decisions out" story on real parts: moto holds
//! the IAM users and keys, `writ sync` discovers them, `writ inventory import` gives them owners,
//! and a real Prowler scan of moto ingests into cases with decisions that follow the demo
//! policy, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Site, fixture, key_status, text};
use writ_connector_aws::Service;
use writ_testkit::{MotoServer, TestDb};

async fn seed_moto(url: &str) {
    let client = common::moto_client(url);
    for (user, keys) in [("svc-etl", 1), ("ci-deployer", 2), ("svc-backup", 1)] {
        client
            .query(Service::Iam, "CreateUser", &[("UserName", user)])
            .await
            .unwrap();
        for _ in 0..keys {
            client
                .query(Service::Iam, "CreateAccessKey", &[("UserName", user)])
                .await
                .unwrap();
        }
    }
}

/// A seeded moto and a site on `db` whose `[[targets]]` entry `aws` is that moto; `extra` is
/// prepended to the configuration.
async fn site_on_moto(db: TestDb, extra: &str) -> (MotoServer, Site) {
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap()
        .unwrap();
    seed_moto(&moto.url()).await;
    let site = Site::new(
        db,
        &format!(
            "{extra}[[targets]]\nname = \"aws\"\nkind = \"aws_iam\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n",
            moto.url()
        ),
    );
    (moto, site)
}

async fn prowler_scan_of_moto_becomes_governed_cases(db: TestDb) {
    let (moto, site) = site_on_moto(db, "").await;
    std::fs::write(
        site.path("owners.csv"),
        "pattern,owner_team,criticality,privileged\n\
         aws:123456789012/svc-etl*,data,high\n\
         aws:123456789012/ci-deployer*,platform,medium\n\
         aws:123456789012/svc-backup*,,low\n",
    )
    .unwrap();

    // Only `writ serve` holds the ledger key: every person and service acts through its API,
    // authenticated. The first admin is made locally, on the empty database.
    let root = site.bootstrap_admin("Root");
    let aws_env = common::aws_env(Some(&moto.url()));
    let mut server = site.spawn_serve(&aws_env);
    server.wait_ready().await;
    let alice = site.add_principal(
        &server,
        &root,
        &["Alice", "--team", "data", "--role", "approver"],
    );
    let bob = site.add_principal(
        &server,
        &root,
        &["bob", "--team", "platform", "--role", "approver"],
    );
    let ops = site.add_principal(
        &server,
        &root,
        &["ops", "--role", "admin", "--role", "approver"],
    );
    let scanner = site.add_principal(
        &server,
        &root,
        &[
            "prowler-ci",
            "--service",
            "--role",
            "source",
            "--trust",
            "high",
        ],
    );

    let output = site.run_as(&server, &root, &["sync", "aws"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("synced aws:123456789012"),
        "{}",
        text(&output)
    );
    let output = site.run_as(&server, &root, &["inventory", "import", "owners.csv"]);
    assert!(output.status.success(), "{}", text(&output));
    // Importing rules is an admin's act: an approver is refused.
    let output = site.run_as(&server, &alice, &["inventory", "import", "owners.csv"]);
    assert!(!output.status.success());
    assert!(text(&output).contains("403"), "{}", text(&output));
    let output = site.run_as(&server, &alice, &["inventory", "list"]);
    let listing = text(&output);
    assert!(
        listing.contains("aws:123456789012/svc-etl/AccessKey1"),
        "{listing}"
    );
    assert!(listing.contains("owner=data"), "{listing}");

    // The source principal posts a real Prowler scan of moto with its own token.
    let scan = fixture("prowler-iam.ocsf.json");
    let output = site.run_as(
        &server,
        &scanner,
        &["ingest", "--server", &server.base, scan.to_str().unwrap()],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("10 accepted"), "{}", text(&output));

    // The unused key of an owned, freshly synced identity: disabling it needs the owner team.
    let output = site.run_as(&server, &alice, &["case", "list", "--json"]);
    assert!(output.status.success(), "{}", text(&output));
    let cases: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let find = |subject: &str, finding_type: &str| {
        cases
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["subject"] == subject && c["finding_type"] == finding_type)
            .cloned()
            .unwrap_or_else(|| panic!("no case for {subject} {finding_type} in {cases}"))
    };
    let unused = find(
        "aws:123456789012/svc-etl/AccessKey1",
        "iam_user_accesskey_unused",
    );
    assert_eq!(unused["state"], "awaiting_approval", "{unused}");
    let case_id = unused["id"].as_str().unwrap().to_owned();
    let output = site.run_as(&server, &alice, &["case", "show", &case_id]);
    let story = text(&output);
    assert!(
        story.contains("disable needs 1 approval(s) from owner_team"),
        "{story}"
    );
    assert!(story.contains("by source:prowler-ci"), "{story}");
    // No owner: a human decides, whatever policy says.
    let orphan = find(
        "aws:123456789012/svc-backup/AccessKey1",
        "iam_rotate_access_key_90_days",
    );
    assert_eq!(orphan["state"], "needs_review");
    // Not in the inventory at all.
    let policy = find(
        "aws:123456789012/policy/AdminAll",
        "iam_customer_attached_policy_no_administrative_privileges",
    );
    assert_eq!(policy["state"], "needs_review");

    // Write-back: the owner team `data` approves; the worker deactivates the key in moto and
    // reads it back; a rollback restores it. All of it in the one case.
    let approvals = server.url(&format!("/v1/cases/{case_id}/approvals"));
    let vote = serde_json::json!({"verdict": "approve", "rationale": "looks fine"});
    let http = reqwest::Client::new();
    let post = |token: Option<&str>| {
        let mut request = http.post(&approvals).json(&vote);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let response = post(None).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    for (who, token, needle) in [
        (
            "bob",
            &bob,
            "no group of the approval rule \"1 of owner_team\"",
        ),
        ("the source", &scanner, "needs the role approver"),
        (
            "an admin outside data",
            &ops,
            "no group of the approval rule",
        ),
    ] {
        let response = post(Some(token)).await.unwrap();
        assert_eq!(response.status(), 403, "{who}");
        let problem: serde_json::Value = response.json().await.unwrap();
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(needle), "{who}: {problem}");
    }
    let output = site.run_as(
        &server,
        &alice,
        &[
            "approve",
            &case_id,
            "--rationale",
            "owner confirmed: unused since the migration",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("write-back job"),
        "{}",
        text(&output)
    );
    common::wait_for_key_status(&moto.url(), "svc-etl", "Inactive").await;
    let story = server
        .wait_for_case_state(
            &alice,
            &case_id,
            "remediated",
            std::time::Duration::from_secs(10),
        )
        .await;
    let events = story["events"].as_array().unwrap();
    let granted = events
        .iter()
        .find(|e| e["kind"] == "approval_granted")
        .expect("approval_granted");
    assert_eq!(granted["actor"], "user:alice");
    assert_eq!(
        granted["body"]["rationale"],
        "owner confirmed: unused since the migration"
    );
    for step in [
        "change_requested",
        "write_back_intent",
        "write_back_applied",
        "write_back_verified",
    ] {
        assert!(
            events.iter().any(|e| e["kind"] == step),
            "{step} missing from {story}"
        );
    }
    let output = site.run_as(
        &server,
        &alice,
        &[
            "rollback",
            &case_id,
            "--rationale",
            "still used by the nightly job",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(key_status(&moto.url(), "svc-etl").await, "Active");
    server.stop();

    assert!(site.run(&["audit", "verify"]).status.success());
    let output = site.run(&["admin", "rebuild", "--check"]);
    assert!(output.status.success(), "{}", text(&output));
}

/// A bundle where disabling an unused key needs "1 of owner_team and 1 of team:security": two
/// approvers of the owner team do not meet it, one of each does; all through the real binary.
async fn two_groups_are_not_met_by_one_team(db: TestDb) {
    let (moto, site) = site_on_moto(
        db,
        "[policy]\nbundle = \"policy\"\n\n[writeback]\ninterval_ms = 50\n\n",
    )
    .await;
    // The demo bundle, with the owner team's rule for unused keys made a two-group rule.
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/demo");
    std::fs::create_dir_all(site.path("policy")).unwrap();
    for entry in std::fs::read_dir(&demo).unwrap() {
        let entry = entry.unwrap();
        let mut text = std::fs::read_to_string(entry.path()).unwrap();
        if entry.file_name() == "credentials.cedar" {
            let before = "@id(\"inactive-credential-disable-owner-approval\")\n@approvals(\"1\")\n@approvers(\"owner_team\")";
            assert!(text.contains(before), "the demo bundle changed: {text}");
            text = text.replace(
                before,
                "@id(\"inactive-credential-disable-owner-approval\")\n@approvers(\"1 of owner_team and 1 of team:security\")",
            );
        }
        std::fs::write(site.path("policy").join(entry.file_name()), text).unwrap();
    }
    std::fs::write(
        site.path("owners.csv"),
        "pattern,owner_team,criticality\naws:123456789012/svc-etl*,data,high\n",
    )
    .unwrap();
    let root = site.bootstrap_admin("root");
    let mut server = site.spawn_serve(&common::aws_env(None));
    server.wait_ready().await;
    let person = |name: &str, team: &str| {
        site.add_principal(
            &server,
            &root,
            &[name, "--team", team, "--role", "approver"],
        )
    };
    let alice = person("alice", "data");
    let dana = person("dana", "data");
    let sam = person("sam", "security");
    let scanner = site.add_principal(
        &server,
        &root,
        &[
            "prowler-ci",
            "--service",
            "--role",
            "source",
            "--trust",
            "high",
        ],
    );
    for args in [&["sync", "aws"][..], &["inventory", "import", "owners.csv"]] {
        let output = site.run_as(&server, &root, args);
        assert!(output.status.success(), "{}", text(&output));
    }
    let scan = fixture("prowler-iam.ocsf.json");
    let output = site.run_as(
        &server,
        &scanner,
        &["ingest", "--server", &server.base, scan.to_str().unwrap()],
    );
    assert!(output.status.success(), "{}", text(&output));
    let output = site.run_as(&server, &alice, &["case", "list", "--json"]);
    let cases: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let case_id = cases
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["subject"] == "aws:123456789012/svc-etl/AccessKey1"
                && c["finding_type"] == "iam_user_accesskey_unused"
        })
        .and_then(|c| c["id"].as_str())
        .unwrap_or_else(|| panic!("no unused-key case in {cases}"))
        .to_owned();
    let approve = |token: &str| {
        let output = site.run_as(
            &server,
            token,
            &["approve", &case_id, "--rationale", "fine by me"],
        );
        assert!(output.status.success(), "{}", text(&output));
        text(&output)
    };
    for token in [&alice, &dana] {
        let said = approve(token);
        assert!(
            said.contains("\"1 of owner_team and 1 of team:security\" needs 1 more"),
            "{said}"
        );
    }
    let output = site.run_as(&server, &alice, &["case", "show", &case_id, "--json"]);
    let story: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(story["case"]["state"], "awaiting_approval", "{story}");
    assert_eq!(key_status(&moto.url(), "svc-etl").await, "Active");
    let said = approve(&sam);
    assert!(said.contains("write-back job"), "{said}");
    common::wait_for_key_status(&moto.url(), "svc-etl", "Inactive").await;
    server.stop();
}

/// GETs `path` as the principal of `token`.
async fn get_as(server: &common::Server, token: &str, path: &str) -> serde_json::Value {
    let response = reqwest::Client::new()
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// Polls `path` as `token` until `done` holds of the answer (20 s at most).
async fn wait_until(
    server: &common::Server,
    token: &str,
    path: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let answer = get_as(server, token, path).await;
        if done(&answer) {
            return answer;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {answer}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A target with `sync_every` is synced by `writ serve` itself: its freshness and last result
/// show in `GET /v1/systems` and `writ systems`; an identity added in the target appears with
/// no one asking; unchanged identities are not recorded again; a target that cannot be read is
/// recorded as a failed sync that keeps the last success (the inventory stays as it was).
async fn scheduled_sync_keeps_the_inventory_fresh(db: TestDb) {
    let mut moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap()
        .unwrap();
    seed_moto(&moto.url()).await;
    let site = Site::new(
        db,
        &format!(
            "[writeback]\ninterval_ms = 200\n\n[[targets]]\nname = \"aws\"\nkind = \"aws_iam\"\n\
             endpoint = \"{}\"\nregion = \"us-east-1\"\nsync_every = \"1s\"\n",
            moto.url()
        ),
    );
    let root = site.bootstrap_admin("root");
    let mut server = site.spawn_serve(&common::aws_env(Some(&moto.url())));
    server.wait_ready().await;
    let reader = site.add_principal(&server, &root, &["rita", "--role", "auditor"]);

    let systems = wait_until(&server, &reader, "/v1/systems", "no scheduled sync", |s| {
        s[0]["result"] == "succeeded" && s[0]["scheduled"] == true
    })
    .await;
    let aws = &systems[0];
    assert_eq!(aws["system"], "aws:123456789012", "{aws}");
    assert_eq!(aws["target"], "aws", "{aws}");
    // Three users and their four keys.
    assert_eq!(aws["identities"], 7, "{aws}");
    assert!(aws["age_seconds"].as_i64().unwrap() < 30, "{aws}");

    // Added in the target: in the inventory by the next round, with no one asking.
    common::moto_client(&moto.url())
        .query(Service::Iam, "CreateUser", &[("UserName", "svc-new")])
        .await
        .unwrap();
    wait_until(
        &server,
        &reader,
        "/v1/identities",
        "svc-new never synced",
        |ids| {
            ids.as_array()
                .unwrap()
                .iter()
                .any(|i| i["external_id"] == "svc-new")
        },
    )
    .await;
    let systems = wait_until(&server, &reader, "/v1/systems", "no later round", |s| {
        s[0]["identities"] == 8 && s[0]["changed"] == 0
    })
    .await;
    let last_success = systems[0]["last_success_at"].clone();
    let output = site.run_as(&server, &reader, &["systems"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("aws:123456789012  aws  succeeded"),
        "{}",
        text(&output)
    );

    // The target goes away: recorded as failed, the last success kept.
    moto.stop();
    let systems = wait_until(&server, &reader, "/v1/systems", "no failed sync", |s| {
        s[0]["result"] == "failed"
    })
    .await;
    assert!(systems[0]["error"].as_str().unwrap().len() > 5, "{systems}");
    assert!(systems[0]["last_success_at"].is_string(), "{systems}");
    assert!(
        systems[0]["last_success_at"].as_str() >= last_success.as_str(),
        "{systems}"
    );
    let identities = get_as(&server, &reader, "/v1/identities").await;
    assert_eq!(identities.as_array().unwrap().len(), 8, "nothing lost");
    server.stop();
    for args in [&["audit", "verify"][..], &["admin", "rebuild", "--check"]] {
        let output = site.run(args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
    // Each identity was recorded when it first appeared, not at every round.
    let output = site.run(&["audit", "export", "--all", "-o", "all.json"]);
    assert!(output.status.success(), "{}", text(&output));
    let bundle: writ_ledger::Bundle =
        serde_json::from_slice(&std::fs::read(site.path("all.json")).unwrap()).unwrap();
    let leaves: Vec<String> = bundle
        .entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.leaf).into_owned())
        .collect();
    let count = |kind: &str| {
        let needle = format!("\"kind\":\"{kind}\"");
        leaves.iter().filter(|l| l.contains(&needle)).count()
    };
    let (synced, rounds) = (count("identity_synced"), count("system_synced"));
    assert!(rounds >= 3, "{rounds} rounds");
    assert!(synced >= 8, "every identity recorded once: {synced}");
    assert!(
        synced < 8 * 2,
        "identities recorded again each round: {synced}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_scheduled_sync_keeps_the_inventory_fresh() {
    scheduled_sync_keeps_the_inventory_fresh(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_scheduled_sync_keeps_the_inventory_fresh() {
    scheduled_sync_keeps_the_inventory_fresh(TestDb::postgres().unwrap()).await;
}

/// Every case replays to identical decisions under the bundle that made it, kept in the ledger
/// by hash; after a deploy of another bundle the old decisions still replay identically, and
/// the replay shows what the new bundle would decide instead.
async fn cases_replay_identically_after_a_deploy(db: TestDb) {
    let (moto, site) = site_on_moto(db, "[policy]\nbundle = \"policy\"\n\n").await;
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/demo");
    std::fs::create_dir_all(site.path("policy")).unwrap();
    for entry in std::fs::read_dir(&demo).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), site.path("policy").join(entry.file_name())).unwrap();
    }
    std::fs::write(
        site.path("owners.csv"),
        "pattern,owner_team,criticality\naws:123456789012/svc-etl*,data,high\n\
         aws:123456789012/ci-deployer*,platform,medium\n",
    )
    .unwrap();
    let root = site.bootstrap_admin("root");
    let aws_env = common::aws_env(Some(&moto.url()));
    let mut server = site.spawn_serve(&aws_env);
    server.wait_ready().await;
    let scanner = site.add_principal(
        &server,
        &root,
        &[
            "prowler-ci",
            "--service",
            "--role",
            "source",
            "--trust",
            "high",
        ],
    );
    let auditor = site.add_principal(&server, &root, &["audra", "--role", "auditor"]);
    for args in [&["sync", "aws"][..], &["inventory", "import", "owners.csv"]] {
        let output = site.run_as(&server, &root, args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
    let scan = fixture("prowler-iam.ocsf.json");
    let output = site.run_as(
        &server,
        &scanner,
        &["ingest", "--server", &server.base, scan.to_str().unwrap()],
    );
    assert!(output.status.success(), "{}", text(&output));
    let cases: Vec<String> = get_as(&server, &auditor, "/v1/cases")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(cases.len() >= 2, "{cases:?}");
    let mut first_bundle = String::new();
    for case in &cases {
        let output = site.run_as(&server, &auditor, &["case", "replay", case]);
        assert!(output.status.success(), "{case}: {}", text(&output));
        assert!(
            text(&output).contains("every one replays identically"),
            "{}",
            text(&output)
        );
        let replay = get_as(&server, &auditor, &format!("/v1/cases/{case}/replay")).await;
        first_bundle = replay["today_bundle"].as_str().unwrap().to_owned();
        for d in replay["decisions"].as_array().unwrap() {
            assert_eq!(d["replay"], "identical", "{d}");
            assert_eq!(d["today_same_tier"], true, "{d}");
        }
    }
    server.stop();

    // A candidate that makes disabling an owned inactive credential automatic, simulated over
    // the recorded findings before it is deployed.
    std::fs::create_dir_all(site.path("candidate")).unwrap();
    for entry in std::fs::read_dir(site.path("policy")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), site.path("candidate").join(entry.file_name())).unwrap();
    }
    let mut credentials =
        std::fs::read_to_string(site.path("candidate").join("credentials.cedar")).unwrap();
    credentials.push_str(
        "\n@id(\"inactive-credential-disable-auto\")\npermit (\n  principal == Writ::Engine::\"automation\",\n  \
         action == Writ::Action::\"auto:disable\",\n  resource\n)\nwhen {\n  \
         (resource.kind == \"service_account\" || resource.kind == \"api_key\") &&\n  \
         context.finding.signal == \"inactivity\" &&\n  resource.has_owner\n};\n",
    );
    std::fs::write(
        site.path("candidate").join("credentials.cedar"),
        credentials,
    )
    .unwrap();
    let output = site.run(&["policy", "simulate", "--candidate", "candidate", "--json"]);
    assert!(output.status.success(), "{}", text(&output));
    let simulated: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut would_change: Vec<String> = simulated["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert!(!would_change.is_empty(), "{simulated}");
    for change in simulated["changes"].as_array().unwrap() {
        assert_eq!(change["candidate"]["tier"]["tier"], "auto", "{change}");
        assert!(
            change["recorded"]["determining_policies"]
                .to_string()
                .contains("inactive-credential-disable-owner-approval"),
            "{change}"
        );
    }
    assert!(
        simulated["policies"]["inactive-credential-disable-auto"]["candidate"]
            .as_u64()
            .unwrap()
            >= 1,
        "{simulated}"
    );
    let output = site.run(&["policy", "simulate", "--candidate", "candidate"]);
    assert!(
        text(&output).contains("approval -> auto"),
        "{}",
        text(&output)
    );

    // The deploy: old decisions still replay identically under their kept bundle, and today's
    // bundle decides otherwise exactly where the simulation said.
    std::fs::remove_dir_all(site.path("policy")).unwrap();
    std::fs::rename(site.path("candidate"), site.path("policy")).unwrap();
    let mut server = site.spawn_serve(&aws_env);
    server.wait_ready().await;
    let mut changed = 0;
    let mut replay_changed = Vec::new();
    for case in &cases {
        let replay = get_as(&server, &auditor, &format!("/v1/cases/{case}/replay")).await;
        assert_ne!(replay["today_bundle"], first_bundle.as_str(), "{replay}");
        assert_eq!(replay["all_identical"], true, "{replay}");
        for d in replay["decisions"].as_array().unwrap() {
            assert_eq!(d["bundle_hash"], first_bundle.as_str(), "{d}");
            assert_eq!(d["replay"], "identical", "kept by hash: {d}");
            if d["today_same_tier"] == false {
                changed += 1;
                replay_changed.push(case.clone());
            }
        }
        let output = site.run_as(&server, &auditor, &["case", "replay", case]);
        assert!(output.status.success(), "{case}: {}", text(&output));
    }
    assert!(changed >= 1, "the new bundle decides some case otherwise");
    replay_changed.sort();
    replay_changed.dedup();
    would_change.sort();
    assert_eq!(
        would_change, replay_changed,
        "the simulation named exactly the cases the deploy changed"
    );
    server.stop();
    for args in [&["audit", "verify"][..], &["admin", "rebuild", "--check"]] {
        let output = site.run(args);
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_cases_replay_identically_after_a_deploy() {
    cases_replay_identically_after_a_deploy(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cases_replay_identically_after_a_deploy() {
    cases_replay_identically_after_a_deploy(TestDb::postgres().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_groups_are_not_met_by_one_team() {
    two_groups_are_not_met_by_one_team(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_groups_are_not_met_by_one_team() {
    two_groups_are_not_met_by_one_team(TestDb::postgres().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_prowler_scan_of_moto_becomes_governed_cases() {
    prowler_scan_of_moto_becomes_governed_cases(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_prowler_scan_of_moto_becomes_governed_cases() {
    prowler_scan_of_moto_becomes_governed_cases(TestDb::postgres().unwrap()).await;
}
