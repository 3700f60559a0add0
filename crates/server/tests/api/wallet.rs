//! The wallet over real HTTP, on SQLite and PostgreSQL: money moves exactly once however
//! requests are retried or raced, never overdraws, and the ledger always balances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use crate::support::{Db, Reply, TestServer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

on_both_databases!(
    topups_and_transfers_move_money_post_into_the_chat_and_show_in_history,
    a_retried_transfer_moves_money_once_and_a_reused_key_is_refused,
    concurrent_duplicates_of_one_transfer_move_money_once,
    concurrent_random_transfers_never_overdraw_and_keep_the_ledger_balanced,
    a_burst_of_mixed_transfers_is_applied_as_if_one_by_one,
    concurrent_red_packet_claims_hand_out_exactly_the_shares,
    a_lucky_red_packet_splits_exactly_and_a_retried_claim_returns_the_same_share,
    unclaimed_red_packet_money_returns_once_even_with_two_nodes_refunding,
    bad_inputs_are_answered_with_their_codes_and_move_nothing,
    a_pin_guards_payments_and_five_wrong_answers_lock_them,
    a_burst_of_pin_guesses_has_at_most_five_judged_and_then_payments_are_locked,
    setting_or_replacing_the_pin_is_rate_limited_per_user,
    in_a_direct_chat_only_the_other_person_may_claim_a_red_packet,
    a_claim_tells_the_chat_who_opened_the_packet_and_a_big_packet_only_when_all_are_taken,
    payment_intents_hold_capture_release_and_refund,
    the_ledger_check_is_for_admins_and_the_cli_agrees,
);

const AUDITOR: &str = "auditor";

async fn server(db: Db) -> TestServer {
    TestServer::start(db).await
}

/// Registers the auditor and grants it the admin role, as an operator would.
async fn register_auditor(server: &TestServer) -> (String, String) {
    let auditor = server.register(AUDITOR).await;
    server.set_admin(AUDITOR, true).await;
    auditor
}

async fn post_keyed(server: &TestServer, path: &str, token: &str, key: Option<&str>, body: Value) -> Reply {
    let mut request = server.client.post(format!("{}{path}", server.base)).bearer_auth(token).json(&body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    server.raw(request).await
}

async fn topup(server: &TestServer, token: &str, amount: i64) {
    let reply = post_keyed(
        server,
        "/api/v1/wallet/topups",
        token,
        Some(&plaza_kernel::new_id()),
        json!({"amount": amount, "currency": "USD"}),
    )
    .await;
    assert_eq!(reply.status, 201, "topup: {}", reply.text);
}

/// (available, held) in USD.
async fn balance(server: &TestServer, token: &str) -> (i64, i64) {
    let reply = server.get("/api/v1/wallet", Some(token)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let usd = reply.body["balances"].as_array().unwrap().iter().find(|b| b["currency"] == "USD").unwrap().clone();
    (usd["available"].as_i64().unwrap(), usd["held"].as_i64().unwrap())
}

/// Asserts the admin ledger check passes and returns its document.
async fn assert_ledger_sound(server: &TestServer, auditor_token: &str) -> Value {
    let reply = server.get("/api/v1/admin/ledger/check", Some(auditor_token)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["ok"], true, "{}", reply.text);
    for currency in reply.body["currencies"].as_array().unwrap() {
        assert_eq!(currency["sum"], 0, "{}", reply.text);
    }
    reply.body
}

/// A red packet of `total` USD in `count` shares, `mode` "equal" or "lucky".
fn red_packet(conversation: &str, total: i64, count: i64, mode: &str) -> Value {
    json!({"conversation_id": conversation, "total": {"amount": total, "currency": "USD"}, "count": count, "mode": mode})
}

async fn transfer_body(to: &str, amount: i64) -> Value {
    json!({"to_user_id": to, "amount": amount, "currency": "USD"})
}

async fn topups_and_transfers_move_money_post_into_the_chat_and_show_in_history(db: Db) {
    let server = server(db).await;
    let (auditor, _) = register_auditor(&server).await;
    let [(ann, ann_id), (bob, bob_id)] = server.register_all(["ann", "bob"]).await;
    assert_eq!(balance(&server, &ann).await, (0, 0));

    let reply =
        post_keyed(&server, "/api/v1/wallet/topups", &ann, None, json!({"amount": 10_000, "currency": "USD"})).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["kind"], "topup");
    assert_eq!(reply.body["direction"], "in");
    assert_eq!(reply.body["counterparty"], "funding");
    assert_eq!(balance(&server, &ann).await, (10_000, 0));

    let conversation = server.conversation(&ann, "direct", &[&bob_id]).await;
    let reply = post_keyed(
        &server,
        "/api/v1/wallet/transfers",
        &ann,
        Some("t-1"),
        json!({"to_user_id": bob_id, "amount": 2_500, "currency": "USD", "note": "lunch 🍜", "conversation_id": conversation}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let transfer = reply.body.clone();
    assert_eq!(transfer["from_user_id"], ann_id.as_str());
    assert_eq!(transfer["to_user_id"], bob_id.as_str());
    assert_eq!(transfer["amount"], 2_500);
    assert_eq!(transfer["note"], "lunch 🍜");
    assert!(transfer["message_id"].is_string());
    assert_eq!(balance(&server, &ann).await, (7_500, 0));
    assert_eq!(balance(&server, &bob).await, (2_500, 0));

    // The chat shows one `transfer` message, to both members.
    let history = server.get(&format!("/api/v1/conversations/{conversation}/messages"), Some(&bob)).await;
    let messages = history.body["items"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{}", history.text);
    assert_eq!(messages[0]["kind"], "transfer");
    assert_eq!(messages[0]["id"], transfer["message_id"]);
    assert_eq!(messages[0]["body"]["transfer_id"], transfer["id"]);
    assert_eq!(messages[0]["body"]["amount"], 2_500);

    // Both sides learn of it through `wallet.updated`.
    for (token, available) in [(&ann, 7_500), (&bob, 2_500)] {
        let events = server.get("/api/v1/events?after=0", Some(token)).await;
        let updates: Vec<&Value> =
            events.body["items"].as_array().unwrap().iter().filter(|e| e["type"] == "wallet.updated").collect();
        let last = updates.last().unwrap_or_else(|| panic!("no wallet.updated: {}", events.text));
        assert_eq!(last["data"]["available"], available, "{}", events.text);
        assert_eq!(last["data"]["currency"], "USD");
    }

    // History: newest first, with the counterparty and the reference.
    let history = server.get("/api/v1/wallet/transactions", Some(&ann)).await;
    let items = history.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{}", history.text);
    assert_eq!(items[0]["kind"], "transfer");
    assert_eq!(items[0]["direction"], "out");
    assert_eq!(items[0]["counterparty"], "user");
    assert_eq!(items[0]["counterparty_user_id"], bob_id.as_str());
    assert_eq!(items[0]["reference"], format!("transfer:{}", transfer["id"].as_str().unwrap()));
    assert_eq!(items[0]["note"], "lunch 🍜");
    assert_eq!(items[1]["kind"], "topup");
    let bobs = server.get("/api/v1/wallet/transactions", Some(&bob)).await;
    assert_eq!(bobs.body["items"][0]["direction"], "in");
    assert_eq!(bobs.body["items"][0]["counterparty_user_id"], ann_id.as_str());

    // Paging: one at a time, newest first, no repeats.
    let first = server.get("/api/v1/wallet/transactions?limit=1", Some(&ann)).await;
    assert_eq!(first.body["items"][0]["kind"], "transfer");
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = server.get(&format!("/api/v1/wallet/transactions?limit=1&cursor={cursor}"), Some(&ann)).await;
    assert_eq!(second.body["items"][0]["kind"], "topup");
    assert_eq!(second.body["next_cursor"], Value::Null);

    // A withdrawal goes out through the same provider.
    let reply =
        post_keyed(&server, "/api/v1/wallet/withdrawals", &bob, Some("w-1"), json!({"amount": 500, "currency": "USD"}))
            .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["direction"], "out");
    assert_eq!(balance(&server, &bob).await, (2_000, 0));
    assert_ledger_sound(&server, &auditor).await;
}

async fn a_retried_transfer_moves_money_once_and_a_reused_key_is_refused(db: Db) {
    let server = server(db).await;
    let (auditor, _) = register_auditor(&server).await;
    let [(ann, _), (bob, bob_id)] = server.register_all(["ann", "bob"]).await;
    topup(&server, &ann, 1_000).await;
    let conversation = server.conversation(&ann, "direct", &[&bob_id]).await;
    let body = json!({"to_user_id": bob_id, "amount": 300, "currency": "USD", "conversation_id": conversation});

    let first = post_keyed(&server, "/api/v1/wallet/transfers", &ann, Some("pay-bob-1"), body.clone()).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.header("idempotent-replayed"), None);
    for _ in 0..3 {
        let retry = post_keyed(&server, "/api/v1/wallet/transfers", &ann, Some("pay-bob-1"), body.clone()).await;
        assert_eq!(retry.status, 201, "{}", retry.text);
        assert_eq!(retry.body, first.body, "a retry returns the first response");
        assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    }
    assert_eq!(balance(&server, &ann).await, (700, 0));
    assert_eq!(balance(&server, &bob).await, (300, 0));
    let history = server.get(&format!("/api/v1/conversations/{conversation}/messages"), Some(&ann)).await;
    assert_eq!(history.body["items"].as_array().unwrap().len(), 1, "one message: {}", history.text);

    // The same key with another body is refused and moves nothing.
    let mut other = body.clone();
    other["amount"] = json!(301);
    post_keyed(&server, "/api/v1/wallet/transfers", &ann, Some("pay-bob-1"), other)
        .await
        .assert_problem(422, "idempotency_key_reused");
    // The same key on another endpoint is also another request.
    post_keyed(&server, "/api/v1/wallet/topups", &ann, Some("pay-bob-1"), json!({"amount": 1, "currency": "USD"}))
        .await
        .assert_problem(422, "idempotency_key_reused");
    // Keys belong to their user: bob may use the same string for his own request.
    let bobs =
        post_keyed(&server, "/api/v1/wallet/topups", &bob, Some("pay-bob-1"), json!({"amount": 5, "currency": "USD"}))
            .await;
    assert_eq!(bobs.status, 201, "{}", bobs.text);
    assert_eq!(balance(&server, &ann).await, (700, 0));
    assert_eq!(balance(&server, &bob).await, (305, 0));
    assert_ledger_sound(&server, &auditor).await;
}

async fn concurrent_duplicates_of_one_transfer_move_money_once(db: Db) {
    let server = Arc::new(server(db).await);
    let (auditor, _) = register_auditor(&server).await;
    let [(ann, _), (bob, bob_id)] = server.register_all(["ann", "bob"]).await;
    topup(&server, &ann, 1_000).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (server, ann, bob_id) = (server.clone(), ann.clone(), bob_id.clone());
        tasks.push(tokio::spawn(async move {
            post_keyed(&server, "/api/v1/wallet/transfers", &ann, Some("same-key"), transfer_body(&bob_id, 400).await)
                .await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 201, "{}", reply.text);
        ids.insert(reply.body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "every duplicate answered with the one transfer");
    assert_eq!(balance(&server, &ann).await, (600, 0));
    assert_eq!(balance(&server, &bob).await, (400, 0));
    assert_ledger_sound(&server, &auditor).await;
}

async fn concurrent_random_transfers_never_overdraw_and_keep_the_ledger_balanced(db: Db) {
    let server = Arc::new(server(db).await);
    let (auditor, _) = register_auditor(&server).await;
    let mut people = Vec::new();
    for name in ["ann", "bob", "cat", "dan"] {
        let (token, id) = server.register(name).await;
        topup(&server, &token, 1_000).await;
        people.push((token, id));
    }
    let people = Arc::new(people);
    let mut next = support::xorshift(0x2545_f491_4f6c_dd1d);
    let mut tasks = Vec::new();
    for n in 0..300 {
        let from = (next() % 4) as usize;
        let to = (from + 1 + (next() % 3) as usize) % 4;
        let amount = 1 + (next() % 400) as i64;
        let (server, people) = (server.clone(), people.clone());
        tasks.push(tokio::spawn(async move {
            let body = transfer_body(&people[to].1, amount).await;
            let reply =
                post_keyed(&server, "/api/v1/wallet/transfers", &people[from].0, Some(&format!("r-{n}")), body).await;
            (from, to, amount, reply)
        }));
    }
    let mut expected = [1_000_i64; 4];
    let (mut sent, mut refused) = (0, 0);
    for task in tasks {
        let (from, to, amount, reply) = task.await.unwrap();
        match reply.status {
            201 => {
                expected[from] -= amount;
                expected[to] += amount;
                sent += 1;
            }
            402 => {
                reply.assert_problem(402, "insufficient_funds");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    assert!(sent > 0 && sent + refused == 300);
    for (index, (token, _)) in people.iter().enumerate() {
        let (available, held) = balance(&server, token).await;
        assert!(available >= 0);
        assert_eq!((available, held), (expected[index], 0), "person {index}");
        // Batched transfers send one `wallet.updated` per person per batch; whatever was
        // folded together, the newest event says where the wallet now stands.
        let mut newest = None;
        let mut after = "0".to_string();
        loop {
            let page = server.get(&format!("/api/v1/events?after={after}&limit=200"), Some(token)).await;
            let items = page.body["items"].as_array().unwrap();
            newest = items.iter().rev().find(|e| e["type"] == "wallet.updated").cloned().or(newest);
            match page.body["next_cursor"].as_str() {
                Some(next) => after = next.to_string(),
                None => break,
            }
        }
        let newest = newest.unwrap_or_else(|| panic!("person {index} has no wallet.updated"));
        assert_eq!((newest["data"]["available"].as_i64(), newest["data"]["held"].as_i64()), (Some(available), Some(0)));
    }
    assert_eq!(expected.iter().sum::<i64>(), 4_000);
    assert_ledger_sound(&server, &auditor).await;
}

/// A group of `owner`'s, who first befriends each member (only contacts are added).
async fn group_with(server: &TestServer, owner: &(String, String), members: &[(String, String)]) -> String {
    for member in members {
        server.befriend(owner, member).await;
    }
    let member_ids: Vec<&str> = members.iter().map(|(_, id)| id.as_str()).collect();
    let reply = server
        .post(
            "/api/v1/conversations",
            Some(&owner.0),
            json!({"kind": "group", "member_ids": member_ids, "title": "Party"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.body["id"].as_str().unwrap().to_string()
}

async fn concurrent_red_packet_claims_hand_out_exactly_the_shares(db: Db) {
    let server = Arc::new(server(db).await);
    let (auditor, _) = register_auditor(&server).await;
    let ann_account = server.register("ann").await;
    let (ann, ann_id) = ann_account.clone();
    let mut members = Vec::new();
    for name in ["bob", "cat", "dan", "eve", "fay", "gus"] {
        members.push(server.register(name).await);
    }
    topup(&server, &ann, 1_000).await;
    let group = group_with(&server, &ann_account, &members).await;
    let reply = post_keyed(
        &server,
        "/api/v1/red-packets",
        &ann,
        Some("packet-1"),
        json!({"conversation_id": group, "total": {"amount": 1_000, "currency": "USD"}, "count": 4, "mode": "lucky", "greeting": "恭喜发财"}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let packet_id = reply.body["id"].as_str().unwrap().to_string();
    assert_eq!(reply.body["count"], 4);
    assert_eq!(reply.body["total"], json!({"amount": 1_000, "currency": "USD"}));
    assert_eq!(balance(&server, &ann).await, (0, 0));
    let history = server.get(&format!("/api/v1/conversations/{group}/messages"), Some(&members[0].0)).await;
    let last = history.body["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "red_packet");
    assert_eq!(last["body"]["red_packet_id"], packet_id.as_str());

    // Six members claim at once, each twice: four shares exist, and nobody gets two.
    let mut tasks = Vec::new();
    for (token, id) in &members {
        for _ in 0..2 {
            let (server, token, id, packet_id) = (server.clone(), token.clone(), id.clone(), packet_id.clone());
            tasks.push(tokio::spawn(async move {
                (id, server.post(&format!("/api/v1/red-packets/{packet_id}/claim"), Some(&token), json!({})).await)
            }));
        }
    }
    let mut won: HashMap<String, i64> = HashMap::new();
    let mut codes: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        let (id, reply) = task.await.unwrap();
        if reply.status == 200 {
            assert!(won.insert(id, reply.body["amount"].as_i64().unwrap()).is_none(), "one share per person");
            assert_eq!(reply.body["currency"], "USD");
        } else {
            assert_eq!(reply.status, 409, "{}", reply.text);
            *codes.entry(reply.body["code"].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    assert_eq!(won.len(), 4, "exactly the four shares: {won:?} {codes:?}");
    assert_eq!(won.values().sum::<i64>(), 1_000);
    assert!(won.values().all(|amount| *amount >= 1));
    assert_eq!(codes.values().sum::<usize>(), 8);
    assert!(codes.keys().all(|code| code == "red_packet_empty" || code == "already_claimed"), "{codes:?}");

    // What each member sees matches what each was told.
    for (token, id) in &members {
        let expected = won.get(id).copied().unwrap_or(0);
        assert_eq!(balance(&server, token).await, (expected, 0));
    }
    let packet = server.get(&format!("/api/v1/red-packets/{packet_id}"), Some(&ann)).await;
    assert_eq!(packet.body["claimed_count"], 4);
    assert_eq!(packet.body["claimed_amount"], 1_000);
    assert_eq!(packet.body["claims"].as_array().unwrap().len(), 4);
    // A late claimer is told it is empty; a winner is told they already claimed.
    let (late, _) = members.iter().find(|(_, id)| !won.contains_key(id)).unwrap();
    server
        .post(&format!("/api/v1/red-packets/{packet_id}/claim"), Some(late), json!({}))
        .await
        .assert_problem(409, "red_packet_empty");
    let (winner, _) = members.iter().find(|(_, id)| won.contains_key(id)).unwrap();
    server
        .post(&format!("/api/v1/red-packets/{packet_id}/claim"), Some(winner), json!({}))
        .await
        .assert_problem(409, "already_claimed");

    // The sender hears of every claim.
    let events = server.get("/api/v1/events?after=0", Some(&ann)).await;
    let claimed = events.body["items"].as_array().unwrap().iter().filter(|e| e["type"] == "red_packet.claimed").count();
    assert_eq!(claimed, 4, "{}", events.text);
    let _ = ann_id;
    assert_ledger_sound(&server, &auditor).await;
}

async fn a_lucky_red_packet_splits_exactly_and_a_retried_claim_returns_the_same_share(db: Db) {
    let server = server(db).await;
    let (auditor, _) = register_auditor(&server).await;
    let [(ann, _), (bob, bob_id)] = server.register_all(["ann", "bob"]).await;
    topup(&server, &ann, 500).await;
    let direct = server.conversation(&ann, "direct", &[&bob_id]).await;
    let body = red_packet(&direct, 101, 100, "equal");
    let packet = post_keyed(&server, "/api/v1/red-packets", &ann, Some("rp"), body.clone()).await;
    assert_eq!(packet.status, 201, "{}", packet.text);
    let again = post_keyed(&server, "/api/v1/red-packets", &ann, Some("rp"), body).await;
    assert_eq!(again.body["id"], packet.body["id"], "a retried red packet is the same packet");
    assert_eq!(balance(&server, &ann).await, (399, 0));
    let id = packet.body["id"].as_str().unwrap();
    let path = format!("/api/v1/red-packets/{id}/claim");
    let first = post_keyed(&server, &path, &bob, Some("claim-1"), json!({})).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let retry = post_keyed(&server, &path, &bob, Some("claim-1"), json!({})).await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(retry.body, first.body);
    let amount = first.body["amount"].as_i64().unwrap();
    assert!(amount == 1 || amount == 2, "equal shares of 101 in 100 are 1 or 2: {amount}");
    assert_eq!(balance(&server, &bob).await, (amount, 0));
    // In a direct chat the packet is for the other person: the sender may not claim it.
    server.post(&path, Some(&ann), json!({})).await.assert_problem(403, "own_red_packet");
    assert_ledger_sound(&server, &auditor).await;
}

async fn in_a_direct_chat_only_the_other_person_may_claim_a_red_packet(db: Db) {
    let server = server(db).await;
    let (auditor, _) = register_auditor(&server).await;
    let ann_account = server.register("ann").await;
    let ann = ann_account.0.clone();
    let bob_account = server.register("bob").await;
    let (bob, bob_id) = bob_account.clone();
    let cat_account = server.register("cat").await;
    topup(&server, &ann, 1_000).await;
    let direct = server.conversation(&ann, "direct", &[&bob_id]).await;
    let one_share = |conversation: &str| red_packet(conversation, 300, 1, "equal");
    let packet = post_keyed(&server, "/api/v1/red-packets", &ann, None, one_share(&direct)).await;
    assert_eq!(packet.status, 201, "{}", packet.text);
    let path = format!("/api/v1/red-packets/{}/claim", packet.body["id"].as_str().unwrap());
    // The sender's claim is refused and takes nothing: the only share is still there for bob.
    server.post(&path, Some(&ann), json!({})).await.assert_problem(403, "own_red_packet");
    assert_eq!(balance(&server, &ann).await, (700, 0));
    let claimed = server.post(&path, Some(&bob), json!({})).await;
    assert_eq!(claimed.status, 200, "{}", claimed.text);
    assert_eq!(claimed.body["amount"], 300);
    assert_eq!(balance(&server, &bob).await, (300, 0));

    // In a group the sender may claim a share, as in WeChat.
    let group = group_with(&server, &ann_account, &[bob_account.clone(), cat_account]).await;
    let packet = post_keyed(&server, "/api/v1/red-packets", &ann, None, one_share(&group)).await;
    assert_eq!(packet.status, 201, "{}", packet.text);
    let own = server
        .post(&format!("/api/v1/red-packets/{}/claim", packet.body["id"].as_str().unwrap()), Some(&ann), json!({}))
        .await;
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(balance(&server, &ann).await, (700, 0));
    assert_ledger_sound(&server, &auditor).await;
}

/// The `system` messages of a conversation after `after_seq`, as a member sees them.
async fn system_lines(server: &TestServer, token: &str, conversation: &str, after_seq: i64) -> Vec<Value> {
    let history =
        server.get(&format!("/api/v1/conversations/{conversation}/messages?after_seq={after_seq}"), Some(token)).await;
    assert_eq!(history.status, 200, "{}", history.text);
    history.body["items"].as_array().unwrap().iter().filter(|m| m["kind"] == "system").cloned().collect()
}

async fn last_seq(server: &TestServer, token: &str, conversation: &str) -> i64 {
    let history = server.get(&format!("/api/v1/conversations/{conversation}/messages?limit=1"), Some(token)).await;
    history.body["items"][0]["seq"].as_i64().unwrap()
}

async fn a_claim_tells_the_chat_who_opened_the_packet_and_a_big_packet_only_when_all_are_taken(db: Db) {
    let server = server(db).await;
    let (auditor, _) = register_auditor(&server).await;
    let ann_account = server.register("ann").await;
    let (ann, ann_id) = ann_account.clone();
    let mut members = Vec::new();
    for name in ["bob", "cat", "dan", "eve"] {
        members.push(server.register(name).await);
    }
    topup(&server, &ann, 10_000).await;
    let packet = |conversation: &str, count: i64| red_packet(conversation, 400, count, "equal");

    // A direct chat: the other person opens it, and the chat says so, once however often
    // the claim is retried.
    let (bob, bob_id) = members[0].clone();
    let direct = server.conversation(&ann, "direct", &[&bob_id]).await;
    let sent = post_keyed(&server, "/api/v1/red-packets", &ann, None, packet(&direct, 1)).await;
    assert_eq!(sent.status, 201, "{}", sent.text);
    let direct_id = sent.body["id"].as_str().unwrap().to_string();
    let before = last_seq(&server, &ann, &direct).await;
    let claim = format!("/api/v1/red-packets/{direct_id}/claim");
    for _ in 0..2 {
        assert_eq!(post_keyed(&server, &claim, &bob, Some("bob-claim"), json!({})).await.status, 200);
    }
    let lines = system_lines(&server, &ann, &direct, before).await;
    assert_eq!(lines.len(), 1, "one line for one claim: {lines:?}");
    assert_eq!(lines[0]["sender_id"], bob_id.as_str());
    assert_eq!(
        lines[0]["body"],
        json!({"event": "red_packet_claimed", "actor_id": bob_id, "owner_id": ann_id, "red_packet_id": direct_id})
    );
    // Ann hears of it as a new message in her chat, unread until she reads it.
    let listing = server.get("/api/v1/conversations", Some(&ann)).await;
    let row = listing.body["items"].as_array().unwrap().iter().find(|c| c["id"] == direct.as_str()).unwrap().clone();
    assert_eq!(row["last_message"]["body"]["event"], "red_packet_claimed");
    assert_eq!(row["unread_count"], 1);

    // A small group's small packet: a line for each claim.
    let group = group_with(&server, &ann_account, &members).await;
    let small = post_keyed(&server, "/api/v1/red-packets", &ann, None, packet(&group, 2)).await;
    let small_id = small.body["id"].as_str().unwrap().to_string();
    let before = last_seq(&server, &ann, &group).await;
    for (token, _) in &members[..2] {
        let reply = server.post(&format!("/api/v1/red-packets/{small_id}/claim"), Some(token), json!({})).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let lines = system_lines(&server, &members[3].0, &group, before).await;
    let actors: Vec<&str> = lines.iter().map(|line| line["body"]["actor_id"].as_str().unwrap()).collect();
    assert_eq!(actors, [members[0].1.as_str(), members[1].1.as_str()]);
    assert!(lines.iter().all(|line| line["body"]["event"] == "red_packet_claimed"));

    // A packet with more shares than that: nothing per claim, one line when the last goes.
    let big = post_keyed(&server, "/api/v1/red-packets", &ann, None, packet(&group, 5)).await;
    let big_id = big.body["id"].as_str().unwrap().to_string();
    let before = last_seq(&server, &ann, &group).await;
    let claimers: Vec<&str> = members.iter().map(|(token, _)| token.as_str()).chain([ann.as_str()]).collect();
    for (n, token) in claimers.iter().enumerate() {
        let reply = server.post(&format!("/api/v1/red-packets/{big_id}/claim"), Some(token), json!({})).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let lines = system_lines(&server, &ann, &group, before).await;
        if n + 1 < claimers.len() {
            assert!(lines.is_empty(), "no line for claim {}: {lines:?}", n + 1);
        } else {
            assert_eq!(lines.len(), 1, "{lines:?}");
            let body = &lines[0]["body"];
            assert_eq!(body["event"], "red_packet_finished");
            assert_eq!(body["owner_id"], ann_id.as_str());
            assert_eq!(body["actor_id"], ann_id.as_str(), "the last share was the sender's own");
            assert_eq!(body["red_packet_id"], big_id.as_str());
            assert_eq!(body["count"], 5);
            assert!(body["seconds"].as_i64().unwrap() >= 0);
        }
    }
    assert_ledger_sound(&server, &auditor).await;
}

async fn unclaimed_red_packet_money_returns_once_even_with_two_nodes_refunding(db: Db) {
    let quick = |config: &mut plaza_server::config::Config| {
        config.red_packet_refund_after = Duration::from_secs(1);
        config.wallet_job_interval = Duration::from_millis(50);
    };
    // The database outlives the nodes (a SQLite file lives in this directory).
    let database_dir = tempfile::tempdir().unwrap();
    let database_url = support::fresh_database(db, database_dir.path()).await;
    let first = TestServer::start_on(&database_url, quick).await;
    // A second node on the same database runs the same refund job at the same time.
    let second = TestServer::start_on(&first.database_url, quick).await;
    let (auditor, _) = register_auditor(&first).await;
    let [(ann, _), (bob, bob_id)] = first.register_all(["ann", "bob"]).await;
    topup(&first, &ann, 1_000).await;
    let direct = first.conversation(&ann, "direct", &[&bob_id]).await;
    let reply = post_keyed(&first, "/api/v1/red-packets", &ann, None, red_packet(&direct, 600, 3, "equal")).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let id = reply.body["id"].as_str().unwrap().to_string();
    let claim = first.post(&format!("/api/v1/red-packets/{id}/claim"), Some(&bob), json!({})).await;
    assert_eq!(claim.status, 200, "{}", claim.text);
    assert_eq!(claim.body["amount"], 200);

    // Wait (with a deadline) until a node has refunded it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let packet = loop {
        let packet = second.get(&format!("/api/v1/red-packets/{id}"), Some(&ann)).await;
        if packet.body["refunded_at"].is_string() {
            break packet;
        }
        assert!(tokio::time::Instant::now() < deadline, "no refund: {}", packet.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(packet.body["refunded_amount"], 400);
    // Let both jobs run several more times; nothing more moves. Each round sends a one-cent
    // sentinel packet, backdates it, and waits (with a deadline) until a job has refunded
    // it: proof that a job ran again, without guessing how long that takes.
    let mut database = first.database().await;
    for _ in 0..5 {
        let before = balance(&first, &ann).await;
        let sentinel = post_keyed(&first, "/api/v1/red-packets", &ann, None, red_packet(&direct, 1, 1, "equal")).await;
        assert_eq!(sentinel.status, 201, "{}", sentinel.text);
        let sentinel_id = sentinel.body["id"].as_str().unwrap().to_string();
        sqlx::query("UPDATE wallet_red_packets SET expires_at = 0 WHERE id = $1")
            .bind(&sentinel_id)
            .execute(&mut database)
            .await
            .unwrap();
        wait_until_refunded(&second, &ann, &sentinel_id).await;
        assert_eq!(balance(&second, &ann).await, before);
    }
    assert_eq!(balance(&first, &ann).await, (800, 0));
    let history = first.get("/api/v1/wallet/transactions", Some(&ann)).await;
    let reference = format!("red_packet:{id}");
    let refunds = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "red_packet_refund" && e["reference"] == reference.as_str())
        .count();
    assert_eq!(refunds, 1, "{}", history.text);
    first
        .post(&format!("/api/v1/red-packets/{id}/claim"), Some(&ann), json!({}))
        .await
        .assert_problem(409, "red_packet_expired");
    assert_ledger_sound(&first, &auditor).await;

    // A node started after a stop picks up what is due (the job is durable, in the table).
    let late = post_keyed(&first, "/api/v1/red-packets", &ann, None, red_packet(&direct, 100, 1, "lucky")).await;
    assert_eq!(late.status, 201, "{}", late.text);
    drop(database);
    second.stop().await;
    first.stop().await;
    // The packet expires while no node runs: backdated, rather than waited for.
    let mut database = {
        sqlx::any::install_default_drivers();
        <sqlx::AnyConnection as sqlx::Connection>::connect(&database_url).await.unwrap()
    };
    sqlx::query("UPDATE wallet_red_packets SET expires_at = 0 WHERE id = $1")
        .bind(late.body["id"].as_str().unwrap())
        .execute(&mut database)
        .await
        .unwrap();
    drop(database);
    let restarted = TestServer::start_on(&database_url, quick).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while balance(&restarted, &ann).await != (800, 0) {
        assert!(tokio::time::Instant::now() < deadline, "the restarted node did not refund");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ledger_sound(&restarted, &auditor).await;
}

/// Waits, with a deadline, until a node has refunded red packet `id`.
async fn wait_until_refunded(server: &TestServer, token: &str, id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let packet = server.get(&format!("/api/v1/red-packets/{id}"), Some(token)).await;
        if packet.body["refunded_at"].is_string() {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no refund: {}", packet.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn bad_inputs_are_answered_with_their_codes_and_move_nothing(db: Db) {
    let server = server(db).await;
    let (auditor, _) = register_auditor(&server).await;
    let [(ann, ann_id), (bob, bob_id), (cat, cat_id)] = server.register_all(["ann", "bob", "cat"]).await;
    topup(&server, &ann, 1_000).await;
    let transfers = "/api/v1/wallet/transfers";

    let field_cases = [
        (json!({"to_user_id": bob_id, "amount": 12.5, "currency": "USD"}), "amount"),
        (json!({"to_user_id": bob_id, "amount": "100", "currency": "USD"}), "amount"),
        (json!({"to_user_id": bob_id, "amount": 1e3, "currency": "USD"}), "amount"),
        (json!({"to_user_id": bob_id, "amount": 0, "currency": "USD"}), "amount"),
        (json!({"to_user_id": bob_id, "amount": -5, "currency": "USD"}), "amount"),
        (json!({"to_user_id": bob_id, "amount": 1_000_000_000_001_i64, "currency": "USD"}), "amount"),
        (json!({"to_user_id": bob_id, "amount": 10, "currency": "EUR"}), "currency"),
        (json!({"to_user_id": bob_id, "amount": 10, "currency": "usd"}), "currency"),
        (json!({"to_user_id": bob_id, "currency": "USD"}), "amount"),
        (json!({"to_user_id": ann_id, "amount": 10, "currency": "USD"}), "to_user_id"),
        (json!({"to_user_id": bob_id, "amount": 10, "currency": "USD", "note": "x".repeat(201)}), "note"),
    ];
    for (body, field) in field_cases {
        let reply = post_keyed(&server, transfers, &ann, None, body.clone()).await;
        reply.assert_problem(422, "invalid_field");
        assert_eq!(reply.body["field"], field, "{body}: {}", reply.text);
    }
    post_keyed(&server, transfers, &ann, None, json!({"to_user_id": "01NOBODY", "amount": 10, "currency": "USD"}))
        .await
        .assert_problem(404, "user_not_found");
    post_keyed(&server, transfers, &ann, None, transfer_body(&bob_id, 1_001).await)
        .await
        .assert_problem(402, "insufficient_funds");
    post_keyed(&server, transfers, &ann, Some(&"k".repeat(129)), transfer_body(&bob_id, 1).await)
        .await
        .assert_problem(422, "invalid_field");
    // A conversation the sender is not in, and one the recipient is not in.
    let bob_cat = server.conversation(&bob, "direct", &[&cat_id]).await;
    let mut body = transfer_body(&bob_id, 10).await;
    body["conversation_id"] = json!(bob_cat);
    post_keyed(&server, transfers, &ann, None, body).await.assert_problem(404, "conversation_not_found");
    let ann_cat = server.conversation(&ann, "direct", &[&cat_id]).await;
    let mut body = transfer_body(&bob_id, 10).await;
    body["conversation_id"] = json!(ann_cat);
    post_keyed(&server, transfers, &ann, None, body).await.assert_problem(404, "not_a_member");

    // Top-ups: a daily limit (10,000.00 by default).
    let topups = "/api/v1/wallet/topups";
    post_keyed(&server, topups, &ann, None, json!({"amount": 1_000_001, "currency": "USD"}))
        .await
        .assert_problem(422, "topup_limit_exceeded");
    let reply = post_keyed(&server, topups, &ann, None, json!({"amount": 999_000, "currency": "USD"})).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    post_keyed(&server, topups, &ann, None, json!({"amount": 1, "currency": "USD"}))
        .await
        .assert_problem(422, "topup_limit_exceeded");
    post_keyed(&server, topups, &ann, None, json!({"amount": 5.0, "currency": "USD"}))
        .await
        .assert_problem(422, "invalid_field");
    assert_eq!(balance(&server, &ann).await, (1_000_000, 0));

    // Red packets.
    let packets = "/api/v1/red-packets";
    let packet = |count: Value, amount: Value, mode: &str| json!({"conversation_id": ann_cat, "total": {"amount": amount, "currency": "USD"}, "count": count, "mode": mode});
    for (body, field) in [
        (packet(json!(0), json!(100), "lucky"), "count"),
        (packet(json!(101), json!(1_000), "lucky"), "count"),
        (packet(json!(5), json!(4), "equal"), "total.amount"),
        (packet(json!(5), json!(0), "equal"), "total.amount"),
        (packet(json!(5), json!(10.5), "equal"), "total.amount"),
        (packet(json!(2), json!(100), "big"), "mode"),
        (
            json!({"conversation_id": ann_cat, "total": {"amount": 100, "currency": "JPY"}, "count": 1, "mode": "lucky"}),
            "total.currency",
        ),
    ] {
        let reply = post_keyed(&server, packets, &ann, None, body.clone()).await;
        reply.assert_problem(422, "invalid_field");
        assert_eq!(reply.body["field"], field, "{body}: {}", reply.text);
    }
    post_keyed(&server, packets, &ann, None, red_packet(&bob_cat, 10, 1, "lucky"))
        .await
        .assert_problem(404, "conversation_not_found");
    post_keyed(&server, packets, &ann, None, packet(json!(2), json!(2_000_000), "lucky"))
        .await
        .assert_problem(402, "insufficient_funds");
    let reply = post_keyed(&server, packets, &ann, None, packet(json!(2), json!(100), "lucky")).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let id = reply.body["id"].as_str().unwrap();
    // Someone outside the conversation cannot see or claim it.
    server
        .post(&format!("{packets}/{id}/claim"), Some(&bob), json!({}))
        .await
        .assert_problem(404, "red_packet_not_found");
    server.get(&format!("{packets}/{id}"), Some(&bob)).await.assert_problem(404, "red_packet_not_found");
    server
        .post(&format!("{packets}/nope/claim"), Some(&bob), json!({}))
        .await
        .assert_problem(404, "red_packet_not_found");

    // PINs are six digits.
    for pin in [json!("12345"), json!("abcdef"), json!(123456)] {
        server.post("/api/v1/wallet/pin", Some(&cat), json!({"pin": pin})).await.assert_problem(422, "invalid_field");
    }
    server.get("/api/v1/admin/ledger/check", Some(&ann)).await.assert_problem(403, "forbidden");
    server.get("/api/v1/wallet", None).await.assert_problem(401, "unauthenticated");
    assert_eq!(balance(&server, &ann).await, (999_900, 0));
    assert_eq!(balance(&server, &bob).await, (0, 0));
    assert_ledger_sound(&server, &auditor).await;
}

async fn a_pin_guards_payments_and_five_wrong_answers_lock_them(db: Db) {
    let server = server(db).await;
    let [(ann, _), (_, bob_id)] = server.register_all(["ann", "bob"]).await;
    topup(&server, &ann, 1_000).await;
    let reply = server.post("/api/v1/wallet/pin", Some(&ann), json!({"pin": "024680"})).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let transfers = "/api/v1/wallet/transfers";
    let with_pin = |pin: Option<&str>| {
        let mut body = json!({"to_user_id": bob_id, "amount": 10, "currency": "USD"});
        if let Some(pin) = pin {
            body["pin"] = json!(pin);
        }
        body
    };
    post_keyed(&server, transfers, &ann, None, with_pin(None)).await.assert_problem(403, "pin_required");
    let ok = post_keyed(&server, transfers, &ann, None, with_pin(Some("024680"))).await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    // Replacing needs the current PIN.
    server.post("/api/v1/wallet/pin", Some(&ann), json!({"pin": "111111"})).await.assert_problem(422, "invalid_field");
    for _ in 0..4 {
        post_keyed(&server, transfers, &ann, None, with_pin(Some("999999"))).await.assert_problem(403, "wrong_pin");
    }
    let locked = post_keyed(&server, transfers, &ann, None, with_pin(Some("999999"))).await;
    locked.assert_problem(403, "pin_locked");
    assert!(locked.header("retry-after").is_some());
    // Locked: even the right PIN is refused, and nothing moves.
    post_keyed(&server, transfers, &ann, None, with_pin(Some("024680"))).await.assert_problem(403, "pin_locked");
    post_keyed(&server, "/api/v1/wallet/topups", &ann, None, json!({"amount": 1, "currency": "USD", "pin": "024680"}))
        .await
        .assert_problem(403, "pin_locked");
    assert_eq!(balance(&server, &ann).await, (990, 0));

    // After the lock (moved into the past here), the right PIN works and wrong answers
    // count from zero again.
    let mut database = server.database().await;
    sqlx::query("UPDATE wallet_pins SET locked_until = 0").execute(&mut database).await.unwrap();
    let ok = post_keyed(&server, transfers, &ann, None, with_pin(Some("024680"))).await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    post_keyed(&server, transfers, &ann, None, with_pin(Some("999999"))).await.assert_problem(403, "wrong_pin");
    let replaced =
        server.post("/api/v1/wallet/pin", Some(&ann), json!({"pin": "111111", "current_pin": "024680"})).await;
    assert_eq!(replaced.status, 204, "{}", replaced.text);
    let ok = post_keyed(&server, transfers, &ann, None, with_pin(Some("111111"))).await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    assert_eq!(balance(&server, &ann).await, (970, 0));
}

async fn a_burst_of_pin_guesses_has_at_most_five_judged_and_then_payments_are_locked(db: Db) {
    let server = Arc::new(server(db).await);
    let [(ann, _), (bob, bob_id)] = server.register_all(["ann", "bob"]).await;
    topup(&server, &ann, 1_000).await;
    let reply = server.post("/api/v1/wallet/pin", Some(&ann), json!({"pin": "024680"})).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let guess = |pin: &str| {
        let (server, ann, body) =
            (server.clone(), ann.clone(), json!({"to_user_id": bob_id, "amount": 10, "currency": "USD", "pin": pin}));
        tokio::spawn(async move { post_keyed(&server, "/api/v1/wallet/transfers", &ann, None, body).await })
    };

    // Four wrong answers leave one attempt before the lock.
    for attempts_left in [4, 3, 2, 1] {
        let reply = guess("999999").await.unwrap();
        reply.assert_problem(403, "wrong_pin");
        assert!(reply.text.contains(&format!("{attempts_left} more")), "{}", reply.text);
    }
    // Then thirty wrong guesses and three right ones at once. Each guess takes an attempt
    // before its (slow) hash check, so exactly one of them is judged: if it is wrong it
    // locks payments, if it is right it pays. Every other guess is refused as locked
    // unjudged, the right ones too.
    let burst: Vec<_> = (0..33).map(|n| guess(if n % 11 == 5 { "024680" } else { "999999" })).collect();
    let mut paid = 0;
    let mut codes: HashMap<String, usize> = HashMap::new();
    for task in burst {
        let reply = task.await.unwrap();
        if reply.status == 201 {
            paid += 1;
            continue;
        }
        assert_eq!(reply.status, 403, "{}", reply.text);
        *codes.entry(reply.body["code"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert!(paid <= 1, "a right guess got through after the fifth wrong one: {paid} paid, {codes:?}");
    assert_eq!(balance(&server, &ann).await, (1_000 - 10 * paid, 0));
    assert_eq!(balance(&server, &bob).await, (10 * paid, 0));
    if paid == 0 {
        // The judged guess was wrong: nothing else was judged, and payments are locked.
        assert_eq!(codes.get("pin_locked").copied(), Some(33), "{codes:?}");
        guess("024680").await.unwrap().assert_problem(403, "pin_locked");
        assert_eq!(balance(&server, &ann).await, (1_000, 0));
    }
}

async fn setting_or_replacing_the_pin_is_rate_limited_per_user(db: Db) {
    let server = TestServer::start_with(db, |config| config.pin_changes_per_hour = 3).await;
    let [(ann, _), (bob, _)] = server.register_all(["ann", "bob"]).await;
    let pin = "/api/v1/wallet/pin";
    let first = server.post(pin, Some(&ann), json!({"pin": "024680"})).await;
    assert_eq!(first.status, 204, "{}", first.text);
    let replaced = server.post(pin, Some(&ann), json!({"pin": "111111", "current_pin": "024680"})).await;
    assert_eq!(replaced.status, 204, "{}", replaced.text);
    // A refused replacement (wrong current PIN) counts too: every request costs hashing.
    server
        .post(pin, Some(&ann), json!({"pin": "222222", "current_pin": "000000"}))
        .await
        .assert_problem(403, "wrong_pin");
    let limited = server.post(pin, Some(&ann), json!({"pin": "333333", "current_pin": "111111"})).await;
    limited.assert_problem(429, "rate_limited");
    assert!(limited.header("retry-after").is_some(), "{}", limited.text);
    // Nothing changed: the PIN in force is still 111111.
    let check = server
        .post("/api/v1/wallet/topups", Some(&ann), json!({"amount": 1, "currency": "USD", "pin": "111111"}))
        .await;
    assert_eq!(check.status, 201, "{}", check.text);
    // The limit is per user: bob is not limited by ann's requests.
    let other = server.post(pin, Some(&bob), json!({"pin": "024680"})).await;
    assert_eq!(other.status, 204, "{}", other.text);
}

async fn payment_intents_hold_capture_release_and_refund(db: Db) {
    let server = server(db).await;
    let (auditor, _) = register_auditor(&server).await;
    let [(ann, ann_id), (bob, bob_id)] = server.register_all(["ann", "bob"]).await;
    topup(&server, &ann, 10_000).await;
    // The service API, in-process on the same database, as the rides service will call it.
    let dir = tempfile::tempdir().unwrap();
    let config = plaza_server::config::Config::for_test(dir.path(), Some(server.database_url.clone()));
    let store = plaza_server::app::open_store(&config).await.unwrap();
    let services = plaza_server::app::services(store, plaza_bus::Bus::in_process(), &config).unwrap();
    let wallet = services.wallet;
    let usd = |amount| wallet.money(amount, "USD").unwrap();
    let key = |text: &str| plaza_wallet::model::IdempotencyKey::parse(text).unwrap();

    let (intent, replayed) =
        wallet.create_payment_intent(&ann_id, usd(3_000), "Ride to the station", Some(&key("ride-1"))).await.unwrap();
    assert!(!replayed);
    assert_eq!(intent.status, plaza_wallet::PaymentIntentStatus::Held);
    assert_eq!(balance(&server, &ann).await, (7_000, 3_000));
    let (again, replayed) =
        wallet.create_payment_intent(&ann_id, usd(3_000), "Ride to the station", Some(&key("ride-1"))).await.unwrap();
    assert!(replayed);
    assert_eq!(again.id, intent.id);
    assert_eq!(balance(&server, &ann).await, (7_000, 3_000));
    assert!(matches!(
        wallet.create_payment_intent(&ann_id, usd(7_001), "Too much", None).await,
        Err(plaza_wallet::WalletError::InsufficientFunds { available: 7_000, requested: 7_001 })
    ));

    // Capture less than held, with a fee: the rest goes back to ann.
    assert!(matches!(
        wallet.capture_payment_intent(&intent.id, 3_001, &bob_id, 0, None).await,
        Err(plaza_wallet::WalletError::InvalidField { field: "amount", .. })
    ));
    let (captured, _) =
        wallet.capture_payment_intent(&intent.id, 2_500, &bob_id, 300, Some(&key("cap"))).await.unwrap();
    assert_eq!((captured.captured, captured.fee, captured.held), (2_500, 300, 0));
    let (retried, replayed) =
        wallet.capture_payment_intent(&intent.id, 2_500, &bob_id, 300, Some(&key("cap"))).await.unwrap();
    assert!(replayed);
    assert_eq!(retried, captured);
    assert_eq!(balance(&server, &ann).await, (7_500, 0));
    assert_eq!(balance(&server, &bob).await, (2_200, 0));
    assert!(matches!(
        wallet.void_payment_intent(&intent.id, None).await,
        Err(plaza_wallet::WalletError::InvalidTransition { status: "captured", .. })
    ));

    // Refunds: from the payee's share first, then from the fee; never more than captured.
    let (refunded, _) = wallet.refund_payment_intent(&intent.id, 2_000, Some(&key("refund-1"))).await.unwrap();
    assert_eq!(refunded.refunded, 2_000);
    let (_, replayed) = wallet.refund_payment_intent(&intent.id, 2_000, Some(&key("refund-1"))).await.unwrap();
    assert!(replayed);
    assert_eq!(balance(&server, &ann).await, (9_500, 0));
    assert_eq!(balance(&server, &bob).await, (200, 0));
    let (refunded, _) = wallet.refund_payment_intent(&intent.id, 500, None).await.unwrap();
    assert_eq!(refunded.refunded, 2_500);
    assert_eq!(balance(&server, &ann).await, (10_000, 0));
    assert_eq!(balance(&server, &bob).await, (0, 0));
    assert!(matches!(
        wallet.refund_payment_intent(&intent.id, 1, None).await,
        Err(plaza_wallet::WalletError::InvalidField { field: "amount", .. })
    ));

    // Void releases everything.
    let (second, _) = wallet.create_payment_intent(&ann_id, usd(4_000), "Another ride", None).await.unwrap();
    assert_eq!(balance(&server, &ann).await, (6_000, 4_000));
    let (voided, _) = wallet.void_payment_intent(&second.id, Some(&key("void"))).await.unwrap();
    assert_eq!(voided.status, plaza_wallet::PaymentIntentStatus::Voided);
    assert_eq!(balance(&server, &ann).await, (10_000, 0));
    assert!(matches!(
        wallet.capture_payment_intent(&second.id, 1, &bob_id, 0, None).await,
        Err(plaza_wallet::WalletError::InvalidTransition { status: "voided", .. })
    ));
    assert!(matches!(wallet.payment_intent("nope").await, Err(plaza_wallet::WalletError::PaymentIntentNotFound)));

    // Concurrent captures of one intent: exactly one wins.
    let (third, _) = wallet.create_payment_intent(&ann_id, usd(1_000), "Contested", None).await.unwrap();
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let (wallet, id, bob_id) = (wallet.clone(), third.id.clone(), bob_id.clone());
            tokio::spawn(async move { wallet.capture_payment_intent(&id, 1_000, &bob_id, 0, None).await })
        })
        .collect();
    let mut wins = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => wins += 1,
            Err(plaza_wallet::WalletError::InvalidTransition { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(balance(&server, &ann).await, (9_000, 0));
    assert_eq!(balance(&server, &bob).await, (1_000, 0));
    let check = assert_ledger_sound(&server, &auditor).await;
    assert!(check["accounts_checked"].as_i64().unwrap() >= 5, "{check}");
}

async fn the_ledger_check_is_for_admins_and_the_cli_agrees(db: Db) {
    let server = server(db).await;
    let (auditor, _) = register_auditor(&server).await;
    let [(ann, _), (_, bob_id)] = server.register_all(["ann", "bob"]).await;
    topup(&server, &ann, 5_000).await;
    let reply = post_keyed(&server, "/api/v1/wallet/transfers", &ann, None, transfer_body(&bob_id, 1_234).await).await;
    assert_eq!(reply.status, 201);
    let check = assert_ledger_sound(&server, &auditor).await;
    assert_eq!(check["currencies"], json!([{"currency": "USD", "sum": 0}]));
    assert_eq!(check["accounts_checked"], 3, "ann, bob and the funding source: {check}");

    let cli = |url: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_plaza"));
        for (key, _) in std::env::vars() {
            if key.starts_with("PLAZA_") {
                command.env_remove(key);
            }
        }
        let output = command
            .env("PLAZA_DATA_DIR", dir.path())
            .env("PLAZA_DATABASE_URL", url)
            .env("PLAZA_LOG", "warn")
            .args(["ledger", "check"])
            .output()
            .unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stdout).to_string())
    };
    let (status, stdout) = cli(&server.database_url);
    assert_eq!(status, Some(0), "{stdout}");
    assert!(stdout.contains("ledger OK") && stdout.contains("USD sums to 0"), "{stdout}");

    // Tamper with a balance behind the ledger's back: both the API and the CLI notice.
    server.execute_sql("UPDATE wallet_accounts SET balance = balance + 1 WHERE owner_id = $1", &[&bob_id]).await;
    let reply = server.get("/api/v1/admin/ledger/check", Some(&auditor)).await;
    assert_eq!(reply.body["ok"], false, "{}", reply.text);
    assert_eq!(reply.body["mismatches"][0]["balance"], 1_235, "{}", reply.text);
    assert_eq!(reply.body["mismatches"][0]["journal"], 1_234);
    let (status, stdout) = cli(&server.database_url);
    assert_eq!(status, Some(1), "{stdout}");
    assert!(stdout.contains("NOT OK"), "{stdout}");
}

/// What one request of the burst expects, whatever order the burst is applied in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Sent,
    /// One of a pair sharing a key and a body: both answer with one transfer.
    Duplicate,
    /// One of a pair sharing a key with different bodies: one is sent, the other refused.
    Contested,
    Problem(u16, &'static str),
}

async fn a_burst_of_mixed_transfers_is_applied_as_if_one_by_one(db: Db) {
    let server = Arc::new(server(db).await);
    let (auditor, _) = register_auditor(&server).await;
    let mut people = Vec::new();
    for (name, money) in [("ann", 1_000), ("bob", 500), ("cat", 0), ("dan", 200)] {
        let (token, id) = server.register(name).await;
        if money > 0 {
            topup(&server, &token, money).await;
        }
        people.push((token, id));
    }
    let transfers = "/api/v1/wallet/transfers";
    // A key already used before the burst, which the burst reuses with another body.
    let first = post_keyed(&server, transfers, &people[0].0, Some("used"), transfer_body(&people[1].1, 1).await).await;
    assert_eq!(first.status, 201, "{}", first.text);

    // (from, to user id, amount, key, what one-by-one would answer)
    let mut burst: Vec<(usize, String, i64, Option<String>, Expect)> = Vec::new();
    for n in 0..30 {
        burst.push((0, people[1].1.clone(), 10, Some(format!("ann-bob-{n}")), Expect::Sent));
        burst.push((1, people[2].1.clone(), 5, (n % 2 == 0).then(|| format!("bob-cat-{n}")), Expect::Sent));
    }
    for n in 0..10 {
        // Cat never holds this much, in any order: always refused, moving nothing.
        burst.push((
            2,
            people[3].1.clone(),
            10_000,
            Some(format!("cat-over-{n}")),
            Expect::Problem(402, "insufficient_funds"),
        ));
        // Two copies of one keyed request race each other.
        for _ in 0..2 {
            burst.push((0, people[3].1.clone(), 7, Some(format!("dup-{n}")), Expect::Duplicate));
        }
        // Two different requests race for one key.
        for amount in [3, 4] {
            burst.push((3, people[0].1.clone(), amount, Some(format!("contested-{n}")), Expect::Contested));
        }
    }
    burst.push((0, people[1].1.clone(), 2, Some("used".into()), Expect::Problem(422, "idempotency_key_reused")));
    burst.push((0, people[0].1.clone(), 5, Some("self".into()), Expect::Problem(422, "invalid_field")));
    burst.push((1, "nobody".into(), 5, Some("ghost".into()), Expect::Problem(404, "user_not_found")));

    let tasks: Vec<_> = burst
        .into_iter()
        .map(|(from, to, amount, key, expect)| {
            let (server, token) = (server.clone(), people[from].0.clone());
            tokio::spawn(async move {
                let body = transfer_body(&to, amount).await;
                let reply = post_keyed(&server, transfers, &token, key.as_deref(), body).await;
                (from, to, amount, key, expect, reply)
            })
        })
        .collect();
    let mut expected = [1_000 - 1, 500 + 1, 0, 200];
    let index_of = |id: &str| people.iter().position(|(_, person)| person == id);
    let mut by_key: HashMap<String, Vec<(Expect, i64, Reply)>> = HashMap::new();
    let mut moved = std::collections::HashSet::new();
    for task in tasks {
        let (from, to, amount, key, expect, reply) = task.await.unwrap();
        match expect {
            Expect::Problem(status, code) => {
                reply.assert_problem(status, code);
            }
            Expect::Sent | Expect::Duplicate | Expect::Contested if reply.status == 201 => {
                assert_eq!(reply.body["amount"], amount, "{}", reply.text);
                assert_eq!(reply.body["to_user_id"], to.as_str());
                assert_eq!(reply.body["from_user_id"], people[from].1.as_str());
                if moved.insert(reply.body["id"].as_str().unwrap().to_string()) {
                    expected[from] -= amount;
                    expected[index_of(&to).unwrap()] += amount;
                }
            }
            Expect::Contested => {
                reply.assert_problem(422, "idempotency_key_reused");
            }
            Expect::Sent | Expect::Duplicate => panic!("{expect:?} answered {}: {}", reply.status, reply.text),
        }
        if let Some(key) = key {
            by_key.entry(key).or_default().push((expect, amount, reply));
        }
    }
    for (key, replies) in &by_key {
        match replies[0].0 {
            Expect::Duplicate => {
                assert_eq!(replies.len(), 2);
                assert_eq!(replies[0].2.body, replies[1].2.body, "{key}: both copies answer with one transfer");
                let replayed: Vec<_> =
                    replies.iter().map(|(_, _, reply)| reply.header("idempotent-replayed")).collect();
                assert!(replayed.contains(&Some("true")) && replayed.contains(&None), "{key}: {replayed:?}");
            }
            Expect::Contested => {
                let sent = replies.iter().filter(|(_, _, reply)| reply.status == 201).count();
                assert_eq!(sent, 1, "{key}: exactly one of two bodies is sent");
            }
            Expect::Sent | Expect::Problem(..) => assert_eq!(replies.len(), 1),
        }
    }
    assert_eq!(moved.len(), 30 + 30 + 10 + 10);
    for (index, (token, _)) in people.iter().enumerate() {
        assert_eq!(balance(&server, token).await, (expected[index], 0), "person {index}");
    }
    // Retried after the burst, an overdraft's key is still free (nothing was stored for
    // it) and a sent transfer's key answers with that transfer.
    let retry =
        post_keyed(&server, transfers, &people[2].0, Some("cat-over-0"), transfer_body(&people[3].1, 1).await).await;
    assert_eq!(retry.status, 201, "{}", retry.text);
    assert_eq!(retry.header("idempotent-replayed"), None);
    let again = &by_key["ann-bob-0"][0].2;
    let replay =
        post_keyed(&server, transfers, &people[0].0, Some("ann-bob-0"), transfer_body(&people[1].1, 10).await).await;
    assert_eq!(replay.body, again.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_ledger_sound(&server, &auditor).await;

    // The point of the burst: it really was applied in shared transactions.
    let (batched, metrics) = server.metric("plaza_wallet_batched_transfers_total").await;
    assert!(batched > 0.0, "no transfers shared a batch:\n{metrics}");
}
