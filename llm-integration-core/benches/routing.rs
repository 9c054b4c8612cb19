//! Routing decision time against snapshots of 1, 100 and 10,000
//! integrations and VMs, and the time to rebuild a 10,000-integration
//! snapshot.
//!
//! `cargo bench -p llm-integration-core --bench routing`
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::Method;
use llm_integration_core::{
    AttachmentSpec, ConfigRecords, Decision, IntegrationConfig, IntegrationId, Owner, RouteRequest,
    Snapshot, SnapshotOptions, User, UserId, Vm, VmId,
};

/// `n` users, each with one VM, a default `llm` integration (auto:all) and
/// a second one attached by tag; about `n` VMs and `2n` integrations.
fn records(n: i64) -> ConfigRecords {
    let mut r = ConfigRecords::default();
    for i in 0..n {
        let user = UserId(i);
        r.users
            .push(User::new(user, format!("user{i}@example.com")));
        let mut vm = Vm::new(VmId(i), format!("vm{i}").parse().unwrap(), user);
        vm.tags.insert("llm".parse().unwrap());
        vm.addresses.push(std::net::IpAddr::from([
            10,
            (i >> 16) as u8,
            (i >> 8) as u8,
            i as u8,
        ]));
        r.vms.push(vm);
        r.integrations.push(IntegrationConfig::default_llm(
            IntegrationId(2 * i),
            Owner::User(user),
        ));
        let mut tagged =
            IntegrationConfig::default_llm(IntegrationId(2 * i + 1), Owner::User(user));
        tagged.name = "work".parse().unwrap();
        tagged.attachments = vec![AttachmentSpec::Tag("llm".parse().unwrap())];
        r.integrations.push(tagged);
    }
    r
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("route");
    for n in [1i64, 100, 10_000] {
        let snapshot = Snapshot::build(records(n), SnapshotOptions::default());
        let caller = VmId(n / 2);
        let post = Method::POST;
        group.bench_with_input(
            BenchmarkId::new("messages_by_model", n),
            &snapshot,
            |b, s| {
                b.iter(|| {
                    let req = RouteRequest::new(
                        Some(caller),
                        black_box("llm.int.exe.xyz"),
                        &post,
                        black_box("/v1/messages?beta=true"),
                    );
                    let d = s
                        .route_with_model(&req, black_box(Some("claude-sonnet-4-6")))
                        .unwrap();
                    assert!(matches!(d, Decision::Forward(_)));
                    black_box(d);
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("prefix_route", n), &snapshot, |b, s| {
            b.iter(|| {
                let req = RouteRequest::new(
                    Some(caller),
                    black_box("work.int.exe.xyz:443"),
                    &post,
                    black_box("/openai/v1/responses"),
                );
                black_box(s.route_with_model(&req, None).unwrap());
            })
        });
        group.bench_with_input(
            BenchmarkId::new("caller_and_route", n),
            &snapshot,
            |b, s| {
                let addr = std::net::IpAddr::from([10, 0, ((n / 2) >> 8) as u8, (n / 2) as u8]);
                b.iter(|| {
                    let vm = s.vm_by_address(black_box(addr));
                    let req = RouteRequest::new(
                        vm,
                        black_box("llm.int.exe.xyz"),
                        &post,
                        black_box("/v1/chat/completions"),
                    );
                    black_box(
                        s.route_with_model(&req, black_box(Some("gpt-5.5")))
                            .unwrap(),
                    );
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("refusal_unknown_host", n),
            &snapshot,
            |b, s| {
                b.iter(|| {
                    let req = RouteRequest::new(
                        Some(caller),
                        black_box("nope.int.exe.xyz"),
                        &post,
                        black_box("/v1/messages"),
                    );
                    black_box(s.route(&req).unwrap_err());
                })
            },
        );
    }
    group.finish();
}

fn rebuild(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_build");
    group.sample_size(20);
    let records = records(10_000);
    group.bench_function("10000_vms_20000_integrations", |b| {
        b.iter(|| black_box(Snapshot::build(records.clone(), SnapshotOptions::default())))
    });
    group.finish();
}

criterion_group!(benches, routing, rebuild);
criterion_main!(benches);
