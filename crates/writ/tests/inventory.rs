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

fn run_with_aws(site: &Site, moto: &MotoServer, args: &[&str]) -> std::process::Output {
    common::writ(site.dir())
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", moto.url())
        .output()
        .unwrap()
}

async fn prowler_scan_of_moto_becomes_governed_cases(db: TestDb) {
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap()
        .unwrap();
    seed_moto(&moto.url()).await;
    let site = Site::new(
        db,
        &format!(
            "[[targets]]\nname = \"aws\"\nkind = \"aws_iam\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n",
            moto.url()
        ),
    );
    std::fs::write(
        site.path("owners.csv"),
        "pattern,owner_team,criticality,privileged\n\
         aws:123456789012/svc-etl*,data,high\n\
         aws:123456789012/ci-deployer*,platform,medium\n\
         aws:123456789012/svc-backup*,,low\n",
    )
    .unwrap();

    let output = run_with_aws(&site, &moto, &["sync", "aws"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("synced aws:123456789012"),
        "{}",
        text(&output)
    );
    let output = site.run(&["inventory", "import", "owners.csv"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = site.run(&["inventory", "list"]);
    let listing = text(&output);
    assert!(
        listing.contains("aws:123456789012/svc-etl/AccessKey1"),
        "{listing}"
    );
    assert!(listing.contains("owner=data"), "{listing}");

    let scan = fixture("prowler-iam.ocsf.json");
    let output = site.run(&["ingest", "--source", "cli", scan.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));

    // The unused key of an owned, freshly synced identity: disabling it needs the owner team.
    let output = site.run(&["case", "list", "--json"]);
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
    let output = site.run(&["case", "show", unused["id"].as_str().unwrap()]);
    let story = text(&output);
    assert!(
        story.contains("disable needs 1 approval(s) from owner_team"),
        "{story}"
    );
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

    // Write-back: the owner approves, the worker deactivates the key in moto and reads it back;
    // a rollback restores it. All of it in the one case.
    let case_id = unused["id"].as_str().unwrap().to_owned();
    let output = run_with_aws(
        &site,
        &moto,
        &[
            "approve",
            &case_id,
            "--as",
            "alice",
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
    let output = run_with_aws(&site, &moto, &["writeback", "run"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("1 verified"), "{}", text(&output));
    assert_eq!(key_status(&moto.url(), "svc-etl").await, "Inactive");
    let story = text(&site.run(&["case", "show", &case_id]));
    for step in [
        "approval_granted",
        "change_requested",
        "write_back_intent",
        "write_back_applied",
        "write_back_verified",
    ] {
        assert!(story.contains(step), "{step} missing from {story}");
    }
    let output = run_with_aws(
        &site,
        &moto,
        &[
            "rollback",
            &case_id,
            "--as",
            "alice",
            "--rationale",
            "still used by the nightly job",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(key_status(&moto.url(), "svc-etl").await, "Active");

    assert!(site.run(&["audit", "verify"]).status.success());
    let output = site.run(&["admin", "rebuild", "--check"]);
    assert!(output.status.success(), "{}", text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_prowler_scan_of_moto_becomes_governed_cases() {
    prowler_scan_of_moto_becomes_governed_cases(TestDb::sqlite().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_prowler_scan_of_moto_becomes_governed_cases() {
    prowler_scan_of_moto_becomes_governed_cases(TestDb::postgres().unwrap()).await;
}
