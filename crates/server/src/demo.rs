//! `plaza demo`: demo users with known passwords and a few contacts, so a newcomer can
//! sign in and look around at once. Seeding is idempotent: run it again and nothing
//! changes. Later services add their own demo data here (chats, money, drivers).

use crate::app;
use crate::config::Config;
use plaza_accounts::{AccountsError, User};
use plaza_chat::ConversationKind;
use plaza_kernel::PageLimit;
use serde_json::json;

/// Every demo user's password.
pub const DEMO_PASSWORD: &str = "plaza-demo";

/// How the demo live room's ffmpeg encodes its test pattern and tone for RTMP: H.264
/// as cheap and as low-latency as it goes, a keyframe every 30 frames (a second at 30
/// fps), and AAC. The benchmarks' and the tests' publishers send the same.
pub const LIVE_PUBLISH_CODECS: [&str; 14] = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-tune",
    "zerolatency",
    "-g",
    "30",
    "-pix_fmt",
    "yuv420p",
    "-c:a",
    "aac",
    "-b:a",
    "64k",
];

const DEMO_USERS: &[(&str, &str)] =
    &[("alice", "Alice Chen"), ("bob", "Bob Okafor"), ("carol", "Carol Santos"), ("dave", "Dave Kim")];

/// Accepted contacts between these pairs, and a pending request from dave to alice.
const DEMO_CONTACTS: &[(&str, &str)] = &[("alice", "bob"), ("alice", "carol"), ("bob", "carol")];

/// A demo login, as printed.
#[derive(Debug, Clone)]
pub struct DemoLogin {
    pub username: String,
    pub display_name: String,
}

pub async fn seed(store: plaza_store::Store, config: &Config) -> anyhow::Result<Vec<DemoLogin>> {
    let services = app::services(store, plaza_bus::Bus::in_process(), config)?;
    let accounts = services.accounts.clone();
    let mut users: Vec<User> = Vec::new();
    for (username, display_name) in DEMO_USERS {
        let user = match accounts.register("demo-seed", username, DEMO_PASSWORD, Some(display_name)).await {
            Ok(session) => {
                accounts.logout(&session.token).await?;
                session.user
            }
            Err(AccountsError::UsernameTaken(_)) => accounts.user_by_username(username).await?,
            Err(error) => return Err(error.into()),
        };
        users.push(user);
    }
    let find = |name: &str| users.iter().find(|user| user.username == name).cloned();
    for (first, second) in DEMO_CONTACTS {
        if let (Some(first), Some(second)) = (find(first), find(second)) {
            accounts.request_contact(&first, &second.id).await?;
            accounts.request_contact(&second, &first.id).await?;
        }
    }
    if let (Some(dave), Some(alice)) = (find("dave"), find("alice")) {
        accounts.request_contact(&dave, &alice.id).await?;
    }
    if let (Some(alice), Some(bob), Some(carol)) = (find("alice"), find("bob"), find("carol")) {
        let (direct_id, group_id) = seed_chats(&services.chat, &alice, &bob, &carol).await?;
        seed_money(&services.wallet, &users, (&alice, &bob, &carol), &direct_id, &group_id).await?;
        crate::demo_shop::seed(&services.shop, &services.media, (&alice, &carol), &group_id).await?;
        crate::demo_coffee::seed(&services.miniapps, &carol, config.demo_coffee_addr).await?;
    }
    let scratch = config.data_dir.join("video-work");
    crate::demo_video::seed(&accounts, &services.video, &services.shop, &users, &scratch).await?;
    Ok(users.into_iter().map(|user| DemoLogin { username: user.username, display_name: user.display_name }).collect())
}

/// A direct chat between alice and bob and a group of three, with some history. Sends
/// carry fixed client ids, so seeding twice posts nothing twice. Returns the ids of the
/// direct chat and the group.
async fn seed_chats(
    chat: &plaza_chat::Chat,
    alice: &User,
    bob: &User,
    carol: &User,
) -> anyhow::Result<(String, String)> {
    let (direct, _) =
        chat.create_conversation(alice, ConversationKind::Direct, std::slice::from_ref(&bob.id), None).await?;
    let lines: [(&User, &str); 4] = [
        (alice, "Hi Bob! Are we still on for lunch tomorrow?"),
        (bob, "Yes! 12:30 at the noodle place?"),
        (alice, "Perfect, see you there 🍜"),
        (bob, "I'll book a table."),
    ];
    for (n, (sender, text)) in lines.iter().enumerate() {
        chat.send_message(sender, &direct.id, &format!("demo-direct-{n}"), "text", &json!({"text": text})).await?;
    }
    let group_id = match find_demo_group(chat, alice).await? {
        Some(id) => id,
        None => {
            let members = [bob.id.clone(), carol.id.clone()];
            chat.create_conversation(alice, ConversationKind::Group, &members, Some(DEMO_GROUP_TITLE)).await?.0.id
        }
    };
    let lines: [(&User, &str); 4] = [
        (alice, "Who's in for the ridge trail on Saturday?"),
        (carol, "Me! I can drive two people."),
        (bob, "Count me in. I'll bring snacks."),
        (alice, "Great, meet at 8:00 by the station."),
    ];
    for (n, (sender, text)) in lines.iter().enumerate() {
        chat.send_message(sender, &group_id, &format!("demo-group-{n}"), "text", &json!({"text": text})).await?;
    }
    Ok((direct.id, group_id))
}

/// The demo group alice created earlier, looked for among all her conversations (not only
/// the newest: after she joins many others it is far down the list, and a second group
/// would make the demo's transfers into it reuse their keys with another request).
async fn find_demo_group(chat: &plaza_chat::Chat, alice: &User) -> anyhow::Result<Option<String>> {
    const PAGES_MAX: usize = 10_000;
    let limit = PageLimit::parse(Some(200)).map_err(anyhow::Error::msg)?;
    let mut cursor: Option<String> = None;
    for _page in 0..PAGES_MAX {
        let page = chat.conversations(alice, limit, cursor.as_deref()).await?;
        let hike = page.items.iter().find(|summary| {
            summary.conversation.title.as_deref() == Some(DEMO_GROUP_TITLE)
                && summary.conversation.owner_id.as_deref() == Some(alice.id.as_str())
        });
        if let Some(summary) = hike {
            return Ok(Some(summary.conversation.id.clone()));
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// Every demo user gets $500.00, alice pays bob for lunch, bob pays carol in the group,
/// and alice sends a lucky red packet to the group that bob has opened. Every call has a
/// fixed idempotency key, so seeding twice moves no money twice.
async fn seed_money(
    wallet: &plaza_wallet::Wallet,
    users: &[User],
    (alice, bob, carol): (&User, &User, &User),
    direct_id: &str,
    group_id: &str,
) -> anyhow::Result<()> {
    let key = |text: &str| plaza_wallet::model::IdempotencyKey::parse(text).map_err(anyhow::Error::msg);
    let usd = |amount: i64| wallet.money(amount, "USD");
    for user in users {
        wallet.topup(user, usd(50_000)?, Some(&key("demo-topup")?), None).await?;
    }
    let transfers = [
        (alice, bob, 1_250, "Lunch 🍜", direct_id, "demo-transfer-lunch"),
        (bob, carol, 800, "Petrol for Saturday", group_id, "demo-transfer-petrol"),
    ];
    for (from, to, amount, note, conversation_id, idempotency_key) in transfers {
        let request = plaza_wallet::TransferRequest {
            to_user_id: to.id.clone(),
            money: usd(amount)?,
            note: Some(note.to_string()),
            conversation_id: Some(conversation_id.to_string()),
        };
        wallet.transfer(from, request, Some(&key(idempotency_key)?), None).await?;
    }
    let packet = plaza_wallet::RedPacketRequest {
        conversation_id: group_id.to_string(),
        total: usd(3_000)?,
        count: 3,
        mode: plaza_wallet::RedPacketMode::Lucky,
        greeting: Some("Snacks are on me! 🧧".to_string()),
    };
    let (packet, _) = wallet.create_red_packet(alice, packet, Some(&key("demo-red-packet")?), None).await?;
    wallet.claim_red_packet(bob, &packet.id, Some(&key("demo-red-packet-claim")?)).await?;
    Ok(())
}

const DEMO_GROUP_TITLE: &str = "Weekend hike";

pub fn describe(logins: &[DemoLogin], config: &Config) -> String {
    let mut text = String::from("Demo data is ready. Sign in as any of these (password for all: ");
    text.push_str(DEMO_PASSWORD);
    text.push_str("):\n");
    for login in logins {
        text.push_str(&format!("  {:<8} {}\n", login.username, login.display_name));
    }
    text.push_str(&format!(
        "alice, bob and carol are contacts and chat in \"Weekend hike\"; dave has asked alice. Everyone has \
         $500.00 to send; alice paid bob for lunch, bob paid carol, and a red packet from alice waits in \
         \"Weekend hike\". Carol runs \"Carol's Trail Shop\" (Shop tab): alice opened a group buy on its coffee \
         and shared it into \"Weekend hike\" for bob to join, and its thermos has a flash sale five minutes after \
         seeding. The Video tab has a dozen short clips by the four of them, playable once a server has \
         transcoded them (carol's links the coffee); alice and bob follow carol. With --serve, three simulated drivers cruise around {:.4}, {:.4}, where the Rides \
         tab's map opens: tap a pickup and a drop-off there, See price, then Request ride, and one takes you \
         end to end; carol is live in the Live tab (\"Live from the trail\", a test pattern through the RTMP \
         ingest, her first product pinned to buy); and carol's mini-app \"{}\" (Me → Browse mini-apps) runs at \
         {}/: sign in with Plaza, order a flat white and pay from your wallet. Server address: http://{}/",
        DEMO_CITY.0,
        DEMO_CITY.1,
        crate::demo_coffee::COFFEE_APP_NAME,
        crate::demo_coffee::coffee_url(config.demo_coffee_addr),
        config.addr
    ));
    text
}

/// The demo city's centre (central Singapore): simulated drivers start around it.
pub const DEMO_CITY: (f64, f64) = (1.3521, 103.8198);

/// Simulated drivers: (username, display name, plate, model).
const DEMO_DRIVERS: &[(&str, &str, &str, &str)] = &[
    ("driver_erin", "Erin (simulated driver)", "SDEMO1", "Toyota Prius"),
    ("driver_frank", "Frank (simulated driver)", "SDEMO2", "Hyundai Ioniq"),
    ("driver_gina", "Gina (simulated driver)", "SDEMO3", "Kia Niro"),
];

/// How often a simulated driver acts, and how far it drives per step (60 m per 2 s is
/// 108 km/h: demo time, so a trip takes a minute or two, yet under the average speed a
/// trip may have, `PLAZA_RIDES_TRIP_SPEED_MAX_KMH`, and the index's speed limit). Every
/// step is a location update, so the trip's recorded route covers the way driven.
const DRIVER_TICK: std::time::Duration = std::time::Duration::from_secs(2);
const DRIVER_STEP_M: f64 = 60.0;
const ARRIVED_WITHIN_M: f64 = 60.0;

struct SimulatedDriver {
    user: User,
    location: plaza_rides::LatLng,
    online: bool,
}

/// Runs simulated drivers until aborted: they go online in the demo city, cruise, accept
/// every offer, drive to the pickup, arrive, start, drive to the dropoff and complete.
/// Each step is an ordinary service call, so they exercise the real dispatcher and money.
pub async fn run_drivers(rides: plaza_rides::Rides) {
    let mut drivers = Vec::new();
    for (i, (username, display_name, _, _)) in DEMO_DRIVERS.iter().enumerate() {
        match demo_user(rides.accounts(), username, display_name).await {
            Ok(user) => {
                let offset = 0.004 * (i as f64 - 1.0);
                if let Ok(location) = plaza_rides::LatLng::new(DEMO_CITY.0 + offset, DEMO_CITY.1 - offset) {
                    drivers.push(SimulatedDriver { user, location, online: false });
                }
            }
            Err(error) => tracing::warn!(%error, username, "demo driver not created"),
        }
    }
    let mut every = tokio::time::interval(DRIVER_TICK);
    let mut step = 0u64;
    loop {
        every.tick().await;
        step += 1;
        for (i, driver) in drivers.iter_mut().enumerate() {
            if let Err(error) = drive(&rides, driver, i, step).await {
                tracing::warn!(%error, driver = %driver.user.username, "demo driver step failed");
            }
        }
    }
}

async fn demo_user(accounts: &plaza_accounts::Accounts, username: &str, display_name: &str) -> anyhow::Result<User> {
    Ok(match accounts.register("demo-seed", username, DEMO_PASSWORD, Some(display_name)).await {
        Ok(session) => {
            accounts.logout(&session.token).await?;
            session.user
        }
        Err(AccountsError::UsernameTaken(_)) => accounts.user_by_username(username).await?,
        Err(error) => return Err(error.into()),
    })
}

/// One step of one simulated driver.
async fn drive(rides: &plaza_rides::Rides, driver: &mut SimulatedDriver, i: usize, step: u64) -> anyhow::Result<()> {
    use plaza_rides::{RideAction, RideStatus};
    if !driver.online {
        let (_, _, plate, model) = DEMO_DRIVERS[i % DEMO_DRIVERS.len()];
        let vehicle = plaza_rides::Vehicle::parse(plate, model, 4)?;
        rides.go_online(&driver.user, vehicle, driver.location).await?;
        driver.online = true;
        return Ok(());
    }
    let target = match rides.driver_work(&driver.user).await? {
        None => {
            // Cruise: a small circle around where the driver is.
            let angle = (step as f64 + i as f64) * 0.7;
            plaza_rides::LatLng::new(
                driver.location.lat() + 0.0002 * angle.sin(),
                driver.location.lng() + 0.0002 * angle.cos(),
            )
            .ok()
        }
        Some(ride) => match ride.status {
            RideStatus::Requested => {
                rides.accept(&driver.user, &ride.id).await?;
                None
            }
            RideStatus::DriverAssigned if driver.location.distance_m(ride.pickup) <= ARRIVED_WITHIN_M => {
                rides.advance(&driver.user, &ride.id, RideAction::Arrive).await?;
                None
            }
            RideStatus::DriverAssigned => Some(ride.pickup),
            RideStatus::DriverArrived => {
                rides.advance(&driver.user, &ride.id, RideAction::Start).await?;
                None
            }
            RideStatus::InProgress if driver.location.distance_m(ride.dropoff) <= ARRIVED_WITHIN_M => {
                rides.advance(&driver.user, &ride.id, RideAction::Complete).await?;
                None
            }
            RideStatus::InProgress => Some(ride.dropoff),
            RideStatus::Completed | RideStatus::Cancelled | RideStatus::NoDriver => None,
        },
    };
    if let Some(target) = target {
        let distance = driver.location.distance_m(target);
        let fraction = if distance <= DRIVER_STEP_M { 1.0 } else { DRIVER_STEP_M / distance };
        let next = plaza_rides::LatLng::new(
            driver.location.lat() + (target.lat() - driver.location.lat()) * fraction,
            driver.location.lng() + (target.lng() - driver.location.lng()) * fraction,
        );
        if let Ok(next) = next {
            match rides.update_location(&driver.user, next, None).await {
                Ok(()) => driver.location = next,
                // Dropped from the index (a restart, a long pause): go online again.
                Err(plaza_rides::RidesError::Location(plaza_rides::index::LocationRefused::NotOnline)) => {
                    driver.online = false;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
    Ok(())
}
