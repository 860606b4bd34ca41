//! The differential suite: every scenario of `wasmgate_tests::diff::scenarios` through a real
//! Envoy 1.40 and through wasmgate, with the same `.wasm`, configuration and backends; the
//! outcomes must agree except for the deliberate differences the scenarios list (and the
//! README explains). One test per filter configuration, so they run in parallel and a failure
//! names its setup.

use wasmgate_tests::diff::{self, scenarios};

async fn run(name: &str) -> anyhow::Result<()> {
    let setup = scenarios::setup(name);
    let failures = diff::run_setup(&setup).await?;
    diff::verdict(&failures)
}

macro_rules! setups {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> anyhow::Result<()> {
                run(stringify!($name)).await
            }
        )*

        /// Every setup in the list has a test above (none is silently skipped).
        #[test]
        fn every_setup_has_a_test() {
            let tested = [$(stringify!($name),)*];
            for setup in scenarios::setups() {
                assert!(tested.contains(&setup.name), "setup {} has no test", setup.name);
            }
        }
    };
}

setups!(
    secret_set,
    secret_operations,
    kong_guide,
    headers,
    bodies,
    local_response,
    properties,
    properties_root,
    properties_attributes,
    http_call,
    shared_data,
    trap,
    trap_fail_open,
    trap_in_response,
    trap_grpc,
    postpone,
    postpone_respond,
    assemblyscript,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_hosts_refuse_bad_configurations() -> anyhow::Result<()> {
    let mut failures = Vec::new();
    for refusal in scenarios::refusals() {
        failures.extend(diff::hosts::check_refusal(&refusal, scenarios::TOKEN).await?);
    }
    diff::verdict(&failures)
}
