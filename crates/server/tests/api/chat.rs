//! Chat over real HTTP, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use crate::support::{Db, TestServer};
use serde_json::{json, Value};
use std::sync::Arc;

on_both_databases!(
    a_direct_conversation_with_the_same_person_is_returned_not_duplicated,
    messages_are_numbered_from_one_and_a_retried_send_is_idempotent,
    concurrent_senders_get_gap_free_sequence_numbers,
    concurrent_retries_of_one_send_store_one_message,
    a_burst_of_mixed_sends_is_stored_as_if_sent_one_by_one,
    non_members_get_404_for_everything,
    bad_messages_are_answered_with_problems_and_store_nothing,
    conversations_are_listed_newest_first_with_last_message_and_unread_count,
    history_pages_forwards_and_backwards,
    groups_add_and_remove_members_under_the_owner_rules,
    groups_have_a_size_limit,
    only_a_person_s_contacts_can_put_them_into_a_group,
    someone_who_left_a_group_cannot_be_added_back_by_others,
    a_new_member_sees_the_history_from_joining_on,
    client_cards_are_rendered_by_their_service_and_cannot_be_forged,
    group_creations_are_limited_per_hour,
    group_titles_with_bidirectional_overrides_are_refused,
);

/// Registers each name; everyone is everyone's contact (only contacts add each other to
/// groups).
async fn users(server: &TestServer, names: &[&str]) -> Vec<(String, String)> {
    server.register_contacts(names).await
}

/// `token` removes `member_id` from the group (or leaves it, if it is their own id).
async fn remove_member(server: &TestServer, group: &str, member_id: &str, token: &str) -> support::Reply {
    server.request("DELETE", &format!("/api/v1/conversations/{group}/members/{member_id}"), Some(token), None).await
}

async fn a_direct_conversation_with_the_same_person_is_returned_not_duplicated(db: Db) {
    let server = TestServer::start(db).await;
    let people = users(&server, &["ann", "bob"]).await;
    let (ann, bob) = (&people[0], &people[1]);
    let first =
        server.post("/api/v1/conversations", Some(&ann.0), json!({"kind": "direct", "member_ids": [bob.1]})).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.body["kind"], "direct");
    assert_eq!(first.body["members"].as_array().unwrap().len(), 2);
    let again =
        server.post("/api/v1/conversations", Some(&ann.0), json!({"kind": "direct", "member_ids": [bob.1]})).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], first.body["id"]);
    let from_bob = server
        .post("/api/v1/conversations", Some(&bob.0), json!({"kind": "direct", "member_ids": [ann.1, bob.1]}))
        .await;
    assert_eq!(from_bob.status, 200);
    assert_eq!(from_bob.body["id"], first.body["id"]);

    for (body, field) in [
        (json!({"kind": "direct", "member_ids": []}), "member_ids"),
        (json!({"kind": "direct", "member_ids": [ann.1]}), "member_ids"),
        (json!({"kind": "channel", "member_ids": [bob.1]}), "kind"),
        (json!({"kind": "direct", "member_ids": [bob.1], "title": "x"}), "title"),
        (json!({"kind": "group", "member_ids": [bob.1], "title": "  "}), "title"),
    ] {
        let reply = server.post("/api/v1/conversations", Some(&ann.0), body.clone()).await;
        reply.assert_problem(422, "invalid_field");
        assert_eq!(reply.body["field"], field, "{body}");
    }
    server
        .post("/api/v1/conversations", Some(&ann.0), json!({"kind": "direct", "member_ids": ["01NOBODY"]}))
        .await
        .assert_problem(404, "user_not_found");
}

async fn messages_are_numbered_from_one_and_a_retried_send_is_idempotent(db: Db) {
    let server = TestServer::start(db).await;
    let people = users(&server, &["cat", "dan"]).await;
    let conversation = server.conversation(&people[0].0, "direct", &[&people[1].1]).await;
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let first = server
        .post(&path, Some(&people[0].0), json!({"client_id": "c1", "kind": "text", "body": {"text": "hi"}}))
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.body["seq"], 1);
    assert_eq!(first.body["sender_id"], people[0].1.as_str());
    assert_eq!(first.body["client_id"], "c1");
    assert_eq!(first.body["body"], json!({"text": "hi"}));
    let retry = server
        .post(&path, Some(&people[0].0), json!({"client_id": "c1", "kind": "text", "body": {"text": "hi"}}))
        .await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.body["id"], first.body["id"]);
    // The same client_id from someone else is a different message.
    let other = server
        .post(&path, Some(&people[1].0), json!({"client_id": "c1", "kind": "text", "body": {"text": "yo"}}))
        .await;
    assert_eq!(other.status, 201);
    assert_eq!(other.body["seq"], 2);
    // A card naming a ride that does not exist is refused and takes no number.
    let card = server
        .post(&path, Some(&people[1].0), json!({"client_id": "c2", "kind": "card", "body": {"type": "ride", "id": "r1", "title": "Ride home", "eta_s": 300}}))
        .await;
    card.assert_problem(422, "card_not_allowed");
    let third = server
        .post(&path, Some(&people[1].0), json!({"client_id": "c3", "kind": "text", "body": {"text": "three"}}))
        .await;
    assert_eq!(third.body["seq"], 3);
    let history = server.get(&path, Some(&people[0].0)).await;
    let seqs: Vec<i64> = history.body["items"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
}

async fn concurrent_senders_get_gap_free_sequence_numbers(db: Db) {
    let server = Arc::new(TestServer::start(db).await);
    let people = users(&server, &["s_one", "s_two", "s_three", "s_four"]).await;
    let others: Vec<&str> = people[1..].iter().map(|p| p.1.as_str()).collect();
    let conversation = server.conversation(&people[0].0, "group", &others).await;
    let per_sender = 20;
    let mut tasks = Vec::new();
    for (sender, (token, _)) in people.iter().enumerate() {
        for n in 0..per_sender {
            let server = server.clone();
            let token = token.clone();
            let conversation = conversation.clone();
            tasks.push(tokio::spawn(async move {
                server.send_text(&token, &conversation, &format!("s{sender}-{n}"), &format!("message {n}")).await
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut seqs = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/conversations/{conversation}/messages?cursor={cursor}&limit=200"),
            None => format!("/api/v1/conversations/{conversation}/messages?after_seq=0&limit=200"),
        };
        let page = server.get(&path, Some(&people[0].0)).await;
        seqs.extend(page.body["items"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()));
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    // 1 is the "group created" system message.
    let expected: Vec<i64> = (1..=(1 + people.len() * per_sender) as i64).collect();
    assert_eq!(seqs, expected, "1, 2, 3, … with no gaps and no duplicates");
}

async fn concurrent_retries_of_one_send_store_one_message(db: Db) {
    let server = Arc::new(TestServer::start(db).await);
    let people = users(&server, &["r_one", "r_two"]).await;
    let conversation = server.conversation(&people[0].0, "direct", &[&people[1].1]).await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let server = server.clone();
            let token = people[0].0.clone();
            let conversation = conversation.clone();
            tokio::spawn(async move { server.send_text(&token, &conversation, "same-id", "once").await })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap()["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1);
    let history = server.get(&format!("/api/v1/conversations/{conversation}/messages"), Some(&people[0].0)).await;
    assert_eq!(history.body["items"].as_array().unwrap().len(), 1);
}

/// Concurrent sends are group-committed; a burst mixing conversations, retries racing
/// each other and an outsider must come out exactly as if each had been sent alone.
async fn a_burst_of_mixed_sends_is_stored_as_if_sent_one_by_one(db: Db) {
    let server = Arc::new(TestServer::start(db).await);
    let people = users(&server, &["m_ann", "m_bob", "m_cyd", "m_dee", "m_out"]).await;
    let token = |n: usize| people[n].0.clone();
    let group = server.conversation(&token(0), "group", &[&people[1].1, &people[2].1]).await;
    let direct = server.conversation(&token(0), "direct", &[&people[3].1]).await;
    let rounds = 25;
    let mut sends = Vec::new();
    for n in 0..rounds {
        // (sender, conversation, client_id); every send is also retried concurrently.
        for (sender, conversation, client_id) in [
            (0, &group, format!("g-ann-{n}")),
            (1, &group, format!("g-bob-{n}")),
            (0, &direct, format!("d-ann-{n}")),
            (3, &direct, format!("d-dee-{n}")),
        ] {
            sends.push((sender, conversation.clone(), client_id.clone()));
            sends.push((sender, conversation.clone(), client_id));
        }
    }
    let tasks: Vec<_> = sends
        .into_iter()
        .map(|(sender, conversation, client_id)| {
            let server = server.clone();
            let token = token(sender);
            tokio::spawn(async move {
                let reply = server
                    .post(
                        &format!("/api/v1/conversations/{conversation}/messages"),
                        Some(&token),
                        json!({"client_id": client_id, "kind": "text", "body": {"text": client_id}}),
                    )
                    .await;
                (client_id, reply)
            })
        })
        .collect();
    let outsiders: Vec<_> = (0..rounds)
        .map(|n| {
            let server = server.clone();
            let (token, group) = (token(4), group.clone());
            tokio::spawn(async move {
                server
                    .post(
                        &format!("/api/v1/conversations/{group}/messages"),
                        Some(&token),
                        json!({"client_id": format!("out-{n}"), "kind": "text", "body": {"text": "let me in"}}),
                    )
                    .await
            })
        })
        .collect();
    let mut ids: std::collections::HashMap<String, std::collections::HashSet<String>> = Default::default();
    for task in tasks {
        let (client_id, reply) = task.await.unwrap();
        assert!(reply.status == 201 || reply.status == 200, "{}", reply.text);
        assert_eq!(reply.body["client_id"], client_id.as_str());
        ids.entry(client_id).or_default().insert(reply.body["id"].as_str().unwrap().to_string());
    }
    assert!(ids.values().all(|both| both.len() == 1), "a retry answers with the first send's message");
    for task in outsiders {
        task.await.unwrap().assert_problem(404, "conversation_not_found");
    }
    for (conversation, system_messages) in [(&group, 1), (&direct, 0)] {
        let history =
            server.get(&format!("/api/v1/conversations/{conversation}/messages?limit=200"), Some(&token(0))).await;
        let items = history.body["items"].as_array().unwrap();
        let seqs: Vec<i64> = items.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        let expected: Vec<i64> = (1..=(system_messages + 2 * rounds) as i64).collect();
        assert_eq!(seqs, expected, "gap-free, and each retried send stored once");
        assert!(items.iter().all(|m| m["body"]["text"] != "let me in"));
    }
    // The point of the burst: it really was stored in shared transactions.
    let (batched, metrics) = server.metric("plaza_chat_batched_sends_total").await;
    assert!(batched > 0.0, "no sends shared a batch:\n{metrics}");
}

async fn non_members_get_404_for_everything(db: Db) {
    let server = TestServer::start(db).await;
    let people = users(&server, &["in_a", "in_b", "outsider"]).await;
    let conversation = server.conversation(&people[0].0, "direct", &[&people[1].1]).await;
    let outsider = &people[2].0;
    let base = format!("/api/v1/conversations/{conversation}");
    server.get(&base, Some(outsider)).await.assert_problem(404, "conversation_not_found");
    server.get(&format!("{base}/messages"), Some(outsider)).await.assert_problem(404, "conversation_not_found");
    server
        .post(
            &format!("{base}/messages"),
            Some(outsider),
            json!({"client_id": "x", "kind": "text", "body": {"text": "hi"}}),
        )
        .await
        .assert_problem(404, "conversation_not_found");
    server
        .post(&format!("{base}/read"), Some(outsider), json!({"seq": 1}))
        .await
        .assert_problem(404, "conversation_not_found");
    server.get("/api/v1/conversations/01NOSUCH", Some(outsider)).await.assert_problem(404, "conversation_not_found");
    let listed = server.get("/api/v1/conversations", Some(outsider)).await;
    assert_eq!(listed.body["items"], json!([]));
}

async fn bad_messages_are_answered_with_problems_and_store_nothing(db: Db) {
    let server = TestServer::start(db).await;
    let people = users(&server, &["bad_a", "bad_b"]).await;
    let conversation = server.conversation(&people[0].0, "direct", &[&people[1].1]).await;
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let cases: Vec<(Value, &str)> = vec![
        (json!({"client_id": "1", "kind": "text", "body": {"text": ""}}), "body.text"),
        (json!({"client_id": "2", "kind": "text", "body": {"text": "   "}}), "body.text"),
        (json!({"client_id": "3", "kind": "text", "body": {"text": "a".repeat(4001)}}), "body.text"),
        (json!({"client_id": "4", "kind": "text", "body": {}}), "body.text"),
        (json!({"client_id": "5", "kind": "sticker", "body": {"text": "hi"}}), "kind"),
        (json!({"client_id": "6", "kind": "system", "body": {"text": "hi"}}), "kind"),
        (json!({"client_id": "7", "kind": "transfer", "body": {}}), "kind"),
        (json!({"client_id": "", "kind": "text", "body": {"text": "hi"}}), "client_id"),
        (json!({"client_id": "x".repeat(65), "kind": "text", "body": {"text": "hi"}}), "client_id"),
        (json!({"kind": "text", "body": {"text": "hi"}}), "client_id"),
        (json!({"client_id": "8", "kind": "image", "body": {"media_id": "01SOMEONEELSES"}}), "body.media_id"),
        (json!({"client_id": "9", "kind": "card", "body": {"type": "ride"}}), "body.id"),
        (json!({"client_id": "10", "kind": "text", "body": "hi"}), "body"),
    ];
    for (body, field) in cases {
        let reply = server.post(&path, Some(&people[0].0), body.clone()).await;
        reply.assert_problem(422, "invalid_field");
        assert_eq!(reply.body["field"], field, "{body}");
    }
    // Exactly 4,000 characters is fine.
    let ok = server
        .post(
            &path,
            Some(&people[0].0),
            json!({"client_id": "ok", "kind": "text", "body": {"text": "字".repeat(4000)}}),
        )
        .await;
    assert_eq!(ok.status, 201);
    assert_eq!(ok.body["seq"], 1, "nothing before it was stored");
}

async fn conversations_are_listed_newest_first_with_last_message_and_unread_count(db: Db) {
    let server = TestServer::start(db).await;
    let people = users(&server, &["list_a", "list_b", "list_c"]).await;
    let (a, b, c) = (&people[0], &people[1], &people[2]);
    let with_b = server.conversation(&a.0, "direct", &[&b.1]).await;
    let with_c = server.conversation(&a.0, "direct", &[&c.1]).await;
    server.send_text(&b.0, &with_b, "b1", "from b").await;
    server.send_text(&b.0, &with_b, "b2", "again from b").await;
    server.send_text(&c.0, &with_c, "c1", "from c").await;
    let listed = server.get("/api/v1/conversations", Some(&a.0)).await;
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], with_c.as_str(), "newest activity first");
    assert_eq!(items[0]["last_message"]["body"]["text"], "from c");
    assert_eq!(items[0]["unread_count"], 1);
    assert_eq!(items[1]["unread_count"], 2);
    assert_eq!(items[1]["last_message"]["seq"], 2);

    let read = server.post(&format!("/api/v1/conversations/{with_b}/read"), Some(&a.0), json!({"seq": 1})).await;
    assert_eq!(read.status, 204);
    let after_read = server.get("/api/v1/conversations", Some(&a.0)).await;
    assert_eq!(after_read.body["items"][1]["unread_count"], 1);
    // Reading past the end clamps; reading backwards never lowers the mark.
    server.post(&format!("/api/v1/conversations/{with_b}/read"), Some(&a.0), json!({"seq": 99})).await;
    server.post(&format!("/api/v1/conversations/{with_b}/read"), Some(&a.0), json!({"seq": 1})).await;
    let detail = server.get(&format!("/api/v1/conversations/{with_b}"), Some(&a.0)).await;
    let mine =
        detail.body["members"].as_array().unwrap().iter().find(|m| m["user"]["id"] == a.1.as_str()).cloned().unwrap();
    assert_eq!(mine["read_seq"], 2);
    server
        .post(&format!("/api/v1/conversations/{with_b}/read"), Some(&a.0), json!({"seq": -1}))
        .await
        .assert_problem(422, "invalid_field");
    // The sender's own messages are never unread.
    let bobs = server.get("/api/v1/conversations", Some(&b.0)).await;
    assert_eq!(bobs.body["items"][0]["unread_count"], 0);

    let paged = server.get("/api/v1/conversations?limit=1", Some(&a.0)).await;
    assert_eq!(paged.body["items"].as_array().unwrap().len(), 1);
    let cursor = paged.body["next_cursor"].as_str().unwrap();
    let second = server.get(&format!("/api/v1/conversations?limit=1&cursor={cursor}"), Some(&a.0)).await;
    assert_eq!(second.body["items"][0]["id"], with_b.as_str());
    assert!(second.body["next_cursor"].is_null());
}

async fn history_pages_forwards_and_backwards(db: Db) {
    let server = TestServer::start(db).await;
    let people = users(&server, &["h_a", "h_b"]).await;
    let conversation = server.conversation(&people[0].0, "direct", &[&people[1].1]).await;
    for n in 1..=7 {
        server.send_text(&people[0].0, &conversation, &format!("m{n}"), &format!("{n}")).await;
    }
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let seqs = |reply: &support::Reply| -> Vec<i64> {
        reply.body["items"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect()
    };
    let latest = server.get(&format!("{path}?limit=3"), Some(&people[1].0)).await;
    assert_eq!(seqs(&latest), [5, 6, 7]);
    let older = server
        .get(&format!("{path}?limit=3&cursor={}", latest.body["next_cursor"].as_str().unwrap()), Some(&people[1].0))
        .await;
    assert_eq!(seqs(&older), [2, 3, 4]);
    let oldest = server
        .get(&format!("{path}?limit=3&cursor={}", older.body["next_cursor"].as_str().unwrap()), Some(&people[1].0))
        .await;
    assert_eq!(seqs(&oldest), [1]);
    assert!(oldest.body["next_cursor"].is_null());
    assert_eq!(seqs(&server.get(&format!("{path}?after_seq=5"), Some(&people[1].0)).await), [6, 7]);
    assert_eq!(seqs(&server.get(&format!("{path}?before_seq=3"), Some(&people[1].0)).await), [1, 2]);
    assert_eq!(seqs(&server.get(&format!("{path}?after_seq=2&before_seq=5"), Some(&people[1].0)).await), [3, 4]);
    for query in ["after_seq=-1", "before_seq=0", "limit=0", "cursor=zz", "after_seq=x"] {
        server.get(&format!("{path}?{query}"), Some(&people[1].0)).await.assert_problem(422, "invalid_field");
    }
}

async fn groups_add_and_remove_members_under_the_owner_rules(db: Db) {
    let server = TestServer::start(db).await;
    let people = users(&server, &["owner", "m_one", "m_two", "m_three"]).await;
    let (owner, one, two, three) = (&people[0], &people[1], &people[2], &people[3]);
    let created = server
        .post(
            "/api/v1/conversations",
            Some(&owner.0),
            json!({"kind": "group", "member_ids": [one.1], "title": " Hikers "}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["title"], "Hikers");
    assert_eq!(created.body["owner_id"], owner.1.as_str());
    let group = created.body["id"].as_str().unwrap().to_string();

    let added = server
        .post(&format!("/api/v1/conversations/{group}/members"), Some(&one.0), json!({"user_ids": [two.1, three.1]}))
        .await;
    assert_eq!(added.status, 200, "any member may invite: {}", added.text);
    assert_eq!(added.body["members"].as_array().unwrap().len(), 4);

    // Only the owner removes others.
    remove_member(&server, &group, &two.1, &one.0).await.assert_problem(403, "not_conversation_owner");
    let removed = remove_member(&server, &group, &two.1, &owner.0).await;
    assert_eq!(removed.status, 204);
    server
        .get(&format!("/api/v1/conversations/{group}"), Some(&two.0))
        .await
        .assert_problem(404, "conversation_not_found");
    remove_member(&server, &group, &two.1, &owner.0).await.assert_problem(404, "not_a_member");

    // The owner leaves; the longest-standing member takes over.
    let left = remove_member(&server, &group, &owner.1, &owner.0).await;
    assert_eq!(left.status, 204);
    let now = server.get(&format!("/api/v1/conversations/{group}"), Some(&one.0)).await;
    assert_eq!(now.body["owner_id"], one.1.as_str());

    // The history tells the story in system messages.
    let history = server.get(&format!("/api/v1/conversations/{group}/messages"), Some(&one.0)).await;
    let events: Vec<&str> =
        history.body["items"].as_array().unwrap().iter().map(|m| m["body"]["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["group_created", "members_added", "member_removed", "member_left"]);

    let direct = server.conversation(&one.0, "direct", &[&three.1]).await;
    server
        .post(&format!("/api/v1/conversations/{direct}/members"), Some(&one.0), json!({"user_ids": [owner.1]}))
        .await
        .assert_problem(409, "not_a_group");
    server
        .post(&format!("/api/v1/conversations/{group}/members"), Some(&one.0), json!({"user_ids": ["01NOBODY"]}))
        .await
        .assert_problem(404, "user_not_found");
}

async fn groups_have_a_size_limit(db: Db) {
    let server = TestServer::start_with(db, |config| config.group_members_max = 3).await;
    let people = users(&server, &["g_a", "g_b", "g_c", "g_d"]).await;
    let too_many = server
        .post(
            "/api/v1/conversations",
            Some(&people[0].0),
            json!({"kind": "group", "member_ids": [people[1].1, people[2].1, people[3].1]}),
        )
        .await;
    too_many.assert_problem(409, "group_full");
    let group = server.conversation(&people[0].0, "group", &[&people[1].1, &people[2].1]).await;
    server
        .post(&format!("/api/v1/conversations/{group}/members"), Some(&people[0].0), json!({"user_ids": [people[3].1]}))
        .await
        .assert_problem(409, "group_full");
}

async fn only_a_person_s_contacts_can_put_them_into_a_group(db: Db) {
    let server = TestServer::start(db).await;
    let friends = users(&server, &["c_ann", "c_bob"]).await;
    let stranger = server.register("c_eve").await;
    let created = server
        .post(
            "/api/v1/conversations",
            Some(&friends[0].0),
            json!({"kind": "group", "member_ids": [friends[1].1, stranger.1]}),
        )
        .await;
    created.assert_problem(403, "not_a_contact");
    assert_eq!(created.body["field"], "user_ids");
    let group = server.conversation(&friends[0].0, "group", &[&friends[1].1]).await;
    // Bob is in the group but not Eve's contact either: nobody can add her.
    for adder in [&friends[0], &friends[1]] {
        server
            .post(&format!("/api/v1/conversations/{group}/members"), Some(&adder.0), json!({"user_ids": [stranger.1]}))
            .await
            .assert_problem(403, "not_a_contact");
    }
    let conversations = server.get("/api/v1/conversations", Some(&stranger.0)).await;
    assert_eq!(conversations.body["items"], json!([]), "Eve is in no group");
    server.befriend(&friends[1], &stranger).await;
    let added = server
        .post(&format!("/api/v1/conversations/{group}/members"), Some(&friends[1].0), json!({"user_ids": [stranger.1]}))
        .await;
    assert_eq!(added.status, 200, "a contact may add her: {}", added.text);
}

async fn someone_who_left_a_group_cannot_be_added_back_by_others(db: Db) {
    let server = TestServer::start(db).await;
    let people = users(&server, &["l_ann", "l_bob", "l_cyd"]).await;
    let group = server.conversation(&people[0].0, "group", &[&people[1].1, &people[2].1]).await;
    let left = remove_member(&server, &group, &people[1].1, &people[1].0).await;
    assert_eq!(left.status, 204, "{}", left.text);
    for adder in [&people[0], &people[2]] {
        server
            .post(&format!("/api/v1/conversations/{group}/members"), Some(&adder.0), json!({"user_ids": [people[1].1]}))
            .await
            .assert_problem(403, "left_conversation");
    }
    // Someone the owner removed did not choose to leave, and may be added back.
    let removed = remove_member(&server, &group, &people[2].1, &people[0].0).await;
    assert_eq!(removed.status, 204, "{}", removed.text);
    let back = server
        .post(&format!("/api/v1/conversations/{group}/members"), Some(&people[0].0), json!({"user_ids": [people[2].1]}))
        .await;
    assert_eq!(back.status, 200, "{}", back.text);
}

async fn a_new_member_sees_the_history_from_joining_on(db: Db) {
    let server = TestServer::start(db).await;
    let people = users(&server, &["h_ann", "h_bob", "h_new"]).await;
    let group = server.conversation(&people[0].0, "group", &[&people[1].1]).await;
    for n in 0..3 {
        server.send_text(&people[1].0, &group, &format!("before-{n}"), "before you came").await;
    }
    let added = server
        .post(&format!("/api/v1/conversations/{group}/members"), Some(&people[0].0), json!({"user_ids": [people[2].1]}))
        .await;
    assert_eq!(added.status, 200, "{}", added.text);
    server.send_text(&people[1].0, &group, "after", "welcome").await;
    let path = format!("/api/v1/conversations/{group}/messages");
    let history = server.get(&path, Some(&people[2].0)).await;
    let items = history.body["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["system", "text"], "the joining notice and what came after: {}", history.text);
    assert_eq!(items[0]["body"]["event"], "members_added");
    assert!(items.iter().all(|m| m["body"]["text"] != "before you came"));
    let earlier = server.get(&format!("{path}?before_seq=5"), Some(&people[2].0)).await;
    assert_eq!(earlier.body["items"], json!([]), "nothing before joining, whichever way one pages");
    let from_start = server.get(&format!("{path}?after_seq=0"), Some(&people[2].0)).await;
    assert_eq!(from_start.body["items"].as_array().unwrap().len(), 2);
    let listed = server.get("/api/v1/conversations", Some(&people[2].0)).await;
    assert_eq!(listed.body["items"][0]["unread_count"], 2, "unread counts only what they can see");
    // Earlier members still see everything.
    assert_eq!(server.get(&path, Some(&people[0].0)).await.body["items"].as_array().unwrap().len(), 6);
}

async fn client_cards_are_rendered_by_their_service_and_cannot_be_forged(db: Db) {
    let server = TestServer::start(db).await;
    let people = users(&server, &["k_ann", "k_bob"]).await;
    let chat = server.conversation(&people[0].0, "direct", &[&people[1].1]).await;
    support::rides::topup(&server, &people[0].0, 10_000).await;
    let ride = support::rides::request_ride(&server, &people[0].0).await;
    let ride_id = ride["id"].as_str().unwrap();
    let path = format!("/api/v1/conversations/{chat}/messages");
    let posted = server
        .post(
            &path,
            Some(&people[0].0),
            json!({"client_id": "r", "kind": "card",
            "body": {"type": "ride", "id": ride_id, "title": "Ride completed!", "status": "completed"}}),
        )
        .await;
    assert_eq!(posted.status, 201, "{}", posted.text);
    assert_eq!(posted.body["body"]["status"], "requested", "the server's state, not the client's");
    assert_eq!(posted.body["body"]["title"], "Ride (requested)");
    assert!(posted.body["body"]["pickup"].is_object());
    // Bob cannot see Ann's ride, so he cannot post it.
    let forged = server
        .post(
            &path,
            Some(&people[1].0),
            json!({"client_id": "f", "kind": "card", "body": {"type": "ride", "id": ride_id}}),
        )
        .await;
    forged.assert_problem(422, "card_not_allowed");
    // Types of services that post their own cards are not for clients.
    for card_type in ["group_buy", "video", "mini_app", "anything"] {
        server
            .post(
                &path,
                Some(&people[0].0),
                json!({"client_id": format!("t-{card_type}"), "kind": "card",
                "body": {"type": card_type, "id": "x1", "title": "Join!"}}),
            )
            .await
            .assert_problem(422, "card_not_allowed");
    }
    let history = server.get(&path, Some(&people[1].0)).await;
    assert_eq!(history.body["items"].as_array().unwrap().len(), 1, "only the rendered card was stored");
}

async fn group_creations_are_limited_per_hour(db: Db) {
    let server = TestServer::start_with(db, |config| config.group_creations_per_hour = 3).await;
    let people = users(&server, &["q_ann", "q_bob"]).await;
    for _ in 0..3 {
        server.conversation(&people[0].0, "group", &[&people[1].1]).await;
    }
    let limited = server
        .post("/api/v1/conversations", Some(&people[0].0), json!({"kind": "group", "member_ids": [people[1].1]}))
        .await;
    limited.assert_problem(429, "rate_limited");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    // Bob has his own allowance, and direct chats are not groups.
    server.conversation(&people[1].0, "group", &[&people[0].1]).await;
    // An hour later (the rows backdated), Ann may create again.
    let mut database = server.database().await;
    sqlx::query("UPDATE conversations SET created_at = created_at - 3600001").execute(&mut database).await.unwrap();
    server.conversation(&people[0].0, "group", &[&people[1].1]).await;
}

async fn group_titles_with_bidirectional_overrides_are_refused(db: Db) {
    let server = TestServer::start(db).await;
    let people = users(&server, &["b_ann", "b_bob"]).await;
    let reply = server
        .post(
            "/api/v1/conversations",
            Some(&people[0].0),
            json!({"kind": "group", "member_ids": [people[1].1], "title": "Team \u{202E}gnp.exe"}),
        )
        .await;
    reply.assert_problem(422, "invalid_field");
    assert_eq!(reply.body["field"], "title");
}
