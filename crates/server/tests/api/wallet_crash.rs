//! Crash safety of the wallet: under a load of transfers the server is killed with SIGKILL
//! and restarted; every request is retried with its Idempotency-Key until it is answered,
//! then retried once more. Each transfer must have happened exactly once, every retry must
//! answer with the first result, and the ledger must balance. `PLAZA_CRASH_TRANSFERS`
//! makes the run longer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use crate::support::process::{
    crash_node, json_of, register_until_answered, topup_until_answered, until_answered, work_through, RETRIED,
};
use crate::support::Db;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

on_both_databases!(killed_under_transfer_load_moves_each_transfer_exactly_once);

/// POSTs until answered (`support::process::until_answered`).
async fn post_until_answered(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: &Value,
) -> (u16, Value, bool) {
    until_answered(client, reqwest::Method::POST, &format!("{base}{path}"), token, key, Some(body)).await
}

async fn killed_under_transfer_load_moves_each_transfer_exactly_once(db: Db) {
    let transfers: usize = std::env::var("PLAZA_CRASH_TRANSFERS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let (node, client, base) = crash_node(db, vec![("PLAZA_ADMINS".to_string(), "auditor".to_string())]).await;

    let mut people = Vec::new();
    for name in ["auditor", "ann", "bob", "cat", "dan"] {
        people.push(register_until_answered(&client, &base, name).await);
    }
    let auditor = people.remove(0).0;
    for (token, _) in &people {
        topup_until_answered(&client, &base, token, 1_000_000).await;
    }

    // The plan: who pays whom how much, each with its own key.
    let mut next = support::xorshift(0x9E37_79B9_7F4A_7C15);
    let plan: Vec<(String, usize, usize, i64)> = (0..transfers)
        .map(|n| {
            let from = (next() % 4) as usize;
            let to = (from + 1 + (next() % 3) as usize) % 4;
            (format!("crash-{n}"), from, to, 1 + (next() % 100) as i64)
        })
        .collect();
    let plan = Arc::new(plan);
    let people = Arc::new(people);
    let answered = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<HashMap<String, String>>> = Arc::new(Mutex::new(HashMap::new()));

    let context = (client.clone(), base.clone(), people.clone(), results.clone());
    let workers = work_through(
        8,
        plan.clone(),
        answered.clone(),
        context,
        |(client, base, people, results), (key, from, to, amount)| async move {
            let body = json!({"to_user_id": people[to].1, "amount": amount, "currency": "USD"});
            let (status, reply, _) = post_until_answered(
                &client,
                &base,
                "/api/v1/wallet/transfers",
                Some(&people[from].0),
                Some(&key),
                &body,
            )
            .await;
            assert_eq!(status, 201, "{key}: {reply}");
            results.lock().unwrap().insert(key, reply["id"].as_str().unwrap().to_string());
        },
    );
    // Kill the server twice while transfers are in flight, restarting it each time.
    support::process::kill_and_restart_at(&node, &base, &answered, &[transfers / 4, transfers / 2], "transfers").await;
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(RETRIED.load(Ordering::Relaxed) > 0, "the kills interrupted no request; the test proved nothing");

    // Every request retried once more: the first answer, and nothing moves.
    let results = results.lock().unwrap().clone();
    assert_eq!(results.len(), transfers);
    for (key, from, to, amount) in plan.iter() {
        let body = json!({"to_user_id": people[*to].1, "amount": amount, "currency": "USD"});
        let (status, reply, replayed) =
            post_until_answered(&client, &base, "/api/v1/wallet/transfers", Some(&people[*from].0), Some(key), &body)
                .await;
        assert_eq!(status, 201, "{reply}");
        assert!(replayed, "{key} was executed again");
        assert_eq!(reply["id"].as_str().unwrap(), results[key], "{key} answered with another transfer");
    }

    // Balances are exactly what the plan says, and each transfer is in the journal once.
    let mut expected = [1_000_000_i64; 4];
    for (_, from, to, amount) in plan.iter() {
        expected[*from] -= amount;
        expected[*to] += amount;
    }
    for (index, (token, _)) in people.iter().enumerate() {
        let wallet: Value =
            client.get(format!("{base}/api/v1/wallet")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
        assert_eq!(wallet["balances"][0]["available"], expected[index], "person {index}: {wallet}");
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{base}/api/v1/wallet/transactions?limit=200");
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let page: Value = client.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
            for item in page["items"].as_array().unwrap() {
                if item["kind"] == "transfer" {
                    *seen.entry(item["transaction_id"].as_str().unwrap().to_string()).or_default() += 1;
                }
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        let involved = plan.iter().filter(|(_, from, to, _)| *from == index || *to == index).count();
        assert_eq!(seen.len(), involved, "person {index}: each of their transfers once");
        assert!(seen.values().all(|count| *count == 1));
    }
    let check: Value = json_of(client.get(format!("{base}/api/v1/admin/ledger/check")).bearer_auth(&auditor)).await;
    assert_eq!(check["ok"], true, "{check}");
}
