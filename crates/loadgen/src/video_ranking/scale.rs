//! Latency at scale: `for_you` over a large catalogue with a recorded history, against
//! `video` by id and `following_feed`, one call at a time and from concurrent callers.

use super::*;

fn quantiles(histogram: &Histogram<u64>) -> (f64, f64) {
    (histogram.value_at_quantile(0.5) as f64 / 1000.0, histogram.value_at_quantile(0.99) as f64 / 1000.0)
}

pub(super) async fn scale(options: &Options, backend: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let (_data_dir, _config, store, services) = crate::server::in_process(options.database_url.clone()).await?;
    let now = Timestamp::now().unix_millis();
    let topics = 100;
    let authors = (options.scale_videos / 50).clamp(10, 5_000);
    let world = World::new(options.seed ^ 0x5CA1E, topics, authors, options.scale_videos, options.scale_users, now);
    let people = seed_users(&services, authors + options.scale_users).await?;
    let author_ids: Vec<String> = people[..authors].iter().map(|user| user.id.clone()).collect();
    let users: Arc<Vec<User>> = Arc::new(people[authors..].to_vec());
    let seeded_users = started.elapsed().as_secs_f64();
    let seeds: Vec<SeedVideo> = world.videos.iter().map(|video| world.seed_video(video, &author_ids)).collect();
    let video_ids = Arc::new(insert_ready_videos(&store, &seeds).await?);
    let seeded_videos = started.elapsed().as_secs_f64();
    eprintln!(
        "scale: {} users and {authors} authors in {seeded_users:.1} s, {} videos in {:.1} s",
        options.scale_users,
        options.scale_videos,
        seeded_videos - seeded_users
    );

    // History: views drawn from each user's taste, through record_view.
    let mut rng = Rng(options.seed ^ 0x4157);
    let plan = plan_views(&world, topics, options, &mut rng);
    let history_started = Instant::now();
    record_history(&services.video, &users, &video_ids, world, &plan, options.concurrency).await?;
    let history_seconds = history_started.elapsed().as_secs_f64();
    // A few users follow a few authors, for the following-feed baseline and the
    // Following source.
    let followers = options.scale_users.min(500);
    for user in 0..followers {
        for _ in 0..10 {
            let author = rng.below(authors);
            services.accounts.follow(&users[user], &author_ids[author]).await?;
        }
    }
    eprintln!(
        "scale: {} views through record_view in {history_seconds:.1} s ({:.0}/s); {followers} users follow 10 authors",
        plan.len(),
        plan.len() as f64 / history_seconds.max(1e-9)
    );

    let limit = PageLimit::parse(Some(PAGE as i64)).map_err(anyhow::Error::msg)?;
    let mut for_you = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut for_you_following = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut for_you_alone = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut by_id = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut following = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut served = 0usize;
    for n in 0..options.requests {
        let user = rng.below(options.scale_users);
        let me = &users[user];
        let at = Instant::now();
        served += services.video.for_you(me, limit, None).await?.items.len();
        let elapsed = at.elapsed().as_micros() as u64;
        for_you.saturating_record(elapsed);
        if user < followers {
            for_you_following.saturating_record(elapsed);
        } else {
            for_you_alone.saturating_record(elapsed);
        }
        let at = Instant::now();
        services.video.video(me, &video_ids[rng.below(video_ids.len())]).await?;
        by_id.saturating_record(at.elapsed().as_micros() as u64);
        let follower = &users[n % followers.max(1)];
        let at = Instant::now();
        services.video.following_feed(follower, limit, None).await?;
        following.saturating_record(at.elapsed().as_micros() as u64);
    }
    // Concurrent callers of for_you.
    let concurrent_started = Instant::now();
    let concurrent = concurrent_for_you(&services.video, &users, limit, options).await?;
    let concurrent_seconds = concurrent_started.elapsed().as_secs_f64();

    println!(
        "\n{backend}: {} videos, {} users with {} views each through record_view ({:.0} s), {followers} of them following 10 authors; {} sequential calls of each, then {} concurrent callers; {:.1} items per For You page\n",
        options.scale_videos,
        options.scale_users,
        options.scale_views,
        history_seconds,
        options.requests,
        options.concurrency,
        served as f64 / options.requests.max(1) as f64,
    );
    println!("| backend | call | calls | p50 | p99 | p99 × `video` by id |");
    println!("|---|---|---|---|---|---|");
    let (_, base_p99) = quantiles(&by_id);
    let rows = [
        ("`video` by id (baseline)", &by_id),
        ("`following_feed`, 10 follows (baseline)", &following),
        ("`for_you`, first page of 10", &for_you),
        ("`for_you`, viewers who follow nobody", &for_you_alone),
        ("`for_you`, viewers who follow 10", &for_you_following),
    ];
    for (name, histogram) in rows {
        let (p50, p99) = quantiles(histogram);
        println!(
            "| {backend} | {name} | {} | {p50:.1} ms | {p99:.1} ms | {:.1}× |",
            histogram.len(),
            p99 / base_p99.max(1e-9)
        );
    }
    let (p50, p99) = quantiles(&concurrent);
    println!(
        "| {backend} | `for_you`, {} concurrent callers ({:.0} pages/s) | {} | {p50:.1} ms | {p99:.1} ms | {:.1}× |",
        options.concurrency,
        concurrent.len() as f64 / concurrent_seconds.max(1e-9),
        concurrent.len(),
        p99 / base_p99.max(1e-9)
    );
    Ok(())
}

/// (user, video) views drawn from each user's hidden taste: a topic by its weight, then a
/// video of that topic.
fn plan_views(world: &World, topics: usize, options: &Options, rng: &mut Rng) -> Vec<(usize, usize)> {
    let mut by_topic: Vec<Vec<usize>> = vec![Vec::new(); topics];
    for (index, video) in world.videos.iter().enumerate() {
        for topic in &video.topics {
            by_topic[*topic].push(index);
        }
    }
    let mut plan: Vec<(usize, usize)> = Vec::new();
    for user in 0..options.scale_users {
        for _ in 0..options.scale_views {
            let mut pick = rng.float();
            let mut topic = 0;
            for (index, weight) in world.users[user].taste.iter().enumerate() {
                pick -= weight;
                topic = index;
                if pick <= 0.0 {
                    break;
                }
            }
            let pool = &by_topic[topic];
            if !pool.is_empty() {
                plan.push((user, pool[rng.below(pool.len())]));
            }
        }
    }
    plan
}

/// Records every planned view through `record_view`, from `concurrency` callers.
async fn record_history(
    feed: &VideoHandle,
    users: &Arc<Vec<User>>,
    video_ids: &Arc<Vec<String>>,
    world: World,
    plan: &[(usize, usize)],
    concurrency: usize,
) -> anyhow::Result<()> {
    let world = Arc::new(world);
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(plan.to_vec())
        .map(|(user, video)| {
            let (services, users, video_ids, world) = (feed.clone(), users.clone(), video_ids.clone(), world.clone());
            async move {
                let reaction = world.react(user, video);
                services
                    .record_view(
                        &users[user],
                        &video_ids[video],
                        reaction.watched_ms,
                        reaction.completed,
                        reaction.replays,
                    )
                    .await?;
                Ok(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for result in results {
        result?;
    }
    Ok(())
}

/// `for_you` from `options.concurrency` callers at once, `requests` calls in all.
async fn concurrent_for_you(
    video: &VideoHandle,
    users: &Arc<Vec<User>>,
    limit: PageLimit,
    options: &Options,
) -> anyhow::Result<Histogram<u64>> {
    let histograms: Vec<anyhow::Result<Histogram<u64>>> = futures_util::stream::iter(0..options.concurrency.max(1))
        .map(|task| {
            let (video, users) = (video.clone(), users.clone());
            let per_task = options.requests / options.concurrency.max(1);
            async move {
                let mut histogram = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
                let mut rng = Rng(task as u64 * 7919 + 1);
                for _ in 0..per_task {
                    let me = &users[rng.below(users.len())];
                    let at = Instant::now();
                    video.for_you(me, limit, None).await?;
                    histogram.saturating_record(at.elapsed().as_micros() as u64);
                }
                Ok(histogram)
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    let mut concurrent = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for histogram in histograms {
        concurrent.add(histogram?)?;
    }
    Ok(concurrent)
}
