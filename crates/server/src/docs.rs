//! The OpenAPI 3.1 document, generated from the handlers' annotations and finished here
//! with what applies to every operation, and the pages that present it.

use crate::app::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr, ResponseBuilder};

/// Adds the bearer scheme, the version, and a `default` problem response to every
/// operation: whatever status an operation documents explicitly, any other one is a
/// problem document, and saying so keeps the document honest for generated clients.
pub fn finish_openapi(mut openapi: OpenApi) -> String {
    openapi.info.version = env!("CARGO_PKG_VERSION").to_string();
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("opaque").build()),
    );
    let problem = ResponseBuilder::new()
        .description("A problem document (RFC 9457) with a stable `code`")
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Problem")))).build(),
        )
        .build();
    for path_item in openapi.paths.paths.values_mut() {
        let operations =
            [&mut path_item.get, &mut path_item.put, &mut path_item.post, &mut path_item.delete, &mut path_item.patch];
        for operation in operations.into_iter().flatten() {
            operation.responses.responses.entry("default".to_string()).or_insert_with(|| RefOr::T(problem.clone()));
        }
    }
    openapi.to_json().unwrap_or_else(|_| "{}".to_string())
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/docs", get(|| async { Html(API_DOCS_PAGE) }))
        .with_state(state)
}

async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], state.openapi_json.as_ref().clone())
}

/// A self-contained API browser: no CDN, so it works on an air-gapped deployment.
const API_DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Plaza API reference</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} .muted{color:#666}
details{border:1px solid #ddd;border-radius:6px;margin:.4rem 0;padding:.3rem .6rem}
summary{cursor:pointer} .m{display:inline-block;min-width:4.2rem;font-weight:600;text-transform:uppercase}
.get{color:#06c}.post{color:#090}.delete{color:#c00}.put,.patch{color:#a60}
code,pre{background:#f6f6f6;border-radius:4px} pre{padding:.5rem;overflow:auto;font-size:13px}
h2{margin-top:2rem;border-bottom:1px solid #eee}
</style></head>
<body><h1>Plaza API</h1><p class="muted" id="meta">Loading <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>…</p>
<main id="ops"></main>
<script>
const esc = s => String(s ?? '').replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
function resolve(doc, s){ if(s && s.$ref){ return doc.components.schemas[s.$ref.split('/').pop()] || s } return s }
function schemaText(doc, s, depth){
  s = resolve(doc, s); if(!s || depth > 4) return '…';
  if(s.type === 'object' || s.properties){
    const req = new Set(s.required || []);
    const lines = Object.entries(s.properties || {}).map(([k,v]) => '  '.repeat(depth+1) + k + (req.has(k)?'':'?') + ': ' + schemaText(doc, v, depth+1));
    return '{\n' + lines.join('\n') + '\n' + '  '.repeat(depth) + '}';
  }
  if(s.type === 'array' || (Array.isArray(s.type) && s.items)) return '[' + schemaText(doc, s.items, depth) + ']';
  if(s.enum) return s.enum.map(e => JSON.stringify(e)).join(' | ');
  if(s.oneOf || s.anyOf) return (s.oneOf || s.anyOf).map(x => schemaText(doc, x, depth)).join(' | ');
  return Array.isArray(s.type) ? s.type.join(' | ') : (s.type || 'any');
}
fetch('/api/v1/openapi.json').then(r => r.json()).then(doc => {
  document.getElementById('meta').innerHTML = esc(doc.info.description) + ' — version ' + esc(doc.info.version) + ', OpenAPI ' + esc(doc.openapi);
  const byTag = {};
  for(const [path, item] of Object.entries(doc.paths)) for(const m of ['get','post','put','patch','delete']) if(item[m]){
    const tag = (item[m].tags || ['other'])[0]; (byTag[tag] = byTag[tag] || []).push([m, path, item[m]]);
  }
  let html = '';
  for(const [tag, ops] of Object.entries(byTag)){
    html += '<h2>' + esc(tag) + '</h2>';
    for(const [m, path, op] of ops){
      let body = '<p>' + esc(op.description || op.summary || '') + '</p>';
      if(op.security) body += '<p class="muted">Requires <code>Authorization: Bearer &lt;token&gt;</code></p>';
      for(const p of op.parameters || []) body += '<div><code>' + esc(p.name) + '</code> <span class="muted">(' + esc(p.in) + ')</span> ' + esc(p.description || '') + '</div>';
      const rb = op.requestBody && op.requestBody.content && op.requestBody.content['application/json'];
      if(rb) body += '<p>Request body</p><pre>' + esc(schemaText(doc, rb.schema, 0)) + '</pre>';
      for(const [status, resp] of Object.entries(op.responses || {})){
        const c = resp.content && Object.values(resp.content)[0];
        body += '<p><b>' + esc(status) + '</b> ' + esc(resp.description) + '</p>' + (c && c.schema ? '<pre>' + esc(schemaText(doc, c.schema, 0)) + '</pre>' : '');
      }
      html += '<details><summary><span class="m ' + m + '">' + m + '</span> <code>' + esc(path) + '</code> ' + esc(op.summary || '') + '</summary>' + body + '</details>';
    }
  }
  document.getElementById('ops').innerHTML = html;
});
</script></body></html>"#;
