//! Reading an instance node: Curator x-discovery's `ServiceInstance` JSON, Nerve's JSON and
//! Finagle/Aurora serverset JSON.
//!
//! - Curator: `{"name","id","address","port","sslPort","payload","enabled",...}`; a weight
//!   and zone may be in an object payload (`payload.weight`, `payload.zone`).
//! - Nerve: `{"host","port","name","weight","labels":{"az"|"zone"}}`.
//! - Serverset: `{"serviceEndpoint":{"host","port"},"additionalEndpoints":{..},
//!   "status":"ALIVE","shard":N}`; any status but `ALIVE` is not routed to.

use rookery_client::discovery::ServiceInstance;
use serde_json::Value;

use crate::config::Format;
use crate::endpoint::Endpoint;

/// The endpoint `id` described by `data`, or why it is not one.
pub fn parse(format: Format, id: &str, data: &[u8]) -> Result<Endpoint, String> {
    let value: Value = serde_json::from_slice(data).map_err(|e| format!("not JSON: {e}"))?;
    let format = match format {
        Format::Auto => detect(&value).ok_or("not a Curator, Nerve or serverset instance")?,
        f => f,
    };
    match format {
        Format::Curator => curator(id, data),
        Format::Nerve => nerve(id, &value),
        Format::Serverset => serverset(id, &value),
        Format::Auto => unreachable!("detected above"),
    }
}

fn detect(value: &Value) -> Option<Format> {
    let o = value.as_object()?;
    if o.contains_key("serviceEndpoint") {
        Some(Format::Serverset)
    } else if o.contains_key("address") || o.contains_key("serviceType") {
        Some(Format::Curator)
    } else if o.contains_key("host") {
        Some(Format::Nerve)
    } else {
        None
    }
}

fn curator(id: &str, data: &[u8]) -> Result<Endpoint, String> {
    let i = ServiceInstance::from_json(data).map_err(|e| e.to_string())?;
    let host = i
        .address
        .clone()
        .filter(|a| !a.is_empty())
        .ok_or("no address")?;
    let port = i.port.map(to_port).transpose()?;
    let ssl_port = i.ssl_port.filter(|p| *p > 0).map(to_port).transpose()?;
    let port = match (port, ssl_port) {
        (Some(p), _) => p,
        (None, Some(_)) => 0,
        (None, None) => return Err("no port".into()),
    };
    let payload = i.payload.as_ref();
    Ok(Endpoint {
        id: if i.id.is_empty() {
            id.to_owned()
        } else {
            i.id.clone()
        },
        host,
        port,
        ssl_port,
        weight: weight(payload.and_then(|p| p.get("weight")))?,
        zone: payload
            .and_then(|p| p.get("zone"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        enabled: i.enabled,
    })
}

fn nerve(id: &str, v: &Value) -> Result<Endpoint, String> {
    let host = v
        .get("host")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .ok_or("no host")?;
    let port = port_of(v.get("port"))?;
    let labels = v.get("labels");
    let zone = labels
        .and_then(|l| l.get("zone").or_else(|| l.get("az")))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Endpoint {
        id: id.to_owned(),
        host: host.to_owned(),
        port,
        ssl_port: None,
        weight: weight(v.get("weight"))?,
        zone,
        enabled: true,
    })
}

fn serverset(id: &str, v: &Value) -> Result<Endpoint, String> {
    let ep = v.get("serviceEndpoint").ok_or("no serviceEndpoint")?;
    let host = ep
        .get("host")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .ok_or("no serviceEndpoint.host")?;
    let status = v.get("status").and_then(Value::as_str).unwrap_or("ALIVE");
    Ok(Endpoint {
        id: id.to_owned(),
        host: host.to_owned(),
        port: port_of(ep.get("port"))?,
        ssl_port: None,
        weight: 1,
        zone: None,
        enabled: status == "ALIVE",
    })
}

fn to_port(p: i32) -> Result<u16, String> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("bad port {p}"))
}

fn port_of(v: Option<&Value>) -> Result<u16, String> {
    let p = v.and_then(Value::as_i64).ok_or("no port")?;
    to_port(i32::try_from(p).map_err(|_| format!("bad port {p}"))?)
}

fn weight(v: Option<&Value>) -> Result<u32, String> {
    match v {
        None | Some(Value::Null) => Ok(1),
        Some(w) => w
            .as_u64()
            .and_then(|w| u32::try_from(w).ok())
            .filter(|w| (1..=10_000).contains(w))
            .ok_or_else(|| format!("bad weight {w}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_curator_with_a_weight_in_the_payload() {
        let data = br#"{"name":"billing","id":"a1","address":"10.0.0.7","port":8080,"sslPort":null,
            "payload":{"weight":3,"zone":"eu-1"},"registrationTimeUTC":1,"serviceType":"DYNAMIC",
            "uriSpec":null,"enabled":false}"#;
        let e = parse(Format::Auto, "a1", data).unwrap();
        assert_eq!((e.host.as_str(), e.port, e.weight), ("10.0.0.7", 8080, 3));
        assert_eq!(e.zone.as_deref(), Some("eu-1"));
        assert!(!e.enabled);
    }

    #[test]
    fn reads_nerve_and_serverset() {
        let n = parse(
            Format::Auto,
            "i_1",
            br#"{"host":"h","port":81,"name":"x","weight":2,"labels":{"az":"b"}}"#,
        )
        .unwrap();
        assert_eq!((n.port, n.weight, n.zone.as_deref()), (81, 2, Some("b")));
        let s = parse(
            Format::Auto,
            "member_0000000001",
            br#"{"serviceEndpoint":{"host":"h2","port":82},"additionalEndpoints":{},"status":"DEAD","shard":0}"#,
        )
        .unwrap();
        assert_eq!((s.host.as_str(), s.port, s.enabled), ("h2", 82, false));
    }

    #[test]
    fn refuses_what_is_not_an_instance() {
        assert!(parse(Format::Auto, "x", b"").is_err());
        assert!(parse(Format::Auto, "x", b"{}").is_err());
        assert!(parse(Format::Nerve, "x", br#"{"host":"h","port":70000}"#).is_err());
        assert!(parse(Format::Nerve, "x", br#"{"host":"h","port":1,"weight":0}"#).is_err());
        assert!(parse(
            Format::Curator,
            "x",
            br#"{"name":"a","id":"x","address":"h"}"#
        )
        .is_err());
    }
}
