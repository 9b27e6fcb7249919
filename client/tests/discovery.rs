//! Service discovery against both servers: registration with Curator's layout and JSON,
//! queries, a service cache that follows registrations, updates, removals and a registrant's
//! session loss, and a registration written again in a renewed session.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::proxy::Proxy;
use common::*;
use rookery_client::discovery::{
    ServiceDiscovery, ServiceInstance, ServiceProvider, ServiceType, Strategy,
};
use rookery_client::{Client, SessionEventKind};

/// Waits (bounded) until the cache's snapshot has exactly `ids`.
async fn cache_holds(cache: &rookery_client::discovery::ServiceCache, ids: &[&str]) {
    let mut updates = cache.updates();
    let want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let got = tokio::time::timeout(WAIT, async {
        loop {
            let now: Vec<String> = cache.instances().iter().map(|i| i.id.clone()).collect();
            if now == want {
                return now;
            }
            if updates.changed().await.is_err() {
                return now;
            }
        }
    })
    .await;
    assert_eq!(got.ok(), Some(want), "the cache's instances");
}

#[tokio::test]
async fn register_query_update_unregister_with_curators_layout() {
    each_server("discovery", |kind, addr| async move {
        let base = unique_root("services");
        let c = connect(addr).await;
        let discovery = ServiceDiscovery::new(&c, &base);
        assert!(discovery.query_names().await.unwrap().is_empty());
        let a = ServiceInstance::new("billing")
            .with_id("a")
            .with_address("10.0.0.1", 8080)
            .with_payload(serde_json::json!({"zone": "a"}))
            .with_uri_spec("{scheme}://{address}:{port}");
        let b = ServiceInstance::new("billing")
            .with_id("b")
            .with_address("10.0.0.2", 8080);
        discovery.register(&a).await.unwrap();
        discovery.register(&b).await.unwrap();
        discovery
            .register(&ServiceInstance::new("search").with_id("s"))
            .await
            .unwrap();

        // The node is ephemeral, at <base>/<name>/<id>, with the instance's JSON.
        let (data, stat) = c.get_data(&format!("{base}/billing/a")).await.unwrap();
        assert_eq!(stat.ephemeral_owner, c.session_id(), "{kind:?}");
        let json: serde_json::Value = serde_json::from_slice(&data).unwrap();
        for field in [
            "name",
            "id",
            "address",
            "port",
            "sslPort",
            "payload",
            "registrationTimeUTC",
            "serviceType",
            "uriSpec",
        ] {
            assert!(json.get(field).is_some(), "{field} in {json}");
        }
        assert_eq!(json["serviceType"], "DYNAMIC");

        assert_eq!(
            discovery.query_names().await.unwrap(),
            ["billing", "search"]
        );
        let found = discovery.query_instances("billing").await.unwrap();
        assert_eq!(found, vec![a.clone(), b.clone()]);
        assert_eq!(
            discovery.query_instance("billing", "a").await.unwrap(),
            Some(a.clone())
        );
        assert_eq!(found[0].uri().as_deref(), Some("http://10.0.0.1:8080"));

        // Registering again (a restart of the same instance) rewrites the data, one node.
        let mut a2 = a.clone();
        a2.port = Some(9090);
        discovery.register(&a2).await.unwrap();
        assert_eq!(
            discovery.query_instance("billing", "a").await.unwrap(),
            Some(a2.clone())
        );
        let mut a3 = a2.clone();
        a3.enabled = false;
        discovery.update(&a3).await.unwrap();
        assert!(
            !discovery
                .query_instance("billing", "a")
                .await
                .unwrap()
                .unwrap()
                .enabled
        );
        discovery.unregister("billing", "a").await.unwrap();
        discovery.unregister("billing", "a").await.unwrap();
        assert_eq!(
            discovery.query_instance("billing", "a").await.unwrap(),
            None
        );
        assert_eq!(
            discovery.query_instances("billing").await.unwrap(),
            vec![b.clone()]
        );
        assert_eq!(b.service_type, ServiceType::Dynamic);
        c.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_cache_follows_registrations_and_a_registrants_session_loss() {
    each_server("service-cache", |kind, addr| async move {
        let base = unique_root("cached");
        let proxy = Proxy::start(addr).await;
        let registrant = Client::builder(&proxy.addr.to_string())
            .session_timeout(Duration::from_secs(4))
            .connect()
            .await
            .unwrap();
        let watcher = connect(addr).await;
        let reg = ServiceDiscovery::new(&registrant, &base);
        let local = ServiceDiscovery::new(&watcher, &base);
        let cache = local.cache("api").await.unwrap();
        assert!(cache.instances().is_empty());

        reg.register(
            &ServiceInstance::new("api")
                .with_id("r1")
                .with_address("h1", 1),
        )
        .await
        .unwrap();
        local
            .register(
                &ServiceInstance::new("api")
                    .with_id("w1")
                    .with_address("h2", 2),
            )
            .await
            .unwrap();
        cache_holds(&cache, &["r1", "w1"]).await;
        let updated = ServiceInstance::new("api")
            .with_id("w1")
            .with_address("h2", 3);
        local.update(&updated).await.unwrap();
        let watched = async {
            for _ in 0..100 {
                if cache.instances().iter().any(|i| i.port == Some(3)) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        };
        assert!(watched.await, "{kind:?}: the update reached the cache");

        // The registrant is cut off: its session expires, and its instance leaves the cache.
        let snapshot: Arc<Vec<ServiceInstance>> = cache.instances();
        proxy.blackhole();
        cache_holds(&cache, &["w1"]).await;
        assert_eq!(snapshot.len(), 2, "a snapshot taken before stays as it was");

        // A provider over the cache picks only what is left, and skips a failing instance.
        let provider =
            ServiceProvider::new(local.cache("api").await.unwrap(), Strategy::RoundRobin);
        let only = provider.instance().unwrap();
        assert_eq!(only.id, "w1");
        provider.note_error(&only);
        provider.note_error(&only);
        assert!(
            provider.instance().is_none(),
            "down for the policy's timeout"
        );
        drop(reg);
        let _ = registrant.close().await;
        watcher.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_registration_is_written_again_in_a_renewed_session() {
    each_server("reregister", |kind, addr| async move {
        let base = unique_root("renewed");
        let (proxy, c) = renewing_behind_proxy(addr).await;
        let observer = connect(addr).await;
        let discovery = ServiceDiscovery::new(&c, &base);
        discovery
            .register(&ServiceInstance::new("jobs").with_id("j1"))
            .await
            .unwrap();
        let path = format!("{base}/jobs/j1");
        let first = observer
            .exists(&path)
            .await
            .unwrap()
            .unwrap()
            .ephemeral_owner;

        let mut events = c.session_events();
        proxy.refuse();
        loop {
            let e = tokio::time::timeout(WAIT, events.next())
                .await
                .expect("a session event")
                .unwrap();
            if matches!(e.kind, SessionEventKind::Lost(_)) {
                break;
            }
        }
        proxy.restore();
        eventually(WAIT, "the instance in the new session", || {
            let (o, p) = (observer.clone(), path.clone());
            let session = c.session_id();
            async move {
                o.exists(&p)
                    .await
                    .unwrap()
                    .is_some_and(|s| s.ephemeral_owner == session && session != first)
            }
        })
        .await;
        assert_eq!(c.session_generation(), 2, "{kind:?}");
        c.close().await.unwrap();
        observer.close().await.unwrap();
    })
    .await;
}
