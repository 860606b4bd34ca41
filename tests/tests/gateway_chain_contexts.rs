//! Each filter of a chain sees its own context id: after one filter's instance is replaced
//! (its ids start again) while the next filter's instance goes on counting, both keep
//! serving the following requests.

use std::time::Duration;

use wasmgate_tests::{backend, gateway, wasm};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_instance_does_not_get_its_neighbours_context_ids() -> anyhow::Result<()> {
    let backend = backend::start().await?;
    let yaml = format!(
        r#"
workers: 1
listeners: [{{ address: "127.0.0.1:0" }}]
upstreams:
  backend: {{ url: "{}" }}
routes:
  - name: r
    match: {{}}
    upstream: backend
    filters:
      - {{ wasm: "{hostile}", config: "", on_error: deny }}
      - {{ wasm: "{watcher}", config: "" }}
"#,
        backend.url(),
        hostile = wasm("hostile").display(),
        watcher = wasm("postpone").display(),
    );
    let gw = gateway::start(&yaml)?;
    // postpone.wasm with `x-postpone: no` only watches: every request goes through.
    let no = [("x-postpone", "no")];
    for path in ["/1", "/2", "/3"] {
        assert_eq!(gateway::get(gw.addr(), "a", path, &no).await?.status, 200);
    }
    let trap = [("x-postpone", "no"), ("x-hostile", "trap")];
    assert_eq!(
        gateway::get(gw.addr(), "a", "/trap", &trap).await?.status,
        503
    );
    // The first filter's fresh instance numbers its contexts from the start again.
    for path in ["/4", "/5"] {
        let r = gateway::get(gw.addr(), "a", path, &no).await?;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let seen = backend.wait_for_requests(5, WAIT).await;
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[3].header("x-hostile-ok"), Some("1"));
    assert_eq!(seen[4].header("x-hostile-ok"), Some("2"));
    Ok(())
}
