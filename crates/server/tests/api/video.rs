//! Short video on SQLite and PostgreSQL: tus uploads that resume, transcoding by the real
//! ffmpeg, playback with byte ranges and HLS, visibility on every read path, engagement,
//! sharing into chats, and a For You feed that follows what a viewer watches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{Db, Reply, TestServer};
use serde_json::{json, Value};
use std::time::Duration;

on_both_databases!(
    a_dropped_upload_resumes_from_its_offset_and_plays_after_transcoding,
    what_is_not_a_video_or_is_too_long_fails_with_a_code,
    tus_requests_out_of_protocol_are_refused_and_change_nothing,
    visibility_holds_on_every_path_feeds_included,
    likes_comments_views_and_shares_are_counted_once_each,
    the_for_you_feed_follows_what_a_viewer_finishes_and_says_why,
    each_candidate_source_finds_its_videos_and_names_itself,
    viewers_finishing_the_same_videos_in_opposite_orders_at_once_are_all_counted,
);

/// A short test clip made by ffmpeg from its `lavfi` sources (no media is committed).
fn clip(video: &str, seconds: u32, codec: &[&str], format: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(format!("clip.{format}"));
    let mut args: Vec<String> = ["-v", "error", "-f", "lavfi", "-i"].map(String::from).to_vec();
    args.push(format!("{video}:duration={seconds}"));
    args.extend(["-f", "lavfi", "-i"].map(String::from));
    args.push(format!("sine=frequency=440:duration={seconds}"));
    args.extend(codec.iter().map(|arg| arg.to_string()));
    args.extend(["-shortest", "-y"].map(String::from));
    args.push(out.to_string_lossy().into_owned());
    let status = std::process::Command::new("ffmpeg").args(&args).status().expect("ffmpeg is installed");
    assert!(status.success(), "ffmpeg could not make the test clip");
    std::fs::read(out).unwrap()
}

/// H.264/AAC within the ladder's top rung: the transcoder copies it.
fn small_h264() -> Vec<u8> {
    clip(
        "testsrc=size=320x240:rate=25",
        3,
        &["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac"],
        "mp4",
    )
}

/// ffprobe's JSON for these bytes.
fn ffprobe(bytes: &[u8]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.bin");
    std::fs::write(&file, bytes).unwrap();
    let output = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn tus(server: &TestServer, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
    server.client.request(method, format!("{}{path}", server.base)).bearer_auth(token).header("Tus-Resumable", "1.0.0")
}

async fn create_upload(server: &TestServer, token: &str, length: usize) -> String {
    let request = tus(server, reqwest::Method::POST, "/api/v1/videos/uploads", token).await;
    let created = server.raw(request.header("Upload-Length", length.to_string())).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.header("tus-resumable"), Some("1.0.0"));
    let location = created.header("location").expect("a Location").to_string();
    location.rsplit('/').next().unwrap().to_string()
}

async fn patch(server: &TestServer, token: &str, upload_id: &str, offset: usize, bytes: &[u8]) -> Reply {
    let request = tus(server, reqwest::Method::PATCH, &format!("/api/v1/videos/uploads/{upload_id}"), token).await;
    server
        .raw(
            request
                .header("Upload-Offset", offset.to_string())
                .header("Content-Type", "application/offset+octet-stream")
                .body(bytes.to_vec()),
        )
        .await
}

/// A PATCH over a raw connection announcing `length` bytes that has sent only `first`,
/// left open (the server holds the upload's writer lease meanwhile).
async fn open_patch(
    server: &TestServer,
    token: &str,
    upload_id: &str,
    offset: usize,
    length: usize,
    first: &[u8],
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "PATCH /api/v1/videos/uploads/{upload_id} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first).await.unwrap();
    stream.flush().await.unwrap();
    // Until the server has taken the lease.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream
}

/// A PATCH over a raw connection that announces all of `bytes` but closes after `sent`.
async fn drop_midway(server: &TestServer, token: &str, upload_id: &str, offset: usize, bytes: &[u8], sent: usize) {
    // Give the server the bytes before the connection goes.
    drop(open_patch(server, token, upload_id, offset, bytes.len(), &bytes[..sent]).await);
}

async fn head_offset(server: &TestServer, token: &str, upload_id: &str) -> i64 {
    let request = tus(server, reqwest::Method::HEAD, &format!("/api/v1/videos/uploads/{upload_id}"), token).await;
    let state = server.raw(request).await;
    assert_eq!(state.status, 200);
    assert_eq!(state.header("cache-control"), Some("no-store"));
    state.header("upload-offset").unwrap().parse().unwrap()
}

/// Uploads in one request and publishes; returns the video as first answered.
async fn publish(server: &TestServer, token: &str, bytes: &[u8], caption: &str, visibility: &str) -> Value {
    let upload_id = create_upload(server, token, bytes.len()).await;
    let sent = patch(server, token, &upload_id, 0, bytes).await;
    assert_eq!(sent.status, 204, "{}", sent.text);
    let published = server
        .post(
            "/api/v1/videos",
            Some(token),
            json!({"upload_id": upload_id, "caption": caption, "visibility": visibility}),
        )
        .await;
    assert_eq!(published.status, 201, "{}", published.text);
    published.body
}

/// Polls until the video is no longer processing.
async fn settled(server: &TestServer, token: &str, video_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let video = server.get(&format!("/api/v1/videos/{video_id}"), Some(token)).await;
        assert_eq!(video.status, 200, "{}", video.text);
        if video.body["status"] != "processing" {
            return video.body;
        }
        assert!(tokio::time::Instant::now() < deadline, "the video was still processing after 3 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn bytes_of(
    server: &TestServer,
    path: &str,
    token: &str,
    range: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = server.client.get(format!("{}{path}", server.base)).bearer_auth(token);
    if let Some(range) = range {
        request = request.header("Range", range);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

async fn a_dropped_upload_resumes_from_its_offset_and_plays_after_transcoding(db: Db) {
    let server = TestServer::start(db).await;
    let (ann, _) = server.register("vid_ann").await;
    let (mut socket, _) = server.socket(&ann).await;
    // 640x480: the top rung copies it, the 360p rung is encoded.
    let file = clip(
        "testsrc=size=640x480:rate=25",
        3,
        &["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac"],
        "mp4",
    );
    let upload_id = create_upload(&server, &ann, file.len()).await;
    assert_eq!(head_offset(&server, &ann, &upload_id).await, 0);

    // The first request sends a third and breaks off; HEAD says where to go on from.
    let third = file.len() / 3;
    let first = patch(&server, &ann, &upload_id, 0, &file[..third]).await;
    assert_eq!(first.status, 204, "{}", first.text);
    assert_eq!(first.header("upload-offset"), Some(third.to_string().as_str()));
    assert_eq!(head_offset(&server, &ann, &upload_id).await, third as i64);
    // Resuming from the wrong place is refused and stores nothing.
    patch(&server, &ann, &upload_id, 0, &file[..10]).await.assert_problem(409, "upload_offset_mismatch");
    // Publishing before the last byte is refused.
    server
        .post("/api/v1/videos", Some(&ann), json!({"upload_id": upload_id, "caption": "early", "visibility": "public"}))
        .await
        .assert_problem(409, "upload_incomplete");
    // The next request's connection drops halfway through its body: every byte that
    // arrived is kept, and HEAD says so.
    let dropped_after = (file.len() - third) / 2;
    drop_midway(&server, &ann, &upload_id, third, &file[third..], dropped_after).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let resumed_at = loop {
        let offset = head_offset(&server, &ann, &upload_id).await as usize;
        if offset > third || tokio::time::Instant::now() > deadline {
            break offset;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(resumed_at, third + dropped_after, "the bytes before the drop were stored");
    let rest = patch(&server, &ann, &upload_id, resumed_at, &file[resumed_at..]).await;
    assert_eq!(rest.status, 204, "{}", rest.text);
    assert_eq!(head_offset(&server, &ann, &upload_id).await, file.len() as i64);
    // Bytes past the declared length are refused.
    patch(&server, &ann, &upload_id, file.len(), b"more").await.assert_problem(413, "payload_too_large");

    let body = json!({"upload_id": upload_id, "caption": "Sunset over the #Bay #bay #Cats", "visibility": "public"});
    let published = server.post("/api/v1/videos", Some(&ann), body.clone()).await;
    assert_eq!(published.status, 201, "{}", published.text);
    assert_eq!(published.body["status"], "processing");
    assert_eq!(published.body["hashtags"], json!(["bay", "cats"]));
    assert_eq!(published.body["playback"], Value::Null);
    let video_id = published.body["id"].as_str().unwrap().to_string();
    // Publishing the same upload again answers the same video, not a second one.
    let again = server.post("/api/v1/videos", Some(&ann), body).await;
    assert_eq!(again.body["id"], video_id.as_str());

    let video = settled(&server, &ann, &video_id).await;
    assert_eq!(video["status"], "ready", "{video}");
    assert_eq!((video["width"].as_i64(), video["height"].as_i64()), (Some(640), Some(480)));
    let duration = video["duration_ms"].as_i64().unwrap();
    assert!((2500..=3500).contains(&duration), "{duration} ms");
    let ready = socket.frames_until("video.ready").await.pop().unwrap();
    assert_eq!(ready["data"]["video_id"], video_id.as_str(), "{ready}");

    let mp4_url = video["playback"]["mp4_url"].as_str().unwrap();
    let (status, headers, whole) = bytes_of(&server, mp4_url, &ann, None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "video/mp4");
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(&whole[4..8], b"ftyp", "an MP4 starts with its ftyp box");
    // Fast start: the index (moov) comes before the media data (mdat).
    let find = |needle: &[u8]| whole.windows(4).position(|window| window == needle).unwrap();
    assert!(find(b"moov") < find(b"mdat"), "moov must precede mdat for progressive playback");
    let probed = ffprobe(&whole);
    let streams = probed["streams"].as_array().unwrap();
    let codecs: Vec<&str> = streams.iter().map(|stream| stream["codec_name"].as_str().unwrap()).collect();
    assert_eq!(codecs, ["h264", "aac"], "{probed}");
    assert_eq!((streams[0]["width"].as_i64(), streams[0]["height"].as_i64()), (Some(640), Some(480)));
    let seconds: f64 = probed["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((seconds - 3.0).abs() <= 0.1, "{seconds} s");
    let (status, headers, part) = bytes_of(&server, mp4_url, &ann, Some("bytes=100-199")).await;
    assert_eq!(status, 206);
    assert_eq!(headers["content-range"], format!("bytes 100-199/{}", whole.len()).as_str());
    assert_eq!(part, whole[100..200].to_vec());
    let (status, headers, problem) = bytes_of(&server, mp4_url, &ann, Some(&format!("bytes={}-", whole.len()))).await;
    assert_eq!(status, 416);
    assert_eq!(serde_json::from_slice::<Value>(&problem).unwrap()["code"], "range_not_satisfiable");
    assert_eq!(headers["content-range"], format!("bytes */{}", whole.len()).as_str());

    let (status, headers, poster) = bytes_of(&server, video["poster_url"].as_str().unwrap(), &ann, None).await;
    assert_eq!(
        (status, &headers["content-type"]),
        (200, &"image/jpeg".parse::<reqwest::header::HeaderValue>().unwrap())
    );
    assert_eq!(&poster[..2], &[0xFF, 0xD8], "a JPEG");

    let hls_url = video["playback"]["hls_url"].as_str().unwrap();
    let (status, headers, master) = bytes_of(&server, hls_url, &ann, None).await;
    assert_eq!((status, headers["content-type"].to_str().unwrap()), (200, "application/vnd.apple.mpegurl"));
    let master = String::from_utf8(master).unwrap();
    assert!(master.starts_with("#EXTM3U"), "{master}");
    let variant = master.lines().find(|line| line.ends_with(".m3u8")).expect("a variant playlist").to_string();
    let base = hls_url.trim_end_matches("master.m3u8");
    let (status, _, playlist) = bytes_of(&server, &format!("{base}{variant}"), &ann, None).await;
    assert_eq!(status, 200);
    let playlist = String::from_utf8(playlist).unwrap();
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    let segment = playlist.lines().find(|line| line.ends_with(".ts")).expect("a segment").to_string();
    let variant_dir = variant.rsplit_once('/').map_or("", |(dir, _)| dir);
    let (status, headers, ts) = bytes_of(&server, &format!("{base}{variant_dir}/{segment}"), &ann, None).await;
    assert_eq!((status, headers["content-type"].to_str().unwrap()), (200, "video/mp2t"));
    assert_eq!(ts[0], 0x47, "an MPEG-TS packet starts with its sync byte");
    // The ladder's second rung: the 360p rendition, 480x360.
    assert!(master.contains("v1/index.m3u8") && master.contains("RESOLUTION=480x360"), "two renditions: {master}");
    let (_, _, low) = bytes_of(&server, &format!("{base}v1/index.m3u8"), &ann, None).await;
    assert!(String::from_utf8(low).unwrap().contains(".ts"));
    // Paths the transcoder did not write are not served.
    let (status, _, _) = bytes_of(&server, &format!("{base}..%2Fvideo.mp4"), &ann, None).await;
    assert_eq!(status, 404);

    // A <video src> sends no header: the token may come in the query.
    let by_query = server.client.get(format!("{}{mp4_url}?token={ann}", server.base)).send().await.unwrap();
    assert_eq!(by_query.status(), 200);

    // The author deletes it: gone for everyone, files too.
    let deleted = server.request("DELETE", &format!("/api/v1/videos/{video_id}"), Some(&ann), None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    server.get(&format!("/api/v1/videos/{video_id}"), Some(&ann)).await.assert_problem(404, "video_not_found");
    let (status, _, _) = bytes_of(&server, mp4_url, &ann, None).await;
    assert_eq!(status, 404);
    server.stop().await;
}

async fn what_is_not_a_video_or_is_too_long_fails_with_a_code(db: Db) {
    let server = TestServer::start(db).await;
    let (ann, _) = server.register("vid_fail").await;
    let noise: Vec<u8> = (0..50_000u32).map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let not_a_video = publish(&server, &ann, &noise, "noise", "public").await;
    // 200 s, over the default 180 s; tiny and still, so it is quick to make.
    let long_clip = clip(
        "color=c=navy:size=64x64:rate=5",
        200,
        &["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-b:a", "16k"],
        "mp4",
    );
    let too_long = publish(&server, &ann, &long_clip, "two hundred seconds", "public").await;
    // A playlist posing as a video must not make ffmpeg read other files.
    let playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n";
    let posing = publish(&server, &ann, playlist, "playlist", "public").await;

    let failed = settled(&server, &ann, not_a_video["id"].as_str().unwrap()).await;
    assert_eq!((failed["status"].as_str(), failed["failure"].as_str()), (Some("failed"), Some("not_a_video")));
    assert_eq!(failed["playback"], Value::Null);
    let failed = settled(&server, &ann, posing["id"].as_str().unwrap()).await;
    assert_eq!((failed["status"].as_str(), failed["failure"].as_str()), (Some("failed"), Some("not_a_video")));
    let failed = settled(&server, &ann, too_long["id"].as_str().unwrap()).await;
    assert_eq!((failed["status"].as_str(), failed["failure"].as_str()), (Some("failed"), Some("too_long")));
    // Failed videos are the author's to see (and delete); nobody else's.
    let (bob, _) = server.register("vid_fail_bob").await;
    server
        .get(&format!("/api/v1/videos/{}", too_long["id"].as_str().unwrap()), Some(&bob))
        .await
        .assert_problem(404, "video_not_found");
    server.stop().await;
}

async fn tus_requests_out_of_protocol_are_refused_and_change_nothing(db: Db) {
    let server = TestServer::start_with(db, |config| config.video.upload_max_bytes = 1024 * 1024).await;
    let [(ann, _), (bob, _)] = server.register_all(["tus_ann", "tus_bob"]).await;

    let described = server
        .raw(server.client.request(reqwest::Method::OPTIONS, format!("{}/api/v1/videos/uploads", server.base)))
        .await;
    assert_eq!(described.status, 204);
    assert_eq!(described.header("tus-version"), Some("1.0.0"));
    assert_eq!(described.header("tus-extension"), Some("creation"));
    assert_eq!(described.header("tus-max-size"), Some("1048576"));

    let no_version = server
        .client
        .post(format!("{}/api/v1/videos/uploads", server.base))
        .bearer_auth(&ann)
        .header("Upload-Length", "10");
    let refused = server.raw(no_version).await;
    refused.assert_problem(412, "tus_version_unsupported");
    assert_eq!(refused.header("tus-version"), Some("1.0.0"));

    let too_big =
        tus(&server, reqwest::Method::POST, "/api/v1/videos/uploads", &ann).await.header("Upload-Length", "1048577");
    server.raw(too_big).await.assert_problem(413, "payload_too_large");
    let no_length = tus(&server, reqwest::Method::POST, "/api/v1/videos/uploads", &ann).await;
    server.raw(no_length).await.assert_problem(400, "bad_request");
    let nonsense =
        tus(&server, reqwest::Method::POST, "/api/v1/videos/uploads", &ann).await.header("Upload-Length", "-5");
    server.raw(nonsense).await.assert_problem(400, "bad_request");
    let anonymous = server
        .client
        .post(format!("{}/api/v1/videos/uploads", server.base))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "10");
    server.raw(anonymous).await.assert_problem(401, "unauthenticated");

    let upload_id = create_upload(&server, &ann, 10).await;
    // Another user cannot see or write it.
    let foreign = tus(&server, reqwest::Method::HEAD, &format!("/api/v1/videos/uploads/{upload_id}"), &bob).await;
    assert_eq!(server.raw(foreign).await.status, 404);
    patch(&server, &bob, &upload_id, 0, b"12345").await.assert_problem(404, "upload_not_found");
    let wrong_type = tus(&server, reqwest::Method::PATCH, &format!("/api/v1/videos/uploads/{upload_id}"), &ann)
        .await
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/json")
        .body("{}");
    server.raw(wrong_type).await.assert_problem(415, "unsupported_media_type");
    assert_eq!(head_offset(&server, &ann, &upload_id).await, 0, "nothing was stored");
    // While one PATCH is still sending, a second one is refused, not interleaved.
    let writing = open_patch(&server, &ann, &upload_id, 0, 10, b"12345").await;
    patch(&server, &ann, &upload_id, 0, b"abcdefghij").await.assert_problem(409, "upload_busy");
    drop(writing);
    server
        .post("/api/v1/videos", Some(&bob), json!({"upload_id": upload_id, "caption": "mine?", "visibility": "public"}))
        .await
        .assert_problem(404, "upload_not_found");
    for (body, field) in [
        (json!({"upload_id": upload_id, "caption": "", "visibility": "public"}), "caption"),
        (json!({"upload_id": upload_id, "caption": "x".repeat(2201), "visibility": "public"}), "caption"),
        (json!({"upload_id": upload_id, "caption": "ok", "visibility": "friends"}), "visibility"),
    ] {
        let refused = server.post("/api/v1/videos", Some(&ann), body).await;
        refused.assert_problem(422, "invalid_field");
        assert_eq!(refused.body["field"], field, "{}", refused.text);
    }
    server
        .post(
            "/api/v1/videos",
            Some(&ann),
            json!({"upload_id": upload_id, "caption": "ok", "visibility": "public", "product_id": "nope"}),
        )
        .await
        .assert_problem(404, "product_not_found");
    server.stop().await;
}

async fn visibility_holds_on_every_path_feeds_included(db: Db) {
    let server = TestServer::start(db).await;
    let [(ann, ann_id), (bob, bob_id), (eve, _)] = server.register_all(["vis_ann", "vis_bob", "vis_eve"]).await;
    let file = small_h264();
    let mut ids = Vec::new();
    for visibility in ["public", "followers", "private"] {
        let video = publish(&server, &ann, &file, &format!("a {visibility} video #vis"), visibility).await;
        ids.push(video["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        assert_eq!(settled(&server, &ann, id).await["status"], "ready");
    }
    let followed = server.request("POST", &format!("/api/v1/users/{ann_id}/follow"), Some(&bob), None).await;
    assert_eq!(followed.status, 204, "{}", followed.text);

    let listed = |token: String| {
        let server = &server;
        let ann_id = ann_id.clone();
        async move {
            let page = server.get(&format!("/api/v1/users/{ann_id}/videos"), Some(&token)).await;
            assert_eq!(page.status, 200, "{}", page.text);
            page.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["visibility"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(ann.clone()).await, ["private", "followers", "public"]);
    assert_eq!(listed(bob.clone()).await, ["followers", "public"]);
    assert_eq!(listed(eve.clone()).await, ["public"]);

    for (token, visible) in [(&bob, [true, true, false]), (&eve, [true, false, false])] {
        for (id, visible) in ids.iter().zip(visible) {
            let read = server.get(&format!("/api/v1/videos/{id}"), Some(token)).await;
            let played = server
                .client
                .get(format!("{}/api/v1/videos/{id}/video.mp4", server.base))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let liked = server.request("POST", &format!("/api/v1/videos/{id}/like"), Some(token), None).await;
            if visible {
                assert_eq!((read.status, played.status().as_u16(), liked.status), (200, 200, 204));
            } else {
                read.assert_problem(404, "video_not_found");
                assert_eq!(played.status(), 404);
                liked.assert_problem(404, "video_not_found");
            }
        }
        let feed = server.get("/api/v1/feed/for-you?limit=50", Some(token)).await;
        assert_eq!(feed.status, 200, "{}", feed.text);
        let seen: Vec<&str> =
            feed.body["items"].as_array().unwrap().iter().map(|item| item["video"]["id"].as_str().unwrap()).collect();
        for (id, visible) in ids.iter().zip(visible) {
            assert_eq!(seen.contains(&id.as_str()), visible, "for you: {id} visible={visible} in {seen:?}");
        }
    }
    let following = server.get("/api/v1/feed/following", Some(&bob)).await;
    let items = following.body["items"].as_array().unwrap();
    assert_eq!(
        items.iter().map(|item| item["video"]["visibility"].as_str().unwrap()).collect::<Vec<_>>(),
        ["followers", "public"]
    );
    assert!(
        items.iter().all(|item| item["reason_code"] == "following" && item["reason"] == "You follow @vis_ann"),
        "{}",
        following.text
    );
    assert_eq!(server.get("/api/v1/feed/following", Some(&eve)).await.body["items"], json!([]));

    // Unfollowing takes the followers-only video away again.
    let unfollowed = server.request("DELETE", &format!("/api/v1/users/{ann_id}/follow"), Some(&bob), None).await;
    assert_eq!(unfollowed.status, 204);
    server.get(&format!("/api/v1/videos/{}", ids[1]), Some(&bob)).await.assert_problem(404, "video_not_found");
    // Only public videos are shared into chats: a card keeps its body, and every member
    // sees it.
    let conversation = server.conversation(&ann, "direct", &[&bob_id]).await;
    for id in &ids[1..] {
        let shared = server
            .post(&format!("/api/v1/videos/{id}/share"), Some(&ann), json!({"conversation_id": conversation}))
            .await;
        shared.assert_problem(403, "forbidden");
    }
    let history = server.get(&format!("/api/v1/conversations/{conversation}/messages"), Some(&bob)).await;
    assert_eq!(history.body["items"], json!([]), "{}", history.text);
    server.stop().await;
}

async fn likes_comments_views_and_shares_are_counted_once_each(db: Db) {
    let server = TestServer::start(db).await;
    let [(ann, ann_id), (bob, bob_id), (cat, _)] = server.register_all(["eng_ann", "eng_bob", "eng_cat"]).await;
    let video = publish(&server, &ann, &small_h264(), "Counting #once", "public").await;
    let id = video["id"].as_str().unwrap().to_string();
    settled(&server, &ann, &id).await;

    for _ in 0..2 {
        let liked = server.request("POST", &format!("/api/v1/videos/{id}/like"), Some(&bob), None).await;
        assert_eq!(liked.status, 204);
    }
    let seen = server.get(&format!("/api/v1/videos/{id}"), Some(&bob)).await;
    assert_eq!((seen.body["counts"]["likes"].as_i64(), seen.body["liked_by_me"].as_bool()), (Some(1), Some(true)));
    assert_eq!(server.get(&format!("/api/v1/videos/{id}"), Some(&cat)).await.body["liked_by_me"], false);
    for _ in 0..2 {
        server.request("DELETE", &format!("/api/v1/videos/{id}/like"), Some(&bob), None).await;
    }
    assert_eq!(server.get(&format!("/api/v1/videos/{id}"), Some(&bob)).await.body["counts"]["likes"], 0);

    for watched in [1000, 3000, 3000] {
        let viewed = server
            .post(
                &format!("/api/v1/videos/{id}/views"),
                Some(&bob),
                json!({"watched_ms": watched, "completed": watched == 3000}),
            )
            .await;
        assert_eq!(viewed.status, 202, "{}", viewed.text);
    }
    server
        .post(&format!("/api/v1/videos/{id}/views"), Some(&cat), json!({"watched_ms": 500, "completed": false}))
        .await;
    server
        .post(&format!("/api/v1/videos/{id}/views"), Some(&bob), json!({"watched_ms": -1, "completed": false}))
        .await
        .assert_problem(422, "invalid_field");
    server
        .post(
            &format!("/api/v1/videos/{id}/views"),
            Some(&bob),
            json!({"watched_ms": 10, "completed": false, "replays": 1000}),
        )
        .await
        .assert_problem(422, "invalid_field");
    assert_eq!(
        server.get(&format!("/api/v1/videos/{id}"), Some(&ann)).await.body["counts"]["views"],
        2,
        "once per viewer per day"
    );

    let top = server.post(&format!("/api/v1/videos/{id}/comments"), Some(&bob), json!({"text": "Lovely"})).await;
    assert_eq!(top.status, 201, "{}", top.text);
    let top_id = top.body["id"].as_str().unwrap().to_string();
    let reply = server
        .post(&format!("/api/v1/videos/{id}/comments"), Some(&cat), json!({"text": "Agreed", "parent_id": top_id}))
        .await;
    assert_eq!((reply.status, reply.body["parent_id"].as_str()), (201, Some(top_id.as_str())));
    let reply_id = reply.body["id"].as_str().unwrap().to_string();
    // One level of replies only; and the limits of a comment.
    let deeper = server
        .post(&format!("/api/v1/videos/{id}/comments"), Some(&bob), json!({"text": "deeper", "parent_id": reply_id}))
        .await;
    deeper.assert_problem(422, "invalid_field");
    server
        .post(&format!("/api/v1/videos/{id}/comments"), Some(&bob), json!({"text": ""}))
        .await
        .assert_problem(422, "invalid_field");
    server
        .post(&format!("/api/v1/videos/{id}/comments"), Some(&bob), json!({"text": "x".repeat(501)}))
        .await
        .assert_problem(422, "invalid_field");
    let listed = server.get(&format!("/api/v1/videos/{id}/comments"), Some(&cat)).await;
    let texts: Vec<&str> =
        listed.body["items"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["Lovely", "Agreed"]);
    assert_eq!(server.get(&format!("/api/v1/videos/{id}"), Some(&ann)).await.body["counts"]["comments"], 2);
    // Cat cannot delete Bob's comment; the video's author can delete any, replies with it.
    server
        .request("DELETE", &format!("/api/v1/videos/{id}/comments/{top_id}"), Some(&cat), None)
        .await
        .assert_problem(403, "forbidden");
    let removed = server.request("DELETE", &format!("/api/v1/videos/{id}/comments/{top_id}"), Some(&ann), None).await;
    assert_eq!(removed.status, 204, "{}", removed.text);
    assert_eq!(server.get(&format!("/api/v1/videos/{id}/comments"), Some(&cat)).await.body["items"], json!([]));
    assert_eq!(server.get(&format!("/api/v1/videos/{id}"), Some(&ann)).await.body["counts"]["comments"], 0);
    server
        .request("DELETE", &format!("/api/v1/videos/{id}/comments/{top_id}"), Some(&ann), None)
        .await
        .assert_problem(404, "comment_not_found");

    // A share posts a playable video card in the chat and counts once per share.
    let conversation = server.conversation(&bob, "direct", &[&ann_id]).await;
    let shared =
        server.post(&format!("/api/v1/videos/{id}/share"), Some(&bob), json!({"conversation_id": conversation})).await;
    assert_eq!(shared.status, 201, "{}", shared.text);
    let history = server.get(&format!("/api/v1/conversations/{conversation}/messages"), Some(&ann)).await;
    let message = history.body["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(message["kind"], "card");
    assert_eq!(message["body"]["type"], "video");
    assert_eq!(message["body"]["id"], id.as_str());
    assert_eq!(message["body"]["mp4_url"], format!("/api/v1/videos/{id}/video.mp4").as_str());
    assert_eq!(server.get(&format!("/api/v1/videos/{id}"), Some(&ann)).await.body["counts"]["shares"], 1);
    // Not into a chat the sharer is not in.
    let theirs = server.conversation(&ann, "direct", &[&bob_id]).await;
    let outsider =
        server.post(&format!("/api/v1/videos/{id}/share"), Some(&cat), json!({"conversation_id": theirs})).await;
    assert!(outsider.status == 404 || outsider.status == 403, "{}", outsider.text);
    assert_eq!(server.get(&format!("/api/v1/videos/{id}"), Some(&ann)).await.body["counts"]["shares"], 1);
    server.stop().await;
}

async fn the_for_you_feed_follows_what_a_viewer_finishes_and_says_why(db: Db) {
    let server = TestServer::start(db).await;
    let file = small_h264();
    let mut creators = Vec::new();
    for name in ["fy_cats1", "fy_cats2", "fy_dogs1", "fy_dogs2", "fy_cars1", "fy_cars2"] {
        creators.push((name, server.register(name).await));
    }
    let mut by_tag: std::collections::HashMap<&str, Vec<String>> = Default::default();
    let mut all = Vec::new();
    for (round, _) in [(); 2].iter().enumerate() {
        for (name, (token, _)) in &creators {
            let tag = &name[3..7];
            let video = publish(&server, token, &file, &format!("{tag} video {round} #{tag}"), "public").await;
            let id = video["id"].as_str().unwrap().to_string();
            by_tag.entry(tag).or_default().push(id.clone());
            all.push((token.clone(), id));
        }
    }
    for (token, id) in &all {
        assert_eq!(settled(&server, token, id).await["status"], "ready");
    }

    let (viewer, _) = server.register("fy_viewer").await;
    // A new viewer gets a page at once (cold start), each item with its reason.
    let first = server.get("/api/v1/feed/for-you?limit=12", Some(&viewer)).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let items = first.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 12, "{}", first.text);
    assert!(items.iter().all(|item| item["reason"].as_str().is_some_and(|r| !r.is_empty())), "{}", first.text);
    // No author twice in any five in a row.
    let authors: Vec<&str> = items.iter().map(|item| item["video"]["author"]["id"].as_str().unwrap()).collect();
    for window in authors.windows(5).filter(|w| w.len() == 5) {
        let distinct: std::collections::HashSet<_> = window.iter().collect();
        assert!(distinct.len() == 5 || authors.len() < 5, "an author twice in five: {authors:?}");
    }

    // The viewer finishes one cats video and replays it, skips a dogs one, and is not
    // interested in a cars one.
    let cat_video = &by_tag["cats"][0];
    server
        .post(
            &format!("/api/v1/videos/{cat_video}/views"),
            Some(&viewer),
            json!({"watched_ms": 9000, "completed": true, "replays": 2}),
        )
        .await;
    server.request("POST", &format!("/api/v1/videos/{cat_video}/like"), Some(&viewer), None).await;
    let dog_video = &by_tag["dogs"][0];
    server
        .post(
            &format!("/api/v1/videos/{dog_video}/views"),
            Some(&viewer),
            json!({"watched_ms": 300, "completed": false}),
        )
        .await;
    let car_video = &by_tag["cars"][0];
    let hidden =
        server.request("POST", &format!("/api/v1/videos/{car_video}/not-interested"), Some(&viewer), None).await;
    assert_eq!(hidden.status, 204);

    let page = server.get("/api/v1/feed/for-you?limit=8", Some(&viewer)).await;
    let items = page.body["items"].as_array().unwrap().clone();
    let ids: Vec<&str> = items.iter().map(|item| item["video"]["id"].as_str().unwrap()).collect();
    assert!(!ids.contains(&car_video.as_str()), "a video marked not interested came back: {ids:?}");
    assert!(
        !ids.contains(&cat_video.as_str()) && !ids.contains(&dog_video.as_str()),
        "seen videos came back first: {ids:?}"
    );
    let position = |tag: &str| ids.iter().position(|id| by_tag[tag].iter().any(|t| t == id));
    let cats = position("cats").expect("the other cats video is offered");
    assert!(cats < 3, "the cats video should lead the page after a finished cats video: {ids:?}");
    let reason = &items[cats]["reason"];
    assert!(reason.as_str().unwrap().contains("#cats") || reason.as_str().unwrap().contains("@fy_cats"), "{reason}");
    let cars_after =
        items.iter().filter(|item| by_tag["cars"].contains(&item["video"]["id"].as_str().unwrap().to_string())).count();
    let cats_after =
        items.iter().filter(|item| by_tag["cats"].contains(&item["video"]["id"].as_str().unwrap().to_string())).count();
    assert!(
        cats_after >= cars_after,
        "cats {cats_after} should not be outnumbered by the hidden cars {cars_after}: {ids:?}"
    );

    // The next page continues the session without repeating the first.
    let cursor = page.body["next_cursor"].as_str().expect("a cursor");
    let next = server.get(&format!("/api/v1/feed/for-you?limit=8&cursor={cursor}"), Some(&viewer)).await;
    assert_eq!(next.status, 200, "{}", next.text);
    for item in next.body["items"].as_array().unwrap() {
        let id = item["video"]["id"].as_str().unwrap();
        assert!(!ids.contains(&id) || item["reason_code"] == "again", "{id} repeated within a session");
    }
    server.get("/api/v1/feed/for-you?cursor=forged", Some(&viewer)).await.assert_problem(422, "invalid_field");
    // A session pages on: pages of two, each continuing the one before, none repeating
    // what the session served unless it says "again", until nothing is left.
    let mut served: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    for page_number in 0..8 {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/feed/for-you?limit=2&cursor={cursor}"),
            None => "/api/v1/feed/for-you?limit=2".to_string(),
        };
        let page = server.get(&path, Some(&viewer)).await;
        assert_eq!(page.status, 200, "page {page_number}: {}", page.text);
        for item in page.body["items"].as_array().unwrap() {
            let id = item["video"]["id"].as_str().unwrap().to_string();
            assert!(!served.contains(&id) || item["reason_code"] == "again", "page {page_number} repeated {id}");
            served.push(id);
        }
        cursor = page.body["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    assert!(served.len() >= 8, "{served:?}");

    // Reset forgets the viewer: the hidden video may come back, nothing is personal.
    let reset = server.request("POST", "/api/v1/feed/reset", Some(&viewer), None).await;
    assert_eq!(reset.status, 204);
    let fresh = server.get("/api/v1/feed/for-you?limit=50", Some(&viewer)).await;
    let items = fresh.body["items"].as_array().unwrap();
    assert!(
        items.iter().all(|item| !matches!(item["reason_code"].as_str(), Some("hashtag" | "author" | "co_engagement"))),
        "{}",
        fresh.text
    );
    assert!(items.iter().any(|item| item["video"]["id"] == car_video.as_str()), "reset should un-hide: {}", fresh.text);
    server.stop().await;
}

/// Two nodes on one PostgreSQL database share the transcoding queue: every video is made
/// ready by exactly one of them, in one attempt (each claim counts one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_both_transcode_one_video() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = crate::support::fresh_database(Db::Postgres, dir.path()).await;
    // Both nodes store in one shared directory, as they would in one S3 bucket.
    let shared = dir.path().join("shared");
    let on_shared = |config: &mut plaza_server::config::Config| config.data_dir = shared.clone();
    let first = TestServer::start_on(&database_url, on_shared).await;
    let second = TestServer::start_on(&database_url, on_shared).await;
    let (ann, _) = first.register("two_nodes_ann").await;
    let file = small_h264();
    let mut ids = Vec::new();
    for n in 0..5 {
        let node = if n % 2 == 0 { &first } else { &second };
        ids.push(
            publish(node, &ann, &file, &format!("clip {n} #nodes"), "public").await["id"].as_str().unwrap().to_string(),
        );
    }
    for id in &ids {
        assert_eq!(settled(&second, &ann, id).await["status"], "ready");
        // Any node plays any video.
        let (status, _, _) = bytes_of(&first, &format!("/api/v1/videos/{id}/video.mp4"), &ann, None).await;
        assert_eq!(status, 200);
    }
    let mut database = first.database().await;
    let attempts: Vec<i64> =
        sqlx::query_scalar("SELECT attempts FROM videos ORDER BY id").fetch_all(&mut database).await.unwrap();
    assert_eq!(attempts, vec![1; 5], "each video was claimed once");
    let announced: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM user_events WHERE type = 'video.ready'")
        .fetch_one(&mut database)
        .await
        .unwrap();
    assert_eq!(announced, 5);
    first.stop().await;
    second.stop().await;
}

/// The reason code of `video_id` on a fresh For You page of `token`'s, if it is there.
async fn reason_for(server: &TestServer, token: &str, video_id: &str) -> Option<String> {
    let page = server.get("/api/v1/feed/for-you?limit=50", Some(token)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["video"]["id"] == video_id)
        .map(|item| item["reason_code"].as_str().unwrap().to_string())
}

async fn each_candidate_source_finds_its_videos_and_names_itself(db: Db) {
    let server = TestServer::start(db).await;
    let file = small_h264();
    let mut people = Vec::new();
    for name in ["src_a", "src_b", "src_c", "src_d", "src_x", "src_viewer"] {
        people.push(server.register(name).await);
    }
    let [(a, a_id), (b, _), (c, _), (d, _), (x, _), (viewer, _)] = <[_; 6]>::try_from(people).unwrap();
    let publish_ready = |token: String, caption: &'static str| {
        let server = &server;
        let file = file.clone();
        async move {
            let video = publish(server, &token, &file, caption, "public").await;
            let id = video["id"].as_str().unwrap().to_string();
            assert_eq!(settled(server, &token, &id).await["status"], "ready");
            id
        }
    };
    let a1 = publish_ready(a.clone(), "from a #alpha").await;
    let b1 = publish_ready(b.clone(), "from b #beta").await;
    let c1 = publish_ready(c.clone(), "from c #gamma").await;
    let d1 = publish_ready(d.clone(), "from d #delta").await;
    let finish = |token: String, id: String| {
        let server = &server;
        async move {
            let body = json!({"watched_ms": 3000, "completed": true});
            let viewed = server.post(&format!("/api/v1/videos/{id}/views"), Some(&token), body).await;
            assert_eq!(viewed.status, 202, "{}", viewed.text);
        }
    };

    // Nothing known about the viewer yet: trending and fresh carry the page.
    let cold = reason_for(&server, &viewer, &d1).await.expect("a new viewer is offered every video");
    assert!(cold == "trending" || cold == "fresh", "{cold}");
    // Following.
    server.request("POST", &format!("/api/v1/users/{a_id}/follow"), Some(&viewer), None).await;
    assert_eq!(reason_for(&server, &viewer, &a1).await.as_deref(), Some("following"));
    // Co-engagement: x finished b1 and then c1; the viewer finishes b1, and c1 (another
    // author, another hashtag) comes for that reason.
    finish(x.clone(), b1.clone()).await;
    finish(x.clone(), c1.clone()).await;
    finish(viewer.clone(), b1.clone()).await;
    assert_eq!(reason_for(&server, &viewer, &c1).await.as_deref(), Some("co_engagement"));
    // Hashtag: b's next #beta video is found under the hashtag the viewer finished.
    let b2 = publish_ready(b.clone(), "more from b #beta").await;
    assert_eq!(reason_for(&server, &viewer, &b2).await.as_deref(), Some("hashtag"));
    // Author: b's untagged video is found by its author.
    let b3 = publish_ready(b.clone(), "b without tags").await;
    assert_eq!(reason_for(&server, &viewer, &b3).await.as_deref(), Some("author"));
    server.stop().await;
}

/// Co-engagement pairs are written by every completion; twelve viewers finishing the same
/// four videos at once, half of them in the opposite order, must neither fail (PostgreSQL
/// found deadlocks when the pairs were written in the order the views came) nor lose a
/// pair.
async fn viewers_finishing_the_same_videos_in_opposite_orders_at_once_are_all_counted(db: Db) {
    let server = TestServer::start(db).await;
    let (author, _) = server.register("pair_author").await;
    let mut videos = Vec::new();
    for n in 0..4 {
        let video = publish(&server, &author, &small_h264(), &format!("pair {n} #pairs"), "public").await;
        let id = video["id"].as_str().unwrap().to_string();
        assert_eq!(settled(&server, &author, &id).await["status"], "ready");
        videos.push(id);
    }
    let mut viewers = Vec::new();
    for n in 0..12 {
        viewers.push(server.register(&format!("pair_viewer{n}")).await.0);
    }
    let watching = viewers.iter().enumerate().map(|(n, token)| {
        let (server, mut order) = (&server, videos.clone());
        if n % 2 == 1 {
            order.reverse();
        }
        async move {
            for id in order {
                let body = json!({"watched_ms": 3000, "completed": true});
                let viewed = server.post(&format!("/api/v1/videos/{id}/views"), Some(token), body).await;
                assert_eq!(viewed.status, 202, "{}", viewed.text);
            }
        }
    });
    futures_util::future::join_all(watching).await;
    let mut database = server.database().await;
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT video_id, other_id, CAST(score AS BIGINT) FROM video_coengagement")
            .fetch_all(&mut database)
            .await
            .unwrap();
    assert_eq!(rows.len(), 12, "every ordered pair of the four videos: {rows:?}");
    for (video_id, other_id, score) in rows {
        assert!(videos.contains(&video_id) && videos.contains(&other_id) && video_id != other_id);
        assert_eq!(score, 12, "each viewer paired {video_id} with {other_id} once");
    }
    server.stop().await;
}
